//! {{name}}: a corral integration for camera-sim's HTTP API, to start from.
//! Change the paths and field names to your camera system's.

use corral_guest::output::Output;
use corral_guest::{Device, Integration, Job, JobError, Outcome, http, progress, settings};
use serde::Deserialize;

struct Vms;

/// A camera in camera-sim's names (it sends more fields; these are read).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Camera {
    camera_id: String,
    display_name: String,
}

/// The answer to `GET /vms/v2/cameras`.
#[derive(Deserialize)]
struct Cameras {
    cameras: Vec<Camera>,
}

fn api(path: &str) -> Result<String, JobError> {
    Ok(format!("{}/vms/v2/{path}", settings::require("base-url")?))
}

impl Integration for Vms {
    fn discover(_job: Job) -> Result<Vec<Device>, JobError> {
        let list: Cameras = http::get(&api("cameras")?)?.ok()?.json()?;
        let devices = list.cameras.into_iter().map(|camera| {
            Device::new(camera.camera_id, camera.display_name)
                .with_capabilities(["thumbnail", "media"])
        });
        Ok(devices.collect())
    }

    fn thumbnail(job: Job) -> Result<(), JobError> {
        let device = job.require_device()?;
        let snapshot = http::get(&api(&format!("cameras/{device}/snapshot.jpg"))?)?.ok()?;
        let mut out = Output::create(&format!("{device}.jpg"), "image/jpeg")?;
        out.splice(snapshot, |_| {})?; // host-side: the bytes never enter guest memory
        out.finish()?;
        Ok(())
    }

    fn extract_media(job: Job) -> Result<Outcome, JobError> {
        let device = job.require_device()?;
        let range = job.require_time_range()?;
        let (from, to) = (range.start.unix_millis, range.end.unix_millis);
        let url = api(&format!("cameras/{device}/archive?from={from}&to={to}"))?;
        let recording = http::get(&url)?.ok()?;
        let total = recording.content_length().unwrap_or(0);
        let mut out = Output::create(&format!("{device}-{from}.ts"), "video/mp2t")?;
        out.splice(recording, |moved| progress::report(moved, total.max(moved)))?;
        out.finish()?;
        Ok(Outcome::Completed)
    }
}

corral_guest::export!(Vms);
