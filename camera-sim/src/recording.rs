//! Deterministic recordings.
//!
//! Each camera's archive is one endless byte stream at the configured bitrate:
//! the byte at offset `o` (counted from the Unix epoch at `bitrate / 8` bytes a
//! second) is a pure function of the camera id and `o`. It is laid out in 188-byte
//! packets starting with `0x47`, like an MPEG transport stream, so it looks like
//! video to tools that peek, and any sub-range can be produced on its own.

use std::ops::Range;

/// Size of one transport-stream packet.
const PACKET: u64 = 188;
/// First byte of every packet.
const SYNC_BYTE: u8 = 0x47;

/// The byte offsets `[from_ms, to_ms)` covers in a camera's stream at `bitrate_bps`.
pub fn byte_range(bitrate_bps: u64, from_ms: i64, to_ms: i64) -> Range<u64> {
    let offset = |ms: i64| (ms.max(0) as u128 * bitrate_bps as u128 / 8 / 1000) as u64;
    let start = offset(from_ms);
    start..offset(to_ms).max(start)
}

/// A seed for camera `device_id`'s stream.
pub fn seed(device_id: &str) -> u64 {
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    device_id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Fills `buf` with the stream of the camera seeded `seed`, starting at `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let len = buf.len() as u64;
    let mut position = offset;
    let mut rest = &mut *buf;
    // Unaligned head, then whole 8-byte words, then the tail.
    while !rest.is_empty() {
        let word = word_at(seed, position / 8).to_le_bytes();
        let skip = (position % 8) as usize;
        let n = (8 - skip).min(rest.len());
        rest[..n].copy_from_slice(&word[skip..skip + n]);
        rest = &mut rest[n..];
        position += n as u64;
        if skip == 0 && n == 8 {
            let words = rest.len() / 8;
            for (i, chunk) in rest[..words * 8].chunks_exact_mut(8).enumerate() {
                chunk.copy_from_slice(&word_at(seed, position / 8 + i as u64).to_le_bytes());
            }
            position += words as u64 * 8;
            rest = &mut rest[words * 8..];
        }
    }
    // Sync bytes at every packet start inside the buffer.
    let first_packet = offset.div_ceil(PACKET) * PACKET;
    let mut at = first_packet;
    while at < offset + len {
        buf[(at - offset) as usize] = SYNC_BYTE;
        at += PACKET;
    }
}

/// The bytes the archive call answers for `device_id` over `[from_ms, to_ms)`.
pub fn recording(device_id: &str, bitrate_bps: u64, from_ms: i64, to_ms: i64) -> Vec<u8> {
    let range = byte_range(bitrate_bps, from_ms, to_ms);
    let mut bytes = vec![0; (range.end - range.start) as usize];
    fill(seed(device_id), range.start, &mut bytes);
    bytes
}

fn word_at(seed: u64, index: u64) -> u64 {
    // splitmix64 of (seed, index): fast, and every word independent of the others.
    let mut z = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_sub_range_matches_the_whole() {
        let seed = seed("cam-0001");
        let mut whole = vec![0; 4096];
        fill(seed, 1000, &mut whole);
        for (start, len) in [(0, 1), (3, 17), (188, 400), (1001, 2000), (4000, 96)] {
            let mut part = vec![0; len];
            fill(seed, 1000 + start as u64, &mut part);
            assert_eq!(part, whole[start..start + len], "offset {start} len {len}");
        }
    }

    #[test]
    fn packets_start_with_the_sync_byte() {
        let mut bytes = vec![0; 188 * 10];
        fill(seed("cam-0002"), 188 * 7, &mut bytes);
        assert!(bytes.chunks(188).all(|packet| packet[0] == SYNC_BYTE));
    }

    #[test]
    fn cameras_differ() {
        assert_ne!(
            recording("cam-0001", 8000, 0, 1000),
            recording("cam-0002", 8000, 0, 1000)
        );
    }

    #[test]
    fn a_range_has_bitrate_times_duration_bytes() {
        let range = byte_range(4_000_000, 1_000, 301_000);
        assert_eq!(range.end - range.start, 150_000_000);
    }
}
