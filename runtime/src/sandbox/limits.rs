//! Memory and CPU limits of one job's store.
//!
//! Memory: the store's resource limiter refuses growth past the manifest's limit
//! and traps with a message naming it. CPU: a call hook measures the time spent
//! in guest code (not in host calls), and the engine's epoch callback, which runs
//! every tick while guest code runs, traps once the limit is passed and
//! otherwise yields to the executor so one busy guest never starves the others.

use std::time::{Duration, Instant};

use wasmtime::{CallHook, ResourceLimiter};

/// Which limit a job hit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// Linear memory.
    #[error("memory limit of {limit_mib} MiB exceeded (the guest asked for {asked_mib} MiB)")]
    Memory {
        /// The limit.
        limit_mib: u64,
        /// What the guest wanted in all.
        asked_mib: u64,
    },
    /// Time spent in guest code.
    #[error("CPU time limit of {0:?} exceeded")]
    Cpu(Duration),
    /// Time of the whole call.
    #[error("wall time limit of {0:?} exceeded")]
    Wall(Duration),
    /// Log lines.
    #[error("log limit of {0} lines exceeded")]
    Log(u32),
    /// Log bytes (the operator's `policy.log_bytes_per_job`).
    #[error("log limit of {0} bytes exceeded (policy.log_bytes_per_job)")]
    LogBytes(u64),
    /// Tables or instances beyond what a component needs.
    #[error("table limit of {0} elements exceeded")]
    Table(usize),
}

/// The store's memory limiter.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: u64,
    hit: Option<LimitExceeded>,
}

/// Most table elements a guest may have (funcref tables of big programs).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes of linear memory per memory.
    pub fn new(limit: u64) -> MemoryLimiter {
        MemoryLimiter { limit, hit: None }
    }

    /// The limit hit, if any.
    pub fn hit(&self) -> Option<&LimitExceeded> {
        self.hit.as_ref()
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            let hit = LimitExceeded::Memory {
                limit_mib: self.limit >> 20,
                asked_mib: (desired as u64).div_ceil(1 << 20),
            };
            self.hit = Some(hit.clone());
            return Err(wasmtime::Error::new(hit));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            let hit = LimitExceeded::Table(MAX_TABLE_ELEMENTS);
            self.hit = Some(hit.clone());
            return Err(wasmtime::Error::new(hit));
        }
        Ok(true)
    }
}

/// Time spent running guest code.
#[derive(Debug)]
pub struct CpuMeter {
    limit: Duration,
    spent: Duration,
    running_since: Option<Instant>,
}

impl CpuMeter {
    /// A meter allowing `limit` of guest code.
    pub fn new(limit: Duration) -> CpuMeter {
        CpuMeter {
            limit,
            spent: Duration::ZERO,
            running_since: None,
        }
    }

    /// Records a transition between guest and host code.
    pub fn on_call(&mut self, hook: CallHook) {
        let now = Instant::now();
        if hook.entering_host() {
            if let Some(since) = self.running_since.take() {
                self.spent += now - since;
            }
        } else {
            self.running_since = Some(now);
        }
    }

    /// Guest time so far.
    pub fn spent(&self) -> Duration {
        self.spent
            + self
                .running_since
                .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// `Err` once the limit is passed.
    pub fn check(&self) -> Result<(), LimitExceeded> {
        if self.spent() > self.limit {
            Err(LimitExceeded::Cpu(self.limit))
        } else {
            Ok(())
        }
    }
}
