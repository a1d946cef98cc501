//! # camera-sim: a simulated proprietary camera system
//!
//! A stand-in for a VMS that corral's reference integration (`guests/http-vms`)
//! talks to in the demo, the tests and the benchmarks. It speaks its own HTTP API,
//! deliberately unlike the registry's, behind HTTP Basic credentials:
//!
//! | call | answer |
//! |---|---|
//! | `GET /vms/v2/cameras` | `{"cameras":[{"cameraId","displayName","vendor","modelName","location":{"lat","lon"}}]}` |
//! | `GET /vms/v2/cameras/{id}/snapshot.jpg[?at=<unix ms>]` | a JPEG showing the camera's name and the time |
//! | `GET /vms/v2/cameras/{id}/archive?from=<unix ms>&to=<unix ms>` | the recording, `video/mp2t`, streamed, with `Content-Length` and `Range` |
//! | `GET /vms/v2/faults`, `PUT /vms/v2/faults` | the fault switches (see [`Faults`]) as JSON |
//!
//! Recordings are deterministic: a camera's archive is one endless byte stream at
//! the configured bitrate, so the same range always gives the same bytes and a
//! test can compute what it expects with [`recording`].

mod api;
mod auth;
mod faults;
pub mod recording;
mod server;
pub mod snapshot;

pub use faults::{FaultSettings, Faults};
pub use server::{CameraSim, SimError};

/// One simulated camera.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDevice {
    /// The camera system's id for the camera.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Who made it.
    pub make: String,
    /// Its model.
    pub model: String,
    /// WGS 84 latitude.
    pub latitude: f64,
    /// WGS 84 longitude.
    pub longitude: f64,
}

/// What the simulator serves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The cameras it knows.
    pub devices: Vec<SimDevice>,
    /// HTTP Basic user name.
    pub username: String,
    /// HTTP Basic password.
    pub password: String,
    /// Recording bitrate in bits per second.
    pub bitrate_bps: u64,
}

impl SimConfig {
    /// A configuration with `count` cameras named after places in Montréal.
    pub fn with_devices(count: usize) -> SimConfig {
        const PLACES: [&str; 8] = [
            "Lobby east",
            "Lobby west",
            "Loading dock",
            "Parking P2",
            "Main entrance",
            "Server room",
            "Rooftop",
            "Cafeteria",
        ];
        const MODELS: [(&str, &str); 3] = [
            ("Axis", "P3265-LVE"),
            ("Hanwha", "XNV-8080R"),
            ("Bosch", "FLEXIDOME 5100i"),
        ];
        let devices = (0..count)
            .map(|i| {
                let (make, model) = MODELS[i % MODELS.len()];
                let place = PLACES[i % PLACES.len()];
                let name = if i < PLACES.len() {
                    place.to_string()
                } else {
                    format!("{place} {}", i / PLACES.len() + 1)
                };
                SimDevice {
                    id: format!("cam-{:04}", i + 1),
                    name,
                    make: make.to_string(),
                    model: model.to_string(),
                    latitude: 45.5017 + 0.001 * i as f64,
                    longitude: -73.5673 - 0.001 * i as f64,
                }
            })
            .collect();
        SimConfig {
            devices,
            username: "operator".to_string(),
            password: "sim-secret".to_string(),
            bitrate_bps: 4_000_000,
        }
    }

    /// The camera with id `id`.
    pub fn device(&self, id: &str) -> Option<&SimDevice> {
        self.devices.iter().find(|device| device.id == id)
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::with_devices(4)
    }
}
