//! The limits of one job's store, and the message each one fails a job with.
//!
//! Memory: the store's resource limiter charges every linear memory and table
//! of every core instance to the job's [`Ledger`], which holds the host's
//! buffers too, against one `limits.memory_mib`. CPU: the ledger meters the
//! job's polls; the engine's epoch callback, which runs every tick while guest
//! code runs, traps once `limits.cpu_secs` is passed and otherwise yields to
//! the executor so one busy guest never starves the others. Handles: per-job
//! caps ([`crate::manifest::Caps`]) on sockets, requests, name lookups, open
//! outputs and resource-table entries.

use std::time::Duration;

use wasmtime::ResourceLimiter;

use super::ledger::Ledger;

/// Which limit a job hit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// Guest memories and tables, and host memory held for the job.
    #[error(
        "memory limit of {limit_mib} MiB exceeded (limits.memory_mib): the job asked for {asked_mib} MiB in all, {host_mib} MiB of it host buffers held for the job"
    )]
    Memory {
        /// The limit.
        limit_mib: u64,
        /// What the job wanted in all.
        asked_mib: u64,
        /// What of it the host held (buffers, header maps).
        host_mib: u64,
    },
    /// CPU time: guest code and the host calls it made.
    #[error("CPU time limit of {0:?} exceeded (limits.cpu_secs, guest code and host calls)")]
    Cpu(Duration),
    /// Time of the whole call.
    #[error("wall time limit of {0:?} exceeded (limits.wall_secs)")]
    Wall(Duration),
    /// Log lines.
    #[error("log limit of {0} lines exceeded (limits.log_lines)")]
    Log(u32),
    /// Bytes of all output files together.
    #[error("output limit of {0} bytes exceeded (limits.output_mib)")]
    Output(u64),
    /// Log bytes (the operator's `policy.log_bytes_per_job`).
    #[error("log limit of {0} bytes exceeded (policy.log_bytes_per_job)")]
    LogBytes(u64),
    /// A per-job cap on a kind of handle.
    #[error("{resource} limit of {limit} exceeded (limits.{key})")]
    Cap {
        /// What is capped, in words.
        resource: &'static str,
        /// The cap.
        limit: u64,
        /// The manifest key that sets it.
        key: &'static str,
    },
    /// A cap no manifest sets (the same for every job).
    #[error("{resource} limit of {limit} exceeded (fixed by the host)")]
    FixedCap {
        /// What is capped, in words.
        resource: &'static str,
        /// The cap.
        limit: u64,
        /// How `/metrics` labels it.
        label: &'static str,
    },
}

impl LimitExceeded {
    /// The resource, as `/metrics` labels it.
    pub fn resource(&self) -> &'static str {
        match self {
            LimitExceeded::Memory { .. } => "memory",
            LimitExceeded::Cpu(_) => "cpu",
            LimitExceeded::Wall(_) => "wall",
            LimitExceeded::Log(_) | LimitExceeded::LogBytes(_) => "log",
            LimitExceeded::Output(_) => "output",
            LimitExceeded::Cap { key, .. } => key,
            LimitExceeded::FixedCap { label, .. } => label,
        }
    }
}

/// The store's resource limiter: every memory and table of every core
/// instance, summed, in the job's ledger.
#[derive(Debug)]
pub struct MemoryLimiter {
    ledger: Ledger,
}

/// Bytes a table element is counted as (a funcref or externref slot).
const TABLE_ELEMENT_BYTES: u64 = 16;

impl MemoryLimiter {
    /// A limiter charging `ledger`.
    pub fn new(ledger: Ledger) -> MemoryLimiter {
        MemoryLimiter { ledger }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        self.ledger
            .grow_guest(growth)
            .map_err(wasmtime::Error::new)?;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64 * TABLE_ELEMENT_BYTES;
        self.ledger
            .grow_guest(growth)
            .map_err(wasmtime::Error::new)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attack of a component with several core instances, each with a
    /// memory under the limit: one store, four instances of a module with a
    /// 20 MiB memory, a 64 MiB limit; the fourth is refused.
    #[test]
    fn memories_of_every_core_instance_share_one_limit() {
        // (module (memory 320)): 320 pages of 64 KiB.
        const MODULE: &[u8] = b"\0asm\x01\0\0\0\x05\x04\x01\x00\xc0\x02";
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, MODULE).unwrap();
        let ledger = Ledger::new("limits-test", 64 << 20, Duration::from_secs(1));
        let mut store = wasmtime::Store::new(&engine, MemoryLimiter::new(ledger.clone()));
        store.limiter(|limiter| limiter);
        for _ in 0..3 {
            wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        }
        let fourth = wasmtime::Instance::new(&mut store, &module, &[]);
        assert!(fourth.is_err());
        let hit = ledger.hit().expect("the limit is recorded");
        assert!(
            hit.to_string().contains("memory limit of 64 MiB exceeded"),
            "{hit}"
        );
        assert_eq!(ledger.memory_held(), 60 << 20);
    }
}
