//! The reference integration for camera-sim's HTTP API.
//!
//! It shows the three things every integration does: list devices, store a
//! snapshot, store a recording. The camera system's address comes from the
//! `base-url` setting of the manifest; its credentials are added by the host
//! (the manifest names them), so this code never sees a password.

use corral_guest::http::{self, HttpError};
use corral_guest::output::Output;
use corral_guest::{Device, Integration, Job, JobError, Outcome, progress, settings};
use serde::Deserialize;

struct HttpVms;

/// camera-sim's answer to `GET /vms/v2/cameras`: its own names, not the registry's.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CameraList {
    cameras: Vec<Camera>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Camera {
    camera_id: String,
    display_name: String,
    vendor: String,
    model_name: String,
    location: Option<Location>,
}

#[derive(Deserialize)]
struct Location {
    lat: f64,
    lon: f64,
}

fn api(path: &str) -> Result<String, JobError> {
    let base = settings::require("base-url")?;
    Ok(format!("{}/vms/v2/{path}", base.trim_end_matches('/')))
}

impl Integration for HttpVms {
    fn discover(_job: Job) -> Result<Vec<Device>, JobError> {
        let list: CameraList = http::get(&api("cameras")?)?.ok()?.json()?;
        let total = list.cameras.len() as u64;
        let devices = list
            .cameras
            .into_iter()
            .map(|camera| {
                let device = Device::new(camera.camera_id, camera.display_name)
                    .with_make(camera.vendor, camera.model_name)
                    .with_capabilities(["thumbnail", "media"]);
                match camera.location {
                    Some(at) => device.with_position(at.lat, at.lon),
                    None => device,
                }
            })
            .collect();
        progress::report(total, total);
        Ok(devices)
    }

    fn thumbnail(job: Job) -> Result<(), JobError> {
        let device = job.require_device()?;
        let response = http::get(&api(&format!("cameras/{device}/snapshot.jpg"))?)?.ok()?;
        if response.header("content-type").as_deref() != Some("image/jpeg") {
            return Err(JobError::Failed(format!(
                "{device} sent a snapshot that is not a JPEG"
            )));
        }
        let mut output = Output::create(&format!("{device}.jpg"), "image/jpeg")?;
        output.splice(response, |_| {})?;
        output.finish()?;
        progress::report(1, 1);
        Ok(())
    }

    fn extract_media(job: Job) -> Result<Outcome, JobError> {
        let device = job.require_device()?;
        let range = job.require_time_range()?;
        let url = api(&format!(
            "cameras/{device}/archive?from={}&to={}",
            range.start.unix_millis, range.end.unix_millis
        ))?;
        let response = http::get(&url)?.ok()?;
        let total = response.content_length().unwrap_or(0);
        progress::report(0, total);
        let name = format!("{device}-{}.ts", range.start.unix_millis);
        let mut output = Output::create(&name, "video/mp2t")?;
        // Spliced, not read: the recording goes from the camera's response to the
        // upload without passing through this component's memory.
        let moved = output
            .splice(response, |moved| progress::report(moved, total.max(moved)))
            .map_err(|error| {
                // A cut connection is worth another try later.
                JobError::Unavailable(format!("recording of {device} interrupted: {error}"))
            })?;
        if total != 0 && moved != total {
            return Err(HttpError::Body(format!("{device} sent {moved} of {total} bytes")).into());
        }
        output.finish()?;
        progress::report(moved, moved);
        Ok(Outcome::Completed)
    }
}

corral_guest::export!(HttpVms);
