//! The lease keeper of one job: renews the lock when a third of the lease is
//! left; reports a lost lock at once.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::metrics::Metrics;
use crate::client::{RegistryClient, RegistryError};

/// How long the lease granted at `expiration` lasts from now.
fn remaining(expiration: OffsetDateTime) -> Duration {
    let left = expiration - OffsetDateTime::now_utc();
    Duration::try_from(left).unwrap_or(Duration::ZERO)
}

/// Keeps the lock on `job_id` until the lease is lost; returns then. Transient
/// failures are retried until the lease would run out.
pub async fn keep(
    client: RegistryClient,
    job_id: String,
    token: String,
    lease: Duration,
    expiration: OffsetDateTime,
    metrics: Arc<Metrics>,
) -> RegistryError {
    let mut granted = remaining(expiration)
        .min(lease)
        .max(Duration::from_millis(300));
    let mut expires_at = Instant::now() + granted;
    loop {
        // Renew when a third of the lease is left.
        let renew_at = expires_at - granted / 3;
        tokio::time::sleep_until(renew_at).await;
        match client.renew(&job_id, &token, lease).await {
            Ok(renewed) => {
                Metrics::bump(&metrics.lock_renewals);
                granted = remaining(renewed.lock_expiration_utc)
                    .min(lease)
                    .max(Duration::from_millis(300));
                expires_at = Instant::now() + granted;
            }
            Err(error @ (RegistryError::LockLost(_) | RegistryError::Gone(_))) => return error,
            Err(error) if Instant::now() >= expires_at => {
                return RegistryError::LockLost(format!(
                    "the lease ran out while renewing failed: {error}"
                ));
            }
            Err(error) => {
                tracing::warn!(
                    job = job_id,
                    "renewing the lock failed, trying again: {error}"
                );
                Metrics::bump(&metrics.registry_errors);
                granted = expires_at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(300));
            }
        }
    }
}
