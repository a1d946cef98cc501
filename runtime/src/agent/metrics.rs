//! Counters of one agent, served as Prometheus text on the status port.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::outcome::ReleaseCause;
use crate::client::health::RegistryHealth;

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
    /// Whether the registry answers, and every failed attempt.
    pub registry: Arc<RegistryHealth>,
    /// Microseconds spent running guest code.
    pub guest_micros: AtomicU64,
    /// Jobs running now.
    pub running: AtomicI64,
    /// Releases, by [`ReleaseCause`] (indexed by [`ReleaseCause::index`]).
    pub released_by: [AtomicU64; ReleaseCause::ALL.len()],
    /// Job tasks that panicked (the agent went on).
    pub panics: AtomicU64,
}

impl Metrics {
    /// Counters that read the registry's health from `registry`.
    pub fn new(registry: Arc<RegistryHealth>) -> Metrics {
        Metrics {
            registry,
            ..Metrics::default()
        }
    }

    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one release for `cause` (and in the `released` total).
    pub fn count_release(&self, cause: ReleaseCause) {
        Metrics::bump(&self.released);
        Metrics::bump(&self.released_by[cause.index()]);
    }

    /// Releases counted for `cause`.
    pub fn releases(&self, cause: ReleaseCause) -> u64 {
        self.released_by[cause.index()].load(Ordering::Relaxed)
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
        text.push_str(
            "# HELP corral_releases_total Jobs released, by cause.\n# TYPE corral_releases_total counter\n",
        );
        for cause in ReleaseCause::ALL {
            let _ = writeln!(
                text,
                "corral_releases_total{{cause=\"{}\"}} {}",
                cause.name(),
                self.releases(cause)
            );
        }
        for (name, help, value) in [
            (
                "corral_job_panics_total",
                "Job tasks that panicked; their locks were released or left to expire.",
                get(&self.panics),
            ),
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
                "Registry call attempts that failed (no answer, timeout, 5xx, 429), retries included.",
                self.registry.failed_attempts(),
            ),
            (
                "corral_registry_calls_failed_total",
                "Registry calls that failed for good (after their retries, or refused).",
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
            "# HELP corral_registry_up Whether the registry answered the last call (1) or not (0).\n# TYPE corral_registry_up gauge\ncorral_registry_up {}",
            u8::from(self.registry.problem().is_none())
        );
        let _ = writeln!(
            text,
            "# HELP corral_jobs_running Jobs running now.\n# TYPE corral_jobs_running gauge\ncorral_jobs_running {}",
            self.running.load(Ordering::Relaxed)
        );
        crate::sandbox::ledger::render_metrics(&mut text);
        text
    }
}
