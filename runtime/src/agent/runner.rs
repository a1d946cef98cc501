//! One locked job, from the guest to the registry's verdict.
//!
//! The guest runs with its outputs going to the upload pipeline; beside it the
//! lease keeper renews the lock and a forwarder sends progress (at most once a
//! second, and always the last value). If the lock is lost, the guest is
//! stopped at once (its store dropped), nothing is committed and the job is
//! not completed. Otherwise the outcome becomes complete, release or cancel.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::AgentCtx;
use super::metrics::Metrics;
use crate::client::{JobUploads, RegistryError};
use crate::guest::{Guest, JobEnv, JobOutcome, JobReport};
use crate::protocol::{
    CompletionState, DiscoveredDevice, FileKind, Job, JobType, LockGranted, format_rfc3339,
};
use crate::sandbox::progress::{self, Progress};
use crate::sink::{NullSink, OutputSink};
use crate::upload::UploadSink;

/// How a job ended, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Completed in this state.
    Completed(CompletionState),
    /// Released for later.
    Released,
    /// Cancelled.
    Cancelled,
    /// The lock was lost; nothing was completed.
    LockLost,
    /// The registry refused the outcome call.
    NotReported(String),
}

impl Ended {
    /// A word for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Ended::Completed(CompletionState::Completed) => "completed",
            Ended::Completed(CompletionState::PartiallyCompleted) => "partially completed",
            Ended::Completed(CompletionState::Failed) => "failed",
            Ended::Released => "released",
            Ended::Cancelled => "cancelled",
            Ended::LockLost => "lock lost",
            Ended::NotReported(_) => "not reported",
        }
    }
}

/// Runs `job` under `lock` to its end.
pub async fn run(ctx: Arc<AgentCtx>, job: Job, lock: LockGranted) -> Ended {
    let token = lock.lock_token.clone();
    let keeper = tokio::spawn(super::lease::keep(
        ctx.client.clone(),
        job.job_id.clone(),
        token.clone(),
        ctx.config.lock_duration,
        lock.lock_expiration_utc,
        ctx.metrics.clone(),
    ));
    let (progress_tx, progress_rx) = progress::channel();
    let forwarder = tokio::spawn(forward_progress(
        ctx.clone(),
        job.job_id.clone(),
        token.clone(),
        progress_rx,
    ));
    let mut stop = ctx.stop.clone();
    let mut work = Box::pin(work(&ctx, &job, &token, progress_tx));
    let keeper_abort = keeper.abort_handle();
    let mut keeper_done = Box::pin(async {
        keeper
            .await
            .unwrap_or_else(|join| RegistryError::LockLost(join.to_string()))
    });
    let interrupted = tokio::select! {
        report = &mut work => Ok(report),
        lost = &mut keeper_done => Err(Some(lost)),
        () = stop.wait_for_release() => Err(None),
    };
    let outcome = match interrupted {
        Ok(report) => report,
        Err(lost) => {
            // Dropping the work drops the guest's store and every upload of
            // the job: nothing more runs, nothing commits.
            drop(work);
            forwarder.abort();
            return match lost {
                Some(lost) => {
                    tracing::warn!(
                        job = job.job_id,
                        "lock lost, guest stopped, job not completed: {lost}"
                    );
                    Metrics::bump(&ctx.metrics.lock_lost);
                    Ended::LockLost
                }
                None => {
                    let ended = release(&ctx, &job, &token, "the agent is shutting down").await;
                    keeper_abort.abort();
                    ended
                }
            };
        }
    };
    // The guest's progress channel is closed: the forwarder sends the last value.
    let _ = tokio::time::timeout(Duration::from_secs(10), forwarder).await;
    let ended = report(&ctx, &job, &token, outcome).await;
    // Stop the keeper only now: the lock had to hold while reporting.
    keeper_abort.abort();
    ended
}

/// What the guest(s) produced, with the files already uploaded.
struct Work {
    outcome: JobOutcome,
    bytes: u64,
}

async fn work(
    ctx: &Arc<AgentCtx>,
    job: &Job,
    token: &str,
    progress: watch::Sender<Progress>,
) -> Work {
    let guests = ctx.catalog.route(job);
    if guests.is_empty() {
        // The guest may have been unloaded since the poll: another agent (or
        // this one, later) may still do the job, so it is released, not cancelled.
        return Work {
            outcome: JobOutcome::Unavailable(format!(
                "no guest of this agent serves {} jobs now",
                job.job_type
            )),
            bytes: 0,
        };
    }
    let kind = match job.job_type {
        JobType::MediaRequest => FileKind::Media,
        JobType::Thumbnail => FileKind::Thumbnail,
        JobType::Discovery => FileKind::Discovery,
    };
    let range = job
        .start_time_utc
        .zip(job.end_time_utc)
        .map(|(start, end)| (format_rfc3339(start), format_rfc3339(end)));
    let uploads = JobUploads::new(
        ctx.client.clone(),
        &job.job_id,
        token,
        kind,
        job.device_id.clone(),
        range,
    );
    let upload_config = crate::upload::UploadConfig {
        blocks_in_flight: ctx.config.blocks_in_flight,
        retry: ctx.retry,
    };
    let sink: Arc<dyn OutputSink> = Arc::new(UploadSink::new(Arc::new(uploads), upload_config));
    if job.job_type == JobType::Discovery {
        return discover(ctx, job, &guests, sink, progress).await;
    }
    let env = JobEnv {
        sink,
        secrets: ctx.secrets.clone(),
        progress,
    };
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
    let mut devices: Vec<DiscoveredDevice> = Vec::new();
    let mut failures = Vec::new();
    for guest in guests {
        // Discovery's result is the device list; a guest's own files go nowhere.
        let env = JobEnv {
            sink: Arc::new(NullSink),
            secrets: ctx.secrets.clone(),
            progress: progress.clone(),
        };
        let report = guest.run(job, env).await;
        account(ctx, &report);
        match report.outcome {
            JobOutcome::Discovered(found) => {
                ctx.catalog.learn_devices(
                    &guest.manifest().name,
                    found.iter().map(|device| device.device_id.as_str()),
                );
                for device in found {
                    if !devices
                        .iter()
                        .any(|known| known.device_id == device.device_id)
                    {
                        devices.push(device);
                    }
                }
            }
            other => failures.push((guest.manifest().name.clone(), other)),
        }
    }
    drop(progress);
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

/// Sends progress at most once a second, and the last value as soon as the
/// guest ends (its progress channel closes).
async fn forward_progress(
    ctx: Arc<AgentCtx>,
    job_id: String,
    token: String,
    mut progress: watch::Receiver<Progress>,
) {
    let mut sent = Progress::default();
    let mut next_send = tokio::time::Instant::now();
    'forward: while progress.changed().await.is_ok() {
        while tokio::time::Instant::now() < next_send {
            tokio::select! {
                () = tokio::time::sleep_until(next_send) => {}
                changed = progress.changed() => if changed.is_err() { break 'forward },
            }
        }
        let now = *progress.borrow_and_update();
        if now != sent && now.total > 0 {
            if let Err(error) = ctx
                .client
                .progress(&job_id, &token, now.done, now.total)
                .await
            {
                tracing::debug!(job = job_id, "progress not recorded: {error}");
            }
            sent = now;
            next_send = tokio::time::Instant::now() + Duration::from_secs(1);
        }
    }
    let last = *progress.borrow();
    if last != sent && last.total > 0 {
        let _ = ctx
            .client
            .progress(&job_id, &token, last.done, last.total)
            .await;
    }
}

/// Turns the outcome into complete, release or cancel.
async fn report(ctx: &AgentCtx, job: &Job, token: &str, work: Work) -> Ended {
    let id = &job.job_id;
    let (call, ended) = match &work.outcome {
        JobOutcome::Completed | JobOutcome::Discovered(_) => (
            ctx.client
                .complete(id, token, CompletionState::Completed, None)
                .await,
            Ended::Completed(CompletionState::Completed),
        ),
        JobOutcome::PartiallyCompleted => (
            ctx.client
                .complete(id, token, CompletionState::PartiallyCompleted, None)
                .await,
            Ended::Completed(CompletionState::PartiallyCompleted),
        ),
        JobOutcome::Failed(message) => (
            ctx.client
                .complete(id, token, CompletionState::Failed, Some(message.clone()))
                .await,
            Ended::Completed(CompletionState::Failed),
        ),
        JobOutcome::Unsupported(reason) => {
            (ctx.client.cancel(id, token, reason).await, Ended::Cancelled)
        }
        JobOutcome::Unavailable(why) => return release(ctx, job, token, why).await,
    };
    match call {
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
                .fetch_add(work.bytes, Ordering::Relaxed);
            let detail = outcome_text(&work.outcome);
            tracing::info!(
                job = id,
                "{}{}{detail}",
                ended.name(),
                if detail.is_empty() { "" } else { ": " }
            );
            ended
        }
        Err(RegistryError::LockLost(why)) => {
            tracing::warn!(job = id, "lock lost before the outcome was recorded: {why}");
            Metrics::bump(&ctx.metrics.lock_lost);
            Ended::LockLost
        }
        Err(error) => {
            tracing::error!(job = id, "the registry did not record the outcome: {error}");
            Metrics::bump(&ctx.metrics.registry_errors);
            Ended::NotReported(error.to_string())
        }
    }
}

async fn release(ctx: &AgentCtx, job: &Job, token: &str, why: &str) -> Ended {
    match ctx.client.release(&job.job_id, token).await {
        Ok(()) => {
            Metrics::bump(&ctx.metrics.released);
            tracing::info!(job = job.job_id, "released: {why}");
            Ended::Released
        }
        Err(error) => {
            Metrics::bump(&ctx.metrics.registry_errors);
            tracing::warn!(
                job = job.job_id,
                "release failed (the lock will expire): {error}"
            );
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
