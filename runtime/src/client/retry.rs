//! Capped exponential backoff with full jitter, inside a total deadline,
//! honouring the server's `Retry-After`.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::client::RegistryError;

/// How to retry transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first backoff.
    pub base: Duration,
    /// The longest backoff.
    pub cap: Duration,
    /// Give up after this long in all.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            deadline: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt` (1-based retry count): a random time
    /// up to `min(cap, base · 2^attempt)`, or the server's `Retry-After` when
    /// longer.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let jittered =
            Duration::from_micros(rand::rng().random_range(0..=ceiling.as_micros() as u64));
        retry_after.map_or(jittered, |asked| asked.max(jittered))
    }

    /// Runs `operation` until it succeeds, fails for good, or the deadline
    /// passes (then the last error is returned).
    pub async fn run<T, F, Fut>(&self, what: &str, mut operation: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(error @ (RegistryError::Transient { .. } | RegistryError::Unreachable(_))) => {
                    let (message, retry_after) = match error {
                        RegistryError::Transient {
                            message,
                            retry_after,
                        } => (message, retry_after),
                        other => (other.to_string(), None),
                    };
                    attempt += 1;
                    let wait = self.backoff(attempt, retry_after);
                    if started.elapsed() + wait > self.deadline {
                        return Err(RegistryError::Transient {
                            message: format!("{what}: gave up after {attempt} attempts: {message}"),
                            retry_after,
                        });
                    }
                    tracing::debug!("{what} failed ({message}); retry {attempt} in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Err(other) => return Err(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_honours_retry_after() {
        let policy = RetryPolicy::default();
        for attempt in 1..40 {
            assert!(policy.backoff(attempt, None) <= policy.cap);
        }
        assert!(policy.backoff(1, None) <= Duration::from_millis(200));
        assert!(policy.backoff(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn transient_errors_are_retried_and_others_are_not() {
        let policy = RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            ..RetryPolicy::default()
        };
        let mut calls = 0;
        let result = policy
            .run("op", || {
                calls += 1;
                let outcome = if calls < 3 {
                    Err(RegistryError::Transient {
                        message: "503".into(),
                        retry_after: None,
                    })
                } else {
                    Ok(calls)
                };
                async move { outcome }
            })
            .await;
        assert_eq!(result.unwrap(), 3);
        let mut calls = 0;
        let result: Result<(), _> = policy
            .run("op", || {
                calls += 1;
                async { Err(RegistryError::LockLost("409".into())) }
            })
            .await;
        assert!(matches!(result, Err(RegistryError::LockLost(_))));
        assert_eq!(calls, 1);
    }
}
