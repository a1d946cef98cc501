//! Counters of one agent, served as Prometheus text on the status port.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What the agent counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Jobs ended, by outcome: completed, partially completed, failed,
    /// released, cancelled, lock lost.
    pub completed: AtomicU64,
    pub partially_completed: AtomicU64,
    pub failed: AtomicU64,
    pub released: AtomicU64,
    pub cancelled: AtomicU64,
    pub lock_lost: AtomicU64,
    /// Plaintext bytes of committed files.
    pub bytes_uploaded: AtomicU64,
    /// Lock renewals that succeeded.
    pub lock_renewals: AtomicU64,
    /// Registry calls that failed (after retries).
    pub registry_errors: AtomicU64,
    /// Microseconds spent running guest code.
    pub guest_micros: AtomicU64,
    /// Jobs running now.
    pub running: AtomicI64,
}

impl Metrics {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut text = String::new();
        text.push_str(
            "# HELP corral_jobs_total Jobs ended, by outcome.\n# TYPE corral_jobs_total counter\n",
        );
        for (outcome, counter) in [
            ("completed", &self.completed),
            ("partially_completed", &self.partially_completed),
            ("failed", &self.failed),
            ("released", &self.released),
            ("cancelled", &self.cancelled),
            ("lock_lost", &self.lock_lost),
        ] {
            let _ = writeln!(
                text,
                "corral_jobs_total{{outcome=\"{outcome}\"}} {}",
                get(counter)
            );
        }
        for (name, help, value) in [
            (
                "corral_bytes_uploaded_total",
                "Plaintext bytes of committed files.",
                get(&self.bytes_uploaded),
            ),
            (
                "corral_lock_renewals_total",
                "Lock renewals that succeeded.",
                get(&self.lock_renewals),
            ),
            (
                "corral_lock_losses_total",
                "Locks lost while a job ran.",
                get(&self.lock_lost),
            ),
            (
                "corral_registry_errors_total",
                "Registry calls that failed after retries.",
                get(&self.registry_errors),
            ),
        ] {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let seconds = get(&self.guest_micros) as f64 / 1e6;
        let _ = writeln!(
            text,
            "# HELP corral_guest_seconds_total Time spent running guest code.\n# TYPE corral_guest_seconds_total counter\ncorral_guest_seconds_total {seconds}"
        );
        let _ = writeln!(
            text,
            "# HELP corral_jobs_running Jobs running now.\n# TYPE corral_jobs_running gauge\ncorral_jobs_running {}",
            self.running.load(Ordering::Relaxed)
        );
        text
    }
}
