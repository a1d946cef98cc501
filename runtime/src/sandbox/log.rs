//! `corral:integration/log`: the guest's log lines.
//!
//! Links: the `log` interface. Per-job state: a budget and the last lines
//! (kept for the job report and failure messages). Limits: `limits.log_lines`
//! lines and the operator's `policy.log_bytes_per_job` bytes a job, at most
//! `policy.log_lines_per_sec` lines a second shown (the rest dropped and
//! counted), each cut at 4 KiB, with control characters made visible so a
//! line cannot forge another or style a terminal ([`guest_text`]); a guest
//! that logs past its budget is stopped with a message naming the limit (a
//! flood is a bug or an attack). The guest's stdout and stderr come here too,
//! line by line ([`stdio`](super::stdio)), within the same budget.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::JobState;
use super::bindings::corral::integration::log::{Host, Level};
use super::guest_text::{self, truncate};
use super::ledger::Ledger;
use super::limits::LimitExceeded;

/// Longest line kept, in bytes.
pub const MAX_LINE: usize = 4096;
/// Lines kept for the report.
const TAIL: usize = 20;
/// Host memory the log holds for a job at most (its tail), charged up front.
pub const MEMORY: u64 = (TAIL * MAX_LINE) as u64;

/// A job's log, shared by the `log` interface and the guest's stdio.
#[derive(Debug, Clone)]
pub struct SharedLog(Arc<Mutex<GuestLog>>);

impl SharedLog {
    /// A log for `job_id` run by `guest`, within `budget`, its limit hits
    /// recorded in `ledger`.
    pub fn new(guest: &str, job_id: &str, budget: LogBudget, ledger: Ledger) -> SharedLog {
        SharedLog(Arc::new(Mutex::new(GuestLog {
            guest: guest.to_string(),
            job_id: job_id.to_string(),
            budget,
            lines_left: budget.lines,
            bytes_left: budget.bytes,
            tokens: f64::from(budget.lines_per_sec),
            refilled: Instant::now(),
            dropped: 0,
            tail: VecDeque::with_capacity(TAIL),
            ledger,
        })))
    }

    /// Records one line; `Err` once the budget is spent (also recorded in the
    /// job's ledger).
    pub fn write(&self, level: Level, message: &str) -> Result<(), LimitExceeded> {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        log.write(level, message)
            .map_err(|limit| log.ledger.refuse(limit))
    }

    /// The last lines logged, oldest first, and a note of lines dropped.
    pub fn tail(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).tail()
    }
}

/// What a job may log: lines (the manifest's `limits.log_lines`), bytes and
/// a rate (the operator's policy).
#[derive(Debug, Clone, Copy)]
pub struct LogBudget {
    /// Lines in all; past them the guest is stopped.
    pub lines: u32,
    /// Bytes in all; past them the guest is stopped.
    pub bytes: u64,
    /// Lines a second; more are dropped (and counted).
    pub lines_per_sec: u32,
}

/// A job's log budget and recent lines.
#[derive(Debug)]
pub struct GuestLog {
    guest: String,
    job_id: String,
    budget: LogBudget,
    lines_left: u32,
    bytes_left: u64,
    /// Tokens of the rate's bucket, refilled `lines_per_sec` a second.
    tokens: f64,
    refilled: Instant,
    dropped: u64,
    tail: VecDeque<String>,
    ledger: Ledger,
}

impl GuestLog {
    /// Records one line from the guest; `Err` once the budget is spent. A line
    /// over the rate counts against the budget but is dropped.
    fn write(&mut self, level: Level, message: &str) -> Result<(), LimitExceeded> {
        if self.lines_left == 0 {
            return Err(LimitExceeded::Log(self.budget.lines));
        }
        self.lines_left -= 1;
        let shown = guest_text::visible(message.trim_end());
        let line = truncate(&shown, MAX_LINE);
        self.bytes_left = match self.bytes_left.checked_sub(line.len() as u64) {
            Some(left) => left,
            None => return Err(LimitExceeded::LogBytes(self.budget.bytes)),
        };
        let rate = f64::from(self.budget.lines_per_sec);
        self.tokens = (self.tokens + self.refilled.elapsed().as_secs_f64() * rate).min(rate);
        self.refilled = Instant::now();
        if self.tokens < 1.0 {
            self.dropped += 1;
            return Ok(());
        }
        self.tokens -= 1.0;
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

    fn tail(&self) -> Vec<String> {
        let mut tail: Vec<String> = self.tail.iter().cloned().collect();
        if self.dropped > 0 {
            tail.push(format!(
                "({} lines dropped: over policy.log_lines_per_sec = {})",
                self.dropped, self.budget.lines_per_sec
            ));
        }
        tail
    }
}

impl Host for JobState {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log
            .write(level, &message)
            .map_err(wasmtime::Error::new)
    }
}
