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
use std::time::Duration;

use tokio::sync::watch;

use super::AgentCtx;
use super::lease::{LockedJob, NotRecorded};
use super::metrics::Metrics;
use super::outcome::{self, Ending, ReleaseCause};
use crate::client::JobUploads;
use crate::guest::{Guest, JobEnv, JobOutcome, JobReport};
use crate::protocol::{CompletionState, FileKind, Job, JobType, LockGranted, format_rfc3339};
use crate::sandbox::progress::{self, Progress};
use crate::sink::{NullSink, OutputSink};
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
    let mut locked = LockedJob::start(
        ctx.client.clone(),
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
    let work = match interrupted {
        Ok(work) => work,
        Err(Some(lost)) => {
            tracing::warn!(
                job = job.job_id,
                "lock lost, guest stopped, job not completed: {lost}"
            );
            Metrics::bump(&ctx.metrics.lock_lost);
            locked.abandon();
            return Ended::LockLost;
        }
        Err(None) => {
            let ending =
                Ending::Release(ReleaseCause::Shutdown, "the agent is shutting down".into());
            return end(&ctx, locked, ending, &JobOutcome::Completed, 0).await;
        }
    };
    // The guest's progress channel is closed: the forwarder sends the last value.
    locked.progress_sent().await;
    let ending = outcome::decide(&work.outcome, &faults.errors());
    end(&ctx, locked, ending, &work.outcome, work.bytes).await
}

/// What the guest(s) produced, with the files already uploaded.
struct Work {
    outcome: JobOutcome,
    bytes: u64,
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
            return Work {
                outcome: JobOutcome::Unavailable(why),
                bytes: 0,
            };
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
    let report = guests[0].run(job, env).await;
    account(ctx, &report);
    Work {
        bytes: report.files.iter().map(|file| file.length).sum(),
        outcome: report.outcome,
    }
}

fn account(ctx: &AgentCtx, report: &JobReport) {
    ctx.metrics
        .guest_micros
        .fetch_add(report.guest_time.as_micros() as u64, Ordering::Relaxed);
}

/// Runs every discovery guest and uploads one merged list.
async fn discover(
    ctx: &Arc<AgentCtx>,
    job: &Job,
    guests: &[Guest],
    sink: Arc<dyn OutputSink>,
    progress: watch::Sender<Progress>,
) -> Work {
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for guest in guests {
        // Discovery's result is the device list; a guest's own files go nowhere.
        let env = JobEnv {
            sink: Arc::new(NullSink),
            progress: progress.clone(),
        };
        let report = guest.run(job, env).await;
        account(ctx, &report);
        match report.outcome {
            JobOutcome::Discovered(devices) => found.push((guest.manifest().name.clone(), devices)),
            other => failures.push((guest.manifest().name.clone(), other)),
        }
    }
    drop(progress);
    // Each device once, and only from the guest that owns it.
    let devices = ctx.catalog.claim_devices(found);
    if devices.is_empty()
        && let Some((name, first)) = failures.first()
    {
        tracing::warn!(job = job.job_id, "discovery by {name} did not succeed");
        return Work {
            outcome: first.clone(),
            bytes: 0,
        };
    }
    let mut report = JobReport {
        outcome: JobOutcome::Discovered(devices),
        files: Vec::new(),
        progress: Progress::default(),
        guest_time: Duration::ZERO,
        elapsed: Duration::ZERO,
        log_tail: Vec::new(),
    };
    if let Err(error) = report.store_discovery(sink.as_ref()).await {
        return Work {
            outcome: JobOutcome::Failed(format!("storing the discovery file failed: {error}")),
            bytes: 0,
        };
    }
    let bytes = report.files.iter().map(|file| file.length).sum();
    let outcome = if failures.is_empty() {
        report.outcome
    } else {
        let names: Vec<String> = failures
            .iter()
            .map(|(name, outcome)| format!("{name}: {outcome:?}"))
            .collect();
        tracing::warn!(
            job = job.job_id,
            "some discovery guests failed: {}",
            names.join("; ")
        );
        JobOutcome::PartiallyCompleted
    };
    Work { outcome, bytes }
}

/// Ends the job as `ending` says; if the registry does not take a complete or
/// a cancel, releases it instead (PROTOCOL.md: another agent may then do it).
async fn end(
    ctx: &AgentCtx,
    locked: LockedJob,
    ending: Ending,
    guest: &JobOutcome,
    bytes: u64,
) -> Ended {
    let id = locked.job_id().to_string();
    let (result, ended, detail) = match ending {
        Ending::Abandon(why) => {
            tracing::warn!(job = id, "lock lost, job not completed: {why}");
            Metrics::bump(&ctx.metrics.lock_lost);
            locked.abandon();
            return Ended::LockLost;
        }
        Ending::Release(cause, why) => return release(ctx, locked, cause, &why).await,
        Ending::Complete(state, message) => {
            let detail = message.clone().unwrap_or_else(|| outcome_text(guest));
            (
                locked.complete(state, message).await,
                Ended::Completed(state),
                detail,
            )
        }
        Ending::Cancel(reason) => (locked.cancel(&reason).await, Ended::Cancelled, reason),
    };
    match result {
        Ok(()) => {
            let counter = match &ended {
                Ended::Completed(CompletionState::Completed) => &ctx.metrics.completed,
                Ended::Completed(CompletionState::PartiallyCompleted) => {
                    &ctx.metrics.partially_completed
                }
                Ended::Completed(CompletionState::Failed) => &ctx.metrics.failed,
                _ => &ctx.metrics.cancelled,
            };
            Metrics::bump(counter);
            ctx.metrics
                .bytes_uploaded
                .fetch_add(bytes, Ordering::Relaxed);
            tracing::info!(
                job = id,
                "{}{}{detail}",
                ended.name(),
                if detail.is_empty() { "" } else { ": " }
            );
            ended
        }
        Err(NotRecorded { error, job }) => {
            Metrics::bump(&ctx.metrics.registry_errors);
            match (outcome::after_failed_ending(&error), job) {
                (Ending::Release(cause, why), Some(locked)) => {
                    let locked = *locked;
                    tracing::warn!(job = id, "the registry did not record the outcome: {why}");
                    release(ctx, locked, cause, &why).await
                }
                _ => {
                    tracing::warn!(
                        job = id,
                        "lock lost before the outcome was recorded: {error}"
                    );
                    Metrics::bump(&ctx.metrics.lock_lost);
                    Ended::LockLost
                }
            }
        }
    }
}

async fn release(ctx: &AgentCtx, locked: LockedJob, cause: ReleaseCause, why: &str) -> Ended {
    let id = locked.job_id().to_string();
    match locked.release(cause).await {
        Ok(()) => {
            tracing::info!(job = id, "released ({}): {why}", cause.name());
            Ended::Released(cause)
        }
        Err(error) => {
            Metrics::bump(&ctx.metrics.registry_errors);
            tracing::warn!(job = id, "release failed (the lock will expire): {error}");
            Ended::NotReported(error.to_string())
        }
    }
}

fn outcome_text(outcome: &JobOutcome) -> String {
    match outcome {
        JobOutcome::Discovered(devices) => format!("{} devices", devices.len()),
        JobOutcome::Failed(message)
        | JobOutcome::Unsupported(message)
        | JobOutcome::Unavailable(message) => message.clone(),
        _ => String::new(),
    }
}
