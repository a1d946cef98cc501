//! One locked job, from the guest to the registry's verdict.
//!
//! The guest runs with its outputs going to the upload pipeline; beside it the
//! [locked job](LockedJob) renews the lock and forwards progress. If the lock
//! is lost, the guest is stopped at once (its store dropped), nothing is
//! committed and the job is not completed. Otherwise the guest's outcome and
//! the registry errors the job met become complete, release or cancel, by the
//! rules of [`outcome`](super::outcome).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::AgentCtx;
use super::backoff::GuestVerdict;
use super::lease::{LockedJob, NotRecorded};
use super::metrics::Metrics;
use super::outcome::{self, Ending, ReleaseCause};
use crate::client::retry::RetryPolicy;
use crate::client::{JobUploads, RegistryError};
use crate::guest::{Guest, JobEnv, JobOutcome, JobReport};
use crate::protocol::{
    CompletionState, DiscoveryResult, FileKind, Job, JobType, LockGranted, format_rfc3339,
};
use crate::sandbox::progress::{self, Progress};
use crate::sink::{NullSink, OutputSink, OutputSpec, store_whole};
use crate::upload::UploadSink;

/// How a job ended, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Completed in this state.
    Completed(CompletionState),
    /// Released for later.
    Released(ReleaseCause),
    /// Cancelled.
    Cancelled,
    /// The lock was lost; nothing was completed.
    LockLost,
    /// The registry did not record any ending; the lock expires.
    NotReported(String),
}

impl Ended {
    /// A word for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Ended::Completed(CompletionState::Completed) => "completed",
            Ended::Completed(CompletionState::PartiallyCompleted) => "partially completed",
            Ended::Completed(CompletionState::Failed) => "failed",
            Ended::Released(_) => "released",
            Ended::Cancelled => "cancelled",
            Ended::LockLost => "lock lost",
            Ended::NotReported(_) => "not reported",
        }
    }
}

/// Runs `job` under `lock` to its end.
pub async fn run(ctx: Arc<AgentCtx>, job: Job, lock: LockGranted) -> Ended {
    let started = Instant::now();
    let mut locked = LockedJob::start(
        ctx.client.clone(),
        &ctx.renewals,
        &job.job_id,
        lock,
        ctx.config.lock_duration,
        ctx.metrics.clone(),
    );
    if let Some(hook) = &ctx.job_hook {
        hook(&job);
    }
    let (progress_tx, progress_rx) = progress::channel();
    locked.forward_progress(progress_rx);
    let kind = match job.job_type {
        JobType::MediaRequest => FileKind::Media,
        JobType::Thumbnail => FileKind::Thumbnail,
        JobType::Discovery => FileKind::Discovery,
    };
    let range = job
        .start_time_utc
        .zip(job.end_time_utc)
        .map(|(start, end)| (format_rfc3339(start), format_rfc3339(end)));
    let uploads = locked.uploads(kind, job.device_id.clone(), range);
    let faults = locked.faults().clone();
    let mut stop = ctx.stop.clone();
    let interrupted = {
        let work = work(&ctx, &job, uploads, faults.clone(), progress_tx);
        tokio::select! {
            report = work => Ok(report),
            lost = locked.lost() => Err(Some(lost)),
            () = stop.wait_for_release() => Err(None),
        }
    };
    // Past this point the work is dropped: its guest store and every upload
    // of the job with it, so nothing more runs and nothing commits.
    let (ending, work) = match interrupted {
        Ok(work) => {
            // The guest's progress channel is closed: the forwarder sends the last value.
            locked.progress_sent().await;
            let ending = outcome::decide(
                &work.outcome,
                work.camera_auth_refused.as_deref(),
                &faults.errors(),
            );
            (ending, work)
        }
        Err(lost) => {
            let ending = match lost {
                Some(lost) => Ending::Abandon(format!("guest stopped: {lost}")),
                None => {
                    Ending::Release(ReleaseCause::Shutdown, "the agent is shutting down".into())
                }
            };
            (ending, Work::nothing(JobOutcome::Completed))
        }
    };
    let (ended, detail) = end(&ctx, locked, ending, &work.outcome).await;
    if matches!(ended, Ended::Completed(_)) {
        ctx.metrics
            .bytes_uploaded
            .fetch_add(work.bytes, Ordering::Relaxed);
    }
    match &ended {
        Ended::Completed(_) | Ended::Cancelled => ctx.backoff.ended(&job.job_id),
        Ended::Released(ReleaseCause::Shutdown) => {}
        Ended::Released(_) | Ended::LockLost | Ended::NotReported(_) => {
            ctx.backoff.released(&job.job_id);
        }
    }
    log_end(&job, &work, &ended, &detail, started.elapsed());
    ended
}

/// One line per job end: what, by which guest, how long, how many bytes,
/// how it ended and why; at WARN unless the job did what it was asked.
fn log_end(job: &Job, work: &Work, ended: &Ended, detail: &str, elapsed: Duration) {
    let guest = work.guest.as_deref().unwrap_or("no guest");
    let why = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    let seconds = elapsed.as_secs_f64();
    let bytes = if matches!(ended, Ended::Completed(_)) {
        work.bytes
    } else {
        0
    };
    match ended {
        Ended::Completed(CompletionState::Completed | CompletionState::PartiallyCompleted)
        | Ended::Released(ReleaseCause::Shutdown) => tracing::info!(
            job = job.job_id,
            "{} {} job ({guest}, {seconds:.2} s, {bytes} bytes){why}",
            ended.name(),
            job.job_type
        ),
        _ => tracing::warn!(
            job = job.job_id,
            "{} {} job ({guest}, {seconds:.2} s, {bytes} bytes){why}",
            ended.name(),
            job.job_type
        ),
    }
}

/// What the guest(s) produced, with the files already uploaded.
struct Work {
    outcome: JobOutcome,
    bytes: u64,
    /// Why a camera refused the host's credentials, if one did.
    camera_auth_refused: Option<String>,
    /// `name version` of the guest that ran it (several, for discovery).
    guest: Option<String>,
}

impl Work {
    fn nothing(outcome: JobOutcome) -> Work {
        Work {
            outcome,
            bytes: 0,
            camera_auth_refused: None,
            guest: None,
        }
    }
}

/// What one run says of its guest, for its breaker.
fn verdict(report: &JobReport) -> GuestVerdict {
    match (&report.camera_auth_refused, &report.outcome) {
        (Some(why), _) => GuestVerdict::AuthRefused(why.clone()),
        (None, JobOutcome::Unavailable(_)) => GuestVerdict::Unavailable,
        (None, _) => GuestVerdict::Worked,
    }
}

fn guest_name(guest: &Guest) -> String {
    format!("{} {}", guest.manifest().name, guest.manifest().version)
}

async fn work(
    ctx: &Arc<AgentCtx>,
    job: &Job,
    uploads: JobUploads,
    faults: crate::client::JobFaults,
    progress: watch::Sender<Progress>,
) -> Work {
    let guests = match ctx.catalog.route(job) {
        super::catalog::Route::To(guests) => guests,
        // The guest may have been unloaded since the poll, or no guest knows
        // the device yet: another agent (or this one, later) may still do the
        // job, so it is released, not cancelled.
        super::catalog::Route::Nowhere(why) => {
            return Work::nothing(JobOutcome::Unavailable(why));
        }
    };
    let upload_config = crate::upload::UploadConfig {
        blocks_in_flight: ctx.config.blocks_in_flight,
        retry: ctx.retry,
    };
    let sink: Arc<dyn OutputSink> =
        Arc::new(UploadSink::new(Arc::new(uploads), upload_config).with_faults(faults));
    if job.job_type == JobType::Discovery {
        return discover(ctx, job, &guests, sink, progress).await;
    }
    let env = JobEnv { sink, progress };
    let guest = &guests[0];
    let report = guest.run(job, env).await;
    account(ctx, &report);
    ctx.catalog.breakers().record(guest, &verdict(&report));
    Work {
        bytes: report.files.iter().map(|file| file.length).sum(),
        outcome: report.outcome,
        camera_auth_refused: report.camera_auth_refused,
        guest: Some(guest_name(guest)),
    }
}

fn account(ctx: &AgentCtx, report: &JobReport) {
    ctx.metrics
        .guest_micros
        .fetch_add(report.guest_time.as_micros() as u64, Ordering::Relaxed);
}

/// Runs every discovery guest and uploads one merged list. The merge and
/// the file's JSON are CPU work in the number of devices: they run on the
/// blocking pool, never on the workers that drive other jobs.
async fn discover(
    ctx: &Arc<AgentCtx>,
    job: &Job,
    guests: &[Guest],
    sink: Arc<dyn OutputSink>,
    progress: watch::Sender<Progress>,
) -> Work {
    let mut found = Vec::new();
    let mut failures = Vec::new();
    let mut camera_auth_refused = None;
    for guest in guests {
        // Discovery's result is the device list; a guest's own files go nowhere.
        let env = JobEnv {
            sink: Arc::new(NullSink),
            progress: progress.clone(),
        };
        let report = guest.run(job, env).await;
        account(ctx, &report);
        ctx.catalog.breakers().record(guest, &verdict(&report));
        camera_auth_refused = camera_auth_refused.or(report.camera_auth_refused);
        match report.outcome {
            JobOutcome::Discovered(devices) => found.push((guest.manifest().name.clone(), devices)),
            other => failures.push((guest.manifest().name.clone(), other)),
        }
    }
    drop(progress);
    let names = guests.iter().map(guest_name).collect::<Vec<_>>().join(", ");
    let work = |outcome: JobOutcome, bytes: u64| Work {
        outcome,
        bytes,
        camera_auth_refused: camera_auth_refused.clone(),
        guest: Some(names.clone()),
    };
    let catalog = ctx.catalog.clone();
    let cap = ctx.config.max_discovered_devices;
    let merged = tokio::task::spawn_blocking(move || {
        // Each device once, and only from the guest that owns it; each
        // guest's list cut to the cap after ownership is decided.
        let (devices, dropped) = catalog.claim_devices(found, cap);
        let json = DiscoveryResult {
            devices: devices.clone(),
        }
        .to_json();
        (devices, json, dropped)
    })
    .await;
    let Ok((devices, json, dropped)) = merged else {
        return work(
            JobOutcome::Failed("merging the discovery results failed".into()),
            0,
        );
    };
    if devices.is_empty()
        && let Some((name, first)) = failures.first()
    {
        tracing::warn!(job = job.job_id, "discovery by {name} did not succeed");
        return work(first.clone(), 0);
    }
    let spec = OutputSpec {
        name: DiscoveryResult::FILE_NAME.into(),
        content_type: DiscoveryResult::CONTENT_TYPE.into(),
    };
    let stored = match store_whole(sink.as_ref(), &spec, json.into()).await {
        Ok(stored) => stored,
        Err(error) => {
            return work(
                JobOutcome::Failed(format!("storing the discovery file failed: {error}")),
                0,
            );
        }
    };
    if dropped > 0 {
        tracing::warn!(
            job = job.job_id,
            "the discovery reported {dropped} devices over max_discovered_devices = {cap} (per guest): they were left out"
        );
    }
    let outcome = if failures.is_empty() && dropped == 0 {
        JobOutcome::Discovered(devices)
    } else {
        if !failures.is_empty() {
            let names: Vec<String> = failures
                .iter()
                .map(|(name, outcome)| format!("{name}: {outcome:?}"))
                .collect();
            tracing::warn!(
                job = job.job_id,
                "some discovery guests failed: {}",
                names.join("; ")
            );
        }
        JobOutcome::PartiallyCompleted
    };
    work(outcome, stored.length)
}

/// Ends the job as `ending` says; if the registry does not take a complete or
/// a cancel, does what [`outcome::after_failed_ending`] says. Returns how it
/// ended and why, for the job's log line.
async fn end(
    ctx: &AgentCtx,
    locked: LockedJob,
    ending: Ending,
    guest: &JobOutcome,
) -> (Ended, String) {
    let (result, ended, detail) = match &ending {
        Ending::Abandon(why) => {
            Metrics::bump(&ctx.metrics.lock_lost);
            locked.abandon();
            return (Ended::LockLost, format!("not completed: {why}"));
        }
        Ending::Release(cause, why) => return release(ctx, locked, *cause, why).await,
        Ending::FailWithoutFiles(why) => return fail_without_files(ctx, locked, why).await,
        Ending::Complete(state, message) => {
            let detail = message.clone().unwrap_or_else(|| outcome_text(guest));
            (
                locked.complete(*state, message.clone()).await,
                Ended::Completed(*state),
                detail,
            )
        }
        Ending::Cancel(reason) => (
            locked.cancel(reason).await,
            Ended::Cancelled,
            reason.clone(),
        ),
    };
    match result {
        Ok(()) => {
            recorded(ctx, &ended);
            (ended, detail)
        }
        Err(NotRecorded { error, job }) => {
            Metrics::bump(&ctx.metrics.registry_errors);
            match (outcome::after_failed_ending(&ending, &error), job) {
                (Ending::Release(cause, why), Some(locked)) => {
                    let (ended, detail) = release(ctx, *locked, cause, &why).await;
                    (
                        ended,
                        format!("the registry did not record the outcome: {detail}"),
                    )
                }
                (Ending::FailWithoutFiles(why), Some(locked)) => {
                    fail_without_files(ctx, *locked, &why).await
                }
                _ => {
                    Metrics::bump(&ctx.metrics.lock_lost);
                    (
                        Ended::LockLost,
                        format!("lock lost before the outcome was recorded: {error}"),
                    )
                }
            }
        }
    }
}

/// Counts an ending the registry recorded.
fn recorded(ctx: &AgentCtx, ended: &Ended) {
    let counter = match ended {
        Ended::Completed(CompletionState::Completed) => &ctx.metrics.completed,
        Ended::Completed(CompletionState::PartiallyCompleted) => &ctx.metrics.partially_completed,
        Ended::Completed(CompletionState::Failed) => &ctx.metrics.failed,
        _ => &ctx.metrics.cancelled,
    };
    Metrics::bump(counter);
}

/// The registry refused to complete the job because a file of its lock got
/// blocks but was refused: release (which abandons that file), lock again,
/// and complete as Failed with `why` and no file; if even that is refused,
/// cancel with `why`. If another agent locks the job in between, it is theirs.
async fn fail_without_files(ctx: &AgentCtx, locked: LockedJob, why: &str) -> (Ended, String) {
    let id = locked.job_id().to_string();
    let (released, detail) = release(ctx, locked, ReleaseCause::Refused, why).await;
    if released != Ended::Released(ReleaseCause::Refused) {
        return (released, detail);
    }
    let lock = match ctx.client.lock(&id, ctx.config.lock_duration).await {
        Ok(lock) => lock,
        Err(error) => {
            return (
                released,
                format!("{why}; released to abandon the refused file, not locked again: {error}"),
            );
        }
    };
    let locked = LockedJob::start(
        ctx.client.clone(),
        &ctx.renewals,
        &id,
        lock,
        ctx.config.lock_duration,
        ctx.metrics.clone(),
    );
    let reason = format!("{why} (the refused file was abandoned)");
    let (result, ended) = match locked
        .complete(CompletionState::Failed, Some(reason.clone()))
        .await
    {
        Err(NotRecorded {
            job: Some(locked),
            error: RegistryError::Rejected { status: 400, .. },
        }) => (locked.cancel(&reason).await, Ended::Cancelled),
        other => (other, Ended::Completed(CompletionState::Failed)),
    };
    match result {
        Ok(()) => {
            recorded(ctx, &ended);
            (ended, reason)
        }
        Err(NotRecorded { error, job }) => {
            Metrics::bump(&ctx.metrics.registry_errors);
            if let Some(locked) = job {
                locked.abandon();
            }
            (
                Ended::NotReported(error.to_string()),
                format!("{reason}; the registry did not record it either: {error}"),
            )
        }
    }
}

async fn release(
    ctx: &AgentCtx,
    locked: LockedJob,
    cause: ReleaseCause,
    why: &str,
) -> (Ended, String) {
    // A release at shutdown must not hold the process up.
    let locked = if cause == ReleaseCause::Shutdown {
        locked.retrying(SHUTDOWN_RETRY)
    } else {
        locked
    };
    match locked.release(cause).await {
        Ok(()) => (
            Ended::Released(cause),
            format!("{} ({})", why, cause.name()),
        ),
        Err(error) => {
            Metrics::bump(&ctx.metrics.registry_errors);
            (
                Ended::NotReported(error.to_string()),
                format!("{why}; the release failed, the lock will expire: {error}"),
            )
        }
    }
}

/// How long a release at shutdown may retry.
const SHUTDOWN_RETRY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(1),
    deadline: Duration::from_secs(5),
};

fn outcome_text(outcome: &JobOutcome) -> String {
    match outcome {
        JobOutcome::Discovered(devices) => format!("{} devices", devices.len()),
        JobOutcome::Failed(message)
        | JobOutcome::Unsupported(message)
        | JobOutcome::Unavailable(message) => message.clone(),
        _ => String::new(),
    }
}
