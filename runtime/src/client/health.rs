//! Whether the registry answers: every failed attempt of every call counts,
//! the first failure is logged as a warning and the recovery once, and the
//! status port's `/healthz` reads the current state.
//!
//! An answer of any kind (a 2xx, a 409, a 400) means the registry is there; a
//! transient failure (no connection, a timeout, a 5xx, a 429) means it is not,
//! for now.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::RegistryError;

/// The registry's health as this agent sees it. Shared by every clone of a
/// client.
#[derive(Debug, Default)]
pub struct RegistryHealth {
    url: String,
    failed_attempts: AtomicU64,
    failing: Mutex<Option<Failing>>,
}

#[derive(Debug, Clone)]
struct Failing {
    since: Instant,
    reason: String,
}

impl RegistryHealth {
    /// The health of the registry at `url` (named in messages).
    pub fn of(url: &str) -> RegistryHealth {
        RegistryHealth {
            url: url.to_string(),
            ..RegistryHealth::default()
        }
    }

    /// Records the outcome of one attempt of a call (its error names the call).
    pub fn record<T>(&self, result: &Result<T, RegistryError>) {
        match result {
            Err(error) if error.is_transient() => self.failed(error),
            _ => self.answered(),
        }
    }

    fn failed(&self, error: &RegistryError) {
        self.failed_attempts.fetch_add(1, Ordering::Relaxed);
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        match failing.as_mut() {
            Some(failing) => failing.reason = error.to_string(),
            None => {
                tracing::warn!(
                    "the registry at {} did not answer: {error}; retrying",
                    self.url
                );
                *failing = Some(Failing {
                    since: Instant::now(),
                    reason: error.to_string(),
                });
            }
        }
    }

    fn answered(&self) {
        let recovered = self
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(failing) = recovered {
            tracing::info!(
                "the registry answers again (it did not for {:.1} s)",
                failing.since.elapsed().as_secs_f64()
            );
        }
    }

    /// Failed attempts so far, retries included.
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts.load(Ordering::Relaxed)
    }

    /// Why the registry cannot be reached now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let failing = self
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        Some(format!(
            "the registry at {} has not answered for {}: last: {}",
            self.url,
            seconds(failing.since.elapsed()),
            failing.reason
        ))
    }
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1} s", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_and_an_answer_clears_the_problem() {
        let health = RegistryHealth::of("http://registry:9");
        assert!(health.problem().is_none());
        let down: Result<(), _> = Err(RegistryError::Unreachable(
            "GET /jobs: connection refused".into(),
        ));
        health.record(&down);
        health.record(&down);
        assert_eq!(health.failed_attempts(), 2);
        let problem = health.problem().unwrap();
        assert!(
            problem.contains("http://registry:9")
                && problem.contains("GET /jobs: connection refused"),
            "{problem}"
        );
        // A refusal is an answer: the registry is there.
        let refused: Result<(), _> = Err(RegistryError::LockLost("409".into()));
        health.record(&refused);
        assert!(health.problem().is_none());
        assert_eq!(health.failed_attempts(), 2);
    }
}
