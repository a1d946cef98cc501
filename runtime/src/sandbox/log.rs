//! `corral:integration/log`: the guest's log lines.
//!
//! Links: the `log` interface. Per-job state: a line budget and the last lines
//! (kept for the job report and failure messages). Limits: `limits.log_lines`
//! lines a job, each cut at 4 KiB, with control characters made visible so a
//! line cannot forge another or style a terminal ([`guest_text`]); a guest
//! that logs past its budget is stopped with a message naming the limit (a
//! flood is a bug or an attack).

use std::collections::VecDeque;

use super::JobState;
use super::bindings::corral::integration::log::{Host, Level};
use super::guest_text::{self, truncate};
use super::limits::LimitExceeded;

/// Longest line kept, in bytes.
const MAX_LINE: usize = 4096;
/// Lines kept for the report.
const TAIL: usize = 20;

/// A job's log budget and recent lines.
#[derive(Debug)]
pub struct GuestLog {
    guest: String,
    job_id: String,
    budget: u32,
    limit: u32,
    tail: VecDeque<String>,
}

impl GuestLog {
    /// A log for `job_id` run by `guest`, keeping at most `budget` lines.
    pub fn new(guest: &str, job_id: &str, budget: u32) -> GuestLog {
        GuestLog {
            guest: guest.to_string(),
            job_id: job_id.to_string(),
            budget,
            limit: budget,
            tail: VecDeque::with_capacity(TAIL),
        }
    }

    /// Records one line from the guest; `Err` once the budget is spent.
    pub fn write(&mut self, level: Level, message: &str) -> Result<(), LimitExceeded> {
        if self.budget == 0 {
            return Err(LimitExceeded::Log(self.limit));
        }
        self.budget -= 1;
        let shown = guest_text::visible(message.trim_end());
        let line = truncate(&shown, MAX_LINE);
        let (guest, job) = (&self.guest, &self.job_id);
        match level {
            Level::Trace => tracing::trace!(guest, job, "{line}"),
            Level::Debug => tracing::debug!(guest, job, "{line}"),
            Level::Info => tracing::info!(guest, job, "{line}"),
            Level::Warn => tracing::warn!(guest, job, "{line}"),
            Level::Error => tracing::error!(guest, job, "{line}"),
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
        Ok(())
    }

    /// The last lines logged, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

impl Host for JobState {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log
            .write(level, &message)
            .map_err(wasmtime::Error::new)
    }
}
