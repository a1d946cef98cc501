//! A locked job: one value that owns its lock, so a job ends once.
//!
//! [`LockedJob`] holds the lock token (nobody else sees it), the lease keeper
//! that renews the lock when a third of the lease is left, and the forwarder
//! that sends progress. Both helpers are tasks tied to the value with
//! [`AbortOnDropHandle`]: when the job value goes away (its ending, or a panic
//! unwinding through it) they stop, so a lock never outlives its job. The
//! endings, [`LockedJob::complete`], [`LockedJob::cancel`],
//! [`LockedJob::release`] and [`LockedJob::abandon`], consume the value.
//!
//! A job value dropped without an ending (a panic) releases its lock in the
//! background, best effort; if that fails the lock simply expires.
//!
//! The keepers run on a thread of their own ([`Renewals`]): a runtime with
//! one thread and its own connections to the registry, where no job's work
//! runs, so renewals keep their time even when every worker of the agent's
//! runtime is busy.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::metrics::Metrics;
use super::outcome::ReleaseCause;
use crate::client::{JobFaults, JobUploads, RegistryClient, RegistryError};
use crate::protocol::{CompletionState, FileKind, LockGranted};
use crate::sandbox::progress::Progress;

/// The shortest lease the keeper plans with.
const MIN_LEASE: Duration = Duration::from_millis(300);

/// How long the last progress may take to be sent once the guest ended.
const LAST_PROGRESS: Duration = Duration::from_secs(10);
/// How long a job runs before its progress is first sent (then at most once
/// a second, and the last value when the guest ends): the complete that
/// follows a short job says all a progress call would have.
const PROGRESS_GRACE: Duration = Duration::from_millis(500);

/// How long the lease granted at `expiration` lasts from now.
fn remaining(expiration: OffsetDateTime) -> Duration {
    let left = expiration - OffsetDateTime::now_utc();
    Duration::try_from(left).unwrap_or(Duration::ZERO)
}

/// The lease thread: where every keeper runs. Cheap to clone; the thread
/// ends when the last clone is dropped.
#[derive(Clone)]
pub struct Renewals {
    handle: tokio::runtime::Handle,
    client: RegistryClient,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl Renewals {
    /// Starts the lease thread, renewing through `client`'s token over
    /// connections of its own.
    pub fn start(client: &RegistryClient) -> std::io::Result<Renewals> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("corral-leases".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Renewals {
            handle,
            client: client.with_own_connections(),
            _stop: Arc::new(stop),
        })
    }
}

/// One job under its lock.
pub struct LockedJob {
    client: RegistryClient,
    job_id: String,
    token: String,
    metrics: Arc<Metrics>,
    faults: JobFaults,
    keeper: AbortOnDropHandle<RegistryError>,
    lost: Option<RegistryError>,
    forwarder: Option<AbortOnDropHandle<()>>,
    ended: bool,
}

impl LockedJob {
    /// Takes ownership of `lock` on `job_id` and starts renewing it for
    /// `lease` on the lease thread.
    pub fn start(
        client: RegistryClient,
        renewals: &Renewals,
        job_id: &str,
        lock: LockGranted,
        lease: Duration,
        metrics: Arc<Metrics>,
    ) -> LockedJob {
        let keeper = AbortOnDropHandle::new(renewals.handle.spawn(keep(
            renewals.client.clone(),
            job_id.to_string(),
            lock.lock_token.clone(),
            lease,
            lock.lock_expiration_utc,
            metrics.clone(),
        )));
        LockedJob {
            client,
            job_id: job_id.to_string(),
            token: lock.lock_token,
            metrics,
            faults: JobFaults::default(),
            keeper,
            lost: None,
            forwarder: None,
            ended: false,
        }
    }

    /// The same job, its ending calls retried by `retry` (e.g. a short
    /// deadline at shutdown).
    pub fn retrying(mut self, retry: crate::client::retry::RetryPolicy) -> LockedJob {
        self.client = self.client.with_retry(retry);
        self
    }

    /// The job's id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The registry errors the job's calls met so far (uploads, progress).
    pub fn faults(&self) -> &JobFaults {
        &self.faults
    }

    /// The upload calls of this job, under its lock.
    pub fn uploads(
        &self,
        kind: FileKind,
        device_id: Option<String>,
        range: Option<(String, String)>,
    ) -> JobUploads {
        JobUploads::new(
            self.client.clone(),
            &self.job_id,
            &self.token,
            kind,
            device_id,
            range,
        )
    }

    /// Sends `progress` to the registry while the job runs: at most once a
    /// second, and the last value as soon as its sender is dropped.
    pub fn forward_progress(&mut self, progress: watch::Receiver<Progress>) {
        self.forwarder = Some(AbortOnDropHandle::new(tokio::spawn(forward_progress(
            self.client.clone(),
            self.job_id.clone(),
            self.token.clone(),
            self.faults.clone(),
            progress,
        ))));
    }

    /// Waits (a while) for the forwarder to send the last progress; call it
    /// once the progress sender is dropped.
    pub async fn progress_sent(&mut self) {
        if let Some(forwarder) = self.forwarder.take() {
            let _ = tokio::time::timeout(LAST_PROGRESS, forwarder).await;
        }
    }

    /// Resolves when the lock is lost (a renewal answered 409 or 410, or the
    /// lease ran out while renewing failed), with why.
    pub async fn lost(&mut self) -> RegistryError {
        if let Some(lost) = &self.lost {
            return lost.clone();
        }
        let lost = (&mut self.keeper).await.unwrap_or_else(|join| {
            RegistryError::LockLost(format!("the lease keeper ended: {join}"))
        });
        self.lost = Some(lost.clone());
        lost
    }

    /// Completes the job in `state`.
    pub async fn complete(
        mut self,
        state: CompletionState,
        message: Option<String>,
    ) -> Result<(), NotRecorded> {
        let (client, job_id, token) = self.call_parts();
        let result = self
            .end(async move { client.complete(&job_id, &token, state, message).await })
            .await;
        self.handed_back(result)
    }

    /// Cancels the job: it will never be done.
    pub async fn cancel(mut self, reason: &str) -> Result<(), NotRecorded> {
        let (client, job_id, token) = self.call_parts();
        let reason = reason.to_string();
        let result = self
            .end(async move { client.cancel(&job_id, &token, &reason).await })
            .await;
        self.handed_back(result)
    }

    /// Releases the job for another attempt; counts it under `cause`.
    pub async fn release(mut self, cause: ReleaseCause) -> Result<(), RegistryError> {
        let (client, job_id, token) = self.call_parts();
        let released = self
            .end(async move { client.release(&job_id, &token).await })
            .await;
        if released.is_ok() {
            self.metrics.count_release(cause);
        }
        released
    }

    /// Sends nothing more: the lock is gone, or is left to expire.
    pub fn abandon(mut self) {
        self.ended = true;
    }

    fn call_parts(&self) -> (RegistryClient, String, String) {
        (self.client.clone(), self.job_id.clone(), self.token.clone())
    }

    /// A complete or cancel the registry did not take hands the job back
    /// while its lock may still hold, so it can still be released.
    fn handed_back(mut self, result: Result<(), RegistryError>) -> Result<(), NotRecorded> {
        match result {
            Ok(()) => Ok(()),
            Err(error @ (RegistryError::LockLost(_) | RegistryError::Gone(_))) => {
                Err(NotRecorded { error, job: None })
            }
            Err(error) => {
                self.ended = false;
                Err(NotRecorded {
                    error,
                    job: Some(Box::new(self)),
                })
            }
        }
    }

    /// Sends the ending `call` while the lock holds: if the lease runs out
    /// first, the call is dropped (a retry landing after the lock went to
    /// another agent would only be refused).
    async fn end(
        &mut self,
        call: impl Future<Output = Result<(), RegistryError>>,
    ) -> Result<(), RegistryError> {
        self.ended = true;
        self.forwarder = None;
        if let Some(lost) = &self.lost {
            return Err(lost.clone());
        }
        tokio::select! {
            result = call => result,
            lost = self.lost() => Err(lost),
        }
    }
}

/// A complete or cancel that the registry did not record.
pub struct NotRecorded {
    /// Why.
    pub error: RegistryError,
    /// The job, when its lock may still hold (to release it); `None` once the
    /// lock is known to be gone.
    pub job: Option<Box<LockedJob>>,
}

impl Drop for LockedJob {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // No ending: the job's task is unwinding from a panic (or was
        // dropped). Release in the background; the keeper stops with us.
        let cause = if std::thread::panicking() {
            ReleaseCause::Panic
        } else {
            ReleaseCause::Shutdown
        };
        tracing::warn!(
            job = self.job_id,
            "job ended without an outcome: releasing its lock"
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, job_id, token) = self.call_parts();
        let metrics = self.metrics.clone();
        runtime.spawn(async move {
            match client.release(&job_id, &token).await {
                Ok(()) => metrics.count_release(cause),
                Err(error) => {
                    tracing::warn!(
                        job = job_id,
                        "release failed (the lock will expire): {error}"
                    )
                }
            }
        });
    }
}

/// Keeps the lock on `job_id` until the lease is lost; returns then. A failed
/// renewal is tried again until the lease would run out, never longer.
async fn keep(
    client: RegistryClient,
    job_id: String,
    token: String,
    lease: Duration,
    expiration: OffsetDateTime,
    metrics: Arc<Metrics>,
) -> RegistryError {
    let mut granted = remaining(expiration).min(lease).max(MIN_LEASE);
    let mut expires_at = Instant::now() + granted;
    loop {
        // Renew when a third of the lease is left.
        let renew_at = expires_at - granted / 3;
        tokio::time::sleep_until(renew_at).await;
        let renewed = tokio::time::timeout_at(expires_at, client.renew(&job_id, &token, lease));
        match renewed.await {
            Ok(Ok(renewed)) => {
                Metrics::bump(&metrics.lock_renewals);
                granted = remaining(renewed.lock_expiration_utc)
                    .min(lease)
                    .max(MIN_LEASE);
                expires_at = Instant::now() + granted;
            }
            Ok(Err(error @ (RegistryError::LockLost(_) | RegistryError::Gone(_)))) => return error,
            Err(_) => {
                Metrics::bump(&metrics.registry_errors);
                return RegistryError::LockLost(
                    "the lease ran out while renewing it failed".to_string(),
                );
            }
            Ok(Err(error)) if Instant::now() >= expires_at => {
                Metrics::bump(&metrics.registry_errors);
                return RegistryError::LockLost(format!(
                    "the lease ran out while renewing failed: {error}"
                ));
            }
            Ok(Err(error)) => {
                tracing::warn!(
                    job = job_id,
                    "renewing the lock failed, trying again: {error}"
                );
                Metrics::bump(&metrics.registry_errors);
                granted = expires_at
                    .saturating_duration_since(Instant::now())
                    .max(MIN_LEASE);
            }
        }
    }
}

/// Sends progress at most once a second, and the last value as soon as the
/// guest ends (its progress channel closes). A call that fails after its
/// retries is noted in `faults`: the job is then released, not completed.
async fn forward_progress(
    client: RegistryClient,
    job_id: String,
    token: String,
    faults: JobFaults,
    mut progress: watch::Receiver<Progress>,
) {
    let send = |now: Progress| {
        let (client, job_id, token, faults) = (&client, &job_id, &token, &faults);
        async move {
            if let Err(error) = client.progress(job_id, token, now.done, now.total).await {
                tracing::debug!(job = job_id, "progress not recorded: {error}");
                faults.note(&error);
            }
        }
    };
    let started = Instant::now();
    let mut sent = Progress::default();
    // Nothing is sent in the first PROGRESS_GRACE: a job that ends by then
    // (a thumbnail takes milliseconds) costs no progress call at all.
    let mut next_send = started + PROGRESS_GRACE;
    'forward: while progress.changed().await.is_ok() {
        while Instant::now() < next_send {
            tokio::select! {
                () = tokio::time::sleep_until(next_send) => {}
                changed = progress.changed() => if changed.is_err() { break 'forward },
            }
        }
        let now = *progress.borrow_and_update();
        if now != sent && now.total > 0 {
            send(now).await;
            sent = now;
            next_send = Instant::now() + Duration::from_secs(1);
        }
    }
    let last = *progress.borrow();
    if last != sent && last.total > 0 && started.elapsed() >= PROGRESS_GRACE {
        send(last).await;
    }
}
