//! `corral:integration/progress`: the guest reports how far it is.
//!
//! Links: the `progress` interface. Per-job state: the latest value, published
//! on a watch channel the agent samples (at most once a second) and reads last.
//! Limits: none needed; a report is a store into one slot.

use tokio::sync::watch;

use super::JobState;
use super::bindings::corral::integration::progress::Host;

/// A job's progress: `done` of `total` units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Units done (never more than `total`).
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

impl Host for JobState {
    fn report(&mut self, done: u64, total: u64) {
        // The registry refuses progress over total; clamp rather than fail.
        let progress = Progress {
            done: done.min(total),
            total,
        };
        self.progress.send_if_modified(|latest| {
            let changed = *latest != progress;
            *latest = progress;
            changed
        });
    }
}

/// A fresh progress channel for one job.
pub fn channel() -> (watch::Sender<Progress>, watch::Receiver<Progress>) {
    watch::channel(Progress::default())
}
