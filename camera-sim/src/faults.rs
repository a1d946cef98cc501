//! Fault switches, so tests can make the camera system slow, failing or flaky.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The fault switches, all off by default. Serialized as the JSON of
/// `GET`/`PUT /vms/v2/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultSettings {
    /// Delay before every answer, in milliseconds.
    pub delay_ms: u64,
    /// Delay between body chunks of a recording, in milliseconds.
    pub chunk_delay_ms: u64,
    /// Answer this status (e.g. 503) to the next `fail_count` requests.
    pub fail_status: Option<u16>,
    /// How many requests get `fail_status`; 0 with a status means every request.
    pub fail_count: u32,
    /// Cut recording bodies after this many bytes (the connection is reset).
    pub cut_after_bytes: Option<u64>,
    /// Answer snapshots with an HTML login page labelled `image/jpeg`, as a
    /// camera behind a captive login does.
    pub html_snapshots: bool,
}

/// A shared handle on the switches; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    settings: Arc<Mutex<FaultSettings>>,
}

impl Faults {
    /// The current switches.
    pub fn get(&self) -> FaultSettings {
        self.lock().clone()
    }

    /// Replaces all switches.
    pub fn set(&self, settings: FaultSettings) {
        *self.lock() = settings;
    }

    /// Turns every fault off.
    pub fn clear(&self) {
        self.set(FaultSettings::default());
    }

    /// The status to fail the current request with, if any, counting it down.
    pub(crate) fn take_failure(&self) -> Option<u16> {
        let mut settings = self.lock();
        let status = settings.fail_status?;
        match settings.fail_count {
            0 => {}
            1 => {
                settings.fail_count = 0;
                settings.fail_status = None;
            }
            _ => settings.fail_count -= 1,
        }
        Some(status)
    }

    pub(crate) fn delay(&self) -> Duration {
        Duration::from_millis(self.lock().delay_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultSettings> {
        self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
