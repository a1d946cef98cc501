//! Snapshots: real JPEG images that differ per camera and per time.
//!
//! Each camera has its own background colour and shows its number and the UTC
//! time of the snapshot in large digits, with a bar that sweeps once a minute,
//! so a person looking at two thumbnails tells them apart at once.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;
use jpeg_encoder::{ColorType, Encoder};

/// Width of a snapshot in pixels.
pub const WIDTH: u16 = 320;
/// Height of a snapshot in pixels.
pub const HEIGHT: u16 = 180;

/// 5×7 glyphs, one row of five bits per byte, for the characters we draw.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '1' => [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '3' => [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        '5' => [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
        '6' => [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
        '7' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
        '9' => [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
        ':' => [0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00],
        _ => [0; 7],
    }
}

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(background: [u8; 3]) -> Canvas {
        let mut pixels = Vec::with_capacity(usize::from(WIDTH) * usize::from(HEIGHT) * 3);
        for y in 0..HEIGHT {
            // A vertical gradient, so the picture is not one flat colour.
            let shade = y * 60 / HEIGHT;
            for _ in 0..WIDTH {
                pixels.extend(background.map(|c| c.saturating_sub(shade as u8)));
            }
        }
        Canvas { pixels }
    }

    fn rect(&mut self, x: u16, y: u16, w: u16, h: u16, colour: [u8; 3]) {
        for row in y..(y + h).min(HEIGHT) {
            for col in x..(x + w).min(WIDTH) {
                let at = (usize::from(row) * usize::from(WIDTH) + usize::from(col)) * 3;
                self.pixels[at..at + 3].copy_from_slice(&colour);
            }
        }
    }

    fn text(&mut self, x: u16, y: u16, scale: u16, text: &str, colour: [u8; 3]) {
        for (i, c) in text.chars().enumerate() {
            let left = x + i as u16 * 6 * scale;
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..5u16 {
                    if bits & (0x10 >> col) != 0 {
                        let top = y + row as u16 * scale;
                        self.rect(left + col * scale, top, scale, scale, colour);
                    }
                }
            }
        }
    }
}

/// The snapshot of camera `device_id` at `unix_ms`, encoded once per camera
/// and second: the picture changes only with the second, and encoding is
/// most of what a snapshot costs (about 1 ms), which a benchmark of many
/// thumbnail jobs would otherwise measure. One entry per camera (the latest
/// second asked), so the cache stays as small as the camera list.
pub fn snapshot_cached(device_id: &str, unix_ms: i64) -> Bytes {
    static LATEST: LazyLock<Mutex<HashMap<String, (i64, Bytes)>>> = LazyLock::new(Default::default);
    let second = unix_ms.div_euclid(1000);
    let cached = LATEST
        .lock()
        .ok()
        .and_then(|latest| latest.get(device_id).cloned());
    if let Some((at, jpeg)) = cached
        && at == second
    {
        return jpeg;
    }
    let jpeg = Bytes::from(snapshot(device_id, unix_ms));
    if let Ok(mut latest) = LATEST.lock() {
        latest.insert(device_id.to_string(), (second, jpeg.clone()));
    }
    jpeg
}

/// The JPEG snapshot of camera `device_id` (its number is drawn) at `unix_ms`.
pub fn snapshot(device_id: &str, unix_ms: i64) -> Vec<u8> {
    let seed = crate::recording::seed(device_id);
    let background = [
        64 + (seed & 0x7f) as u8,
        64 + ((seed >> 8) & 0x7f) as u8,
        64 + ((seed >> 16) & 0x7f) as u8,
    ];
    let mut canvas = Canvas::new(background);
    let number: String = device_id.chars().filter(char::is_ascii_digit).collect();
    canvas.text(16, 16, 6, &number, [255, 255, 255]);
    let seconds = unix_ms.div_euclid(1000);
    let day = seconds.rem_euclid(86_400);
    let clock = format!("{:02}:{:02}:{:02}", day / 3600, day / 60 % 60, day % 60);
    canvas.text(16, 100, 4, &clock, [255, 255, 160]);
    let sweep = (seconds.rem_euclid(60) as u16) * (WIDTH - 20) / 60;
    canvas.rect(10 + sweep, HEIGHT - 16, 10, 10, [255, 64, 64]);
    let mut jpeg = Vec::new();
    Encoder::new(&mut jpeg, 85)
        .encode(&canvas.pixels, WIDTH, HEIGHT, ColorType::Rgb)
        .expect("encoding a fixed-size RGB image into memory cannot fail");
    jpeg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_a_jpeg_that_depends_on_camera_and_time() {
        let a = snapshot("cam-0001", 1_700_000_000_000);
        assert_eq!(&a[..3], &[0xff, 0xd8, 0xff]);
        assert_eq!(&a[a.len() - 2..], &[0xff, 0xd9]);
        assert_ne!(a, snapshot("cam-0002", 1_700_000_000_000));
        assert_ne!(a, snapshot("cam-0001", 1_700_000_005_000));
    }

    #[test]
    fn a_cached_snapshot_is_the_one_of_its_camera_and_second() {
        let second = 1_700_000_000_000;
        let first = snapshot_cached("cam-0007", second + 10);
        assert_eq!(&first[..], &snapshot("cam-0007", second)[..]);
        // The same second again is the same image; the next second and
        // another camera are their own.
        assert_eq!(snapshot_cached("cam-0007", second + 990), first);
        assert_eq!(
            &snapshot_cached("cam-0007", second + 5_000)[..],
            &snapshot("cam-0007", second + 5_000)[..]
        );
        assert_eq!(
            &snapshot_cached("cam-0008", second)[..],
            &snapshot("cam-0008", second)[..]
        );
    }
}
