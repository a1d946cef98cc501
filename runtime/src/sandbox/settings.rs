//! `corral:integration/settings`: the manifest's non-secret settings.
//!
//! Links: the `settings` interface. Per-job state: a shared, read-only map.
//! Limits: the map is the manifest's, fixed at load time.

use super::JobState;
use super::bindings::corral::integration::settings::Host;

impl Host for JobState {
    fn get(&mut self, name: String) -> Option<String> {
        self.settings.get(&name).cloned()
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }
}
