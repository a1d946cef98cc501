//! The integration's non-secret settings, from its manifest.

use crate::JobError;
use crate::bindings::corral::integration::settings;

/// The value of setting `name`, if set.
pub fn get(name: &str) -> Option<String> {
    settings::get(name)
}

/// The value of setting `name`, or a `failed` job error naming the missing setting.
pub fn require(name: &str) -> Result<String, JobError> {
    settings::get(name)
        .ok_or_else(|| JobError::Failed(format!("setting `{name}` is missing from the manifest")))
}

/// Every setting, sorted by name.
pub fn all() -> Vec<(String, String)> {
    settings::all()
}
