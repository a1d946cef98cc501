//! The agent: one registry identity, a folder of guests, and the loop that
//! polls, locks, runs and reports.
//!
//! The model: the [scheduler](Agent::run) polls only for the job types its
//! guests serve (and whose guests are not paused, see [`backoff`]) and only
//! while it has capacity (overall and per type); when idle it backs off up to
//! the poll interval, when busy it polls again when a job ends, but never
//! sooner than the minimum poll interval after the last poll, unless that
//! poll filled every free slot (a queue is waiting: the next job may start as
//! soon as one ends, one poll per job at most). It takes jobs
//! oldest first and locks each, skipping a job it released lately and a job
//! whose guest is paused; a 409 moves it to the next. Each locked job runs in its own task ([`runner`]) with a
//! [lease keeper](lease). On shutdown it stops polling, lets running jobs
//! finish within a grace period, then releases the rest; a second signal
//! releases at once.

pub mod backoff;
pub mod catalog;
pub mod config;
pub mod folder_watch;
pub mod lease;
pub mod metrics;
pub mod outcome;
pub mod ownership;
pub mod runner;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use self::backoff::JobBackoff;
use self::catalog::{Catalog, Route};
use self::config::AgentConfig;
use self::lease::Renewals;
use self::metrics::Metrics;
use self::runner::Ended;
use crate::client::connection::ConnectionFile;
use crate::client::retry::RetryPolicy;
use crate::client::{Polled, RegistryClient, RegistryError};
use crate::engine::{Runtime, RuntimeConfig};
use crate::protocol::JobType;
use crate::secrets::Secrets;

/// Where shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum StopLevel {
    Running,
    /// Stop polling; let running jobs finish.
    Draining,
    /// Release running jobs now.
    Releasing,
}

/// A handle to stop an agent: [`Stop::drain`] (first signal), then
/// [`Stop::release_all`] (second signal, or the grace period's end).
#[derive(Clone)]
pub struct Stop {
    level: watch::Sender<StopLevel>,
    watcher: watch::Receiver<StopLevel>,
}

impl Default for Stop {
    fn default() -> Self {
        let (level, watcher) = watch::channel(StopLevel::Running);
        Stop { level, watcher }
    }
}

impl Stop {
    /// Stops polling; running jobs may finish within the grace period.
    pub fn drain(&self) {
        self.level.send_if_modified(|level| {
            let raise = *level < StopLevel::Draining;
            if raise {
                *level = StopLevel::Draining;
            }
            raise
        });
    }

    /// Releases every running job now.
    pub fn release_all(&self) {
        self.level.send_replace(StopLevel::Releasing);
    }

    fn level(&self) -> StopLevel {
        *self.watcher.borrow()
    }

    async fn wait_for(&mut self, level: StopLevel) {
        let _ = self.watcher.wait_for(|now| *now >= level).await;
    }

    /// Resolves once stopping has begun (the first signal).
    pub async fn wait_for_drain(&mut self) {
        self.wait_for(StopLevel::Draining).await;
    }

    /// Resolves when jobs must be released.
    pub(crate) async fn wait_for_release(&mut self) {
        self.wait_for(StopLevel::Releasing).await;
    }
}

/// What every job task shares.
pub struct AgentCtx {
    pub(crate) client: RegistryClient,
    pub(crate) catalog: Catalog,
    pub(crate) config: AgentConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) retry: RetryPolicy,
    pub(crate) stop: Stop,
    pub(crate) reload: Arc<Notify>,
    /// The lease thread, where every job's lock is renewed.
    pub(crate) renewals: Renewals,
    /// When each released job may be locked again.
    pub(crate) backoff: JobBackoff,
    /// Runs at the start of every job, inside its task (tests only).
    pub(crate) job_hook: Option<JobHook>,
}

/// A function run at the start of every job, inside the job's task, once
/// its lock is held: tests use one that panics to show what a panicking job
/// does. Only code that builds an [`Agent`] can set one; nothing a guest or
/// the registry sends can.
pub type JobHook = Arc<dyn Fn(&crate::protocol::Job) + Send + Sync>;

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The connection file.
    #[error(transparent)]
    Connection(#[from] crate::client::connection::ConnectionError),
    /// The guests.
    #[error(transparent)]
    Guests(#[from] catalog::CatalogError),
    /// The engine.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// Anything else about the set-up.
    #[error("{0}")]
    Setup(String),
}

/// A configured agent.
pub struct Agent {
    ctx: Arc<AgentCtx>,
}

impl Agent {
    /// Loads the connection file and the guests; nothing is sent yet (see
    /// [`Agent::check_registry`]). A guest that cannot load is refused and
    /// listed, not fatal; an empty guests folder waits for guests.
    pub async fn start(config: AgentConfig, mut secrets: Secrets) -> Result<Agent, StartError> {
        let file = ConnectionFile::load(&config.connection_file)?;
        config.bind_secrets(&mut secrets);
        let runtime = Runtime::new(RuntimeConfig {
            max_instances: (config.max_jobs as u32 + 4) * 2,
        })?
        .with_cache(&config.cache_dir)?
        .with_secrets(Arc::new(secrets.clone()))
        .with_policy(Arc::new(config.policy.clone()));
        let catalog = Catalog::load(&runtime, &config.guests_dir)?;
        let retry = RetryPolicy::default();
        let agent_id = config
            .agent_id
            .clone()
            .unwrap_or_else(|| file.principal_id.clone());
        if agent_id != file.principal_id {
            tracing::warn!(
                "agent_id = \"{agent_id}\" differs from the connection file's ServicePrincipalId \"{}\": the registry may refuse this agent's polls (remove agent_id to use the file's)",
                file.principal_id
            );
        }
        catalog.keep_owners(&agent_id)?;
        let client = RegistryClient::from_connection_file(
            &file,
            &agent_id,
            config.registry_url.as_deref(),
            config.ca_file.as_deref(),
            retry,
        )
        .map_err(StartError::Setup)?;
        Ok(Agent::with_parts(client, catalog, config, retry))
    }

    /// Gets a token and polls once, within `deadline`, so a bad key, an
    /// agent id the registry refuses, or an unreachable registry shows now.
    pub async fn check_registry(&self, deadline: Duration) -> Result<(), RegistryError> {
        let retry = RetryPolicy {
            deadline,
            ..self.ctx.retry
        };
        self.ctx
            .client
            .with_retry(retry)
            .check(&self.ctx.catalog.served_types())
            .await
    }

    /// The agent id it polls for.
    pub fn agent_id(&self) -> &str {
        self.ctx.client.agent_id()
    }

    /// The registry's base address.
    pub fn registry_url(&self) -> &str {
        self.ctx.client.api()
    }

    /// An agent from parts already set up (the demo and tests).
    pub fn with_parts(
        client: RegistryClient,
        catalog: Catalog,
        config: AgentConfig,
        retry: RetryPolicy,
    ) -> Agent {
        let renewals = Renewals::start(&client).expect("the lease thread starts");
        Agent {
            ctx: Arc::new(AgentCtx {
                metrics: Arc::new(Metrics::new(client.health())),
                client,
                catalog,
                config,
                retry,
                stop: Stop::default(),
                reload: Arc::new(Notify::new()),
                renewals,
                backoff: JobBackoff::default(),
                job_hook: None,
            }),
        }
    }

    /// Runs `hook` at the start of every job (see [`JobHook`]). Call it
    /// before [`Agent::run`].
    pub fn with_job_hook(mut self, hook: JobHook) -> Agent {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.job_hook = Some(hook);
        }
        self
    }

    /// Its counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.ctx.metrics.clone()
    }

    /// The handle that stops it.
    pub fn stopper(&self) -> Stop {
        self.ctx.stop.clone()
    }

    /// Its guests.
    pub fn catalog(&self) -> &Catalog {
        &self.ctx.catalog
    }

    /// Polls and runs jobs until stopped; returns once every job has ended.
    /// Meanwhile the guests folder is watched and changed guests swapped in.
    pub async fn run(self) {
        let ctx = self.ctx;
        let watcher = tokio::spawn(folder_watch::watch_guests(
            ctx.catalog.clone(),
            ctx.reload.clone(),
        ));
        let ended = Arc::new(Notify::new());
        let mut running = Running::default();
        let mut stop = ctx.stop.clone();
        // The first wait when idle; it doubles up to `poll_interval`.
        let first_idle_wait = FIRST_IDLE_WAIT.min(ctx.config.poll_interval);
        let mut idle_wait = first_idle_wait;
        let mut last_poll: Option<Instant> = None;
        // Jobs the last poll offered that were skipped (backed off, or their
        // guest paused): the next poll asks for that many more, so skipped
        // jobs at the head of the queue never hide the ones behind them.
        let mut skipped = 0;
        // Whether the last poll filled every free slot: then more jobs are
        // likely waiting, and the next poll need not wait for the pacing.
        let mut filled = false;
        while stop.level() == StopLevel::Running {
            running.reap();
            let mut started = 0;
            let capacity = ctx.config.max_jobs.saturating_sub(running.tasks.len());
            let types: Vec<JobType> = ctx
                .catalog
                .served_types()
                .into_iter()
                .filter(|job| running.count(*job) < type_limit(&ctx.config, *job))
                .collect();
            if capacity > 0 && !types.is_empty() {
                if let Some(last) = last_poll.filter(|_| !filled) {
                    let next = last + ctx.config.min_poll_interval;
                    tokio::select! {
                        () = tokio::time::sleep_until(next.into()) => {}
                        () = stop.wait_for(StopLevel::Draining) => break,
                    }
                }
                last_poll = Some(Instant::now());
                let asked = capacity * 2 + skipped.min(MAX_SKIPPED_ASKED);
                let polled = tokio::select! {
                    polled = ctx.client.poll(&types, Some(asked)) => polled,
                    () = stop.wait_for(StopLevel::Draining) => break,
                };
                match polled {
                    Ok(polled) => {
                        let taken = take_jobs(&ctx, polled, capacity, &mut running, &ended).await;
                        started = taken.started;
                        skipped = taken.skipped;
                        filled = started == capacity;
                    }
                    Err(error) => {
                        filled = false;
                        // The first failed attempt was logged as it happened
                        // (see `RegistryHealth`); this is the call giving up.
                        Metrics::bump(&ctx.metrics.registry_errors);
                        tracing::warn!("polling failed: {error}");
                    }
                }
            }
            if started > 0 {
                idle_wait = first_idle_wait;
                continue;
            }
            tokio::select! {
                () = ended.notified() => idle_wait = first_idle_wait,
                () = tokio::time::sleep(idle_wait) => idle_wait = (idle_wait * 2).min(ctx.config.poll_interval),
                () = stop.wait_for(StopLevel::Draining) => {}
            }
        }
        drain(&ctx, running).await;
        watcher.abort();
    }

    /// Asks for a rescan of the guests folder now (the status port's reload).
    pub fn reloader(&self) -> Arc<Notify> {
        self.ctx.reload.clone()
    }
}

/// The running jobs, and how many of each type.
#[derive(Default)]
struct Running {
    tasks: JoinSet<Ended>,
    types: HashMap<tokio::task::Id, JobType>,
}

impl Running {
    fn count(&self, job: JobType) -> usize {
        self.types
            .values()
            .filter(|running| **running == job)
            .count()
    }

    /// Forgets the jobs that ended (even by a panic).
    fn reap(&mut self) {
        while let Some(done) = self.tasks.try_join_next_with_id() {
            let id = match done {
                Ok((id, _)) => id,
                Err(error) => error.id(),
            };
            self.types.remove(&id);
        }
    }
}

fn type_limit(config: &AgentConfig, job: JobType) -> usize {
    config
        .max_jobs_per_type
        .get(&job)
        .copied()
        .unwrap_or(usize::MAX)
}

/// The first wait of an idle agent before it polls again (doubling up to
/// `poll_interval`, never above it).
const FIRST_IDLE_WAIT: Duration = Duration::from_millis(50);

/// The most extra jobs a poll asks for to see past skipped ones.
const MAX_SKIPPED_ASKED: usize = 200;

/// What one poll's jobs came to.
struct Taken {
    started: usize,
    skipped: usize,
}

/// Whether `job` may be locked now: not released by this agent lately, and
/// going to a guest that is not paused. A job no guest can take now is
/// locked, and released with the reason.
fn may_take(ctx: &AgentCtx, job: &crate::protocol::Job) -> bool {
    if !ctx.backoff.ready(&job.job_id) {
        return false;
    }
    match ctx.catalog.route(job) {
        Route::To(guests) => guests
            .iter()
            .any(|guest| ctx.catalog.breakers().admits(guest)),
        Route::Nowhere(_) => true,
    }
}

/// Locks and starts jobs from a poll, oldest first, within capacity.
async fn take_jobs(
    ctx: &Arc<AgentCtx>,
    polled: Vec<Polled>,
    mut capacity: usize,
    running: &mut Running,
    ended: &Arc<Notify>,
) -> Taken {
    let mut started = 0;
    let mut skipped = 0;
    for entry in polled {
        if capacity == 0 {
            break;
        }
        let job = match entry {
            Polled::Job(job) => job,
            Polled::Malformed { job_id, reason } => {
                cancel_malformed(ctx, &job_id, &reason).await;
                continue;
            }
            Polled::Foreign { job_id, job_type } => {
                tracing::debug!(
                    job = job_id,
                    "left alone: a {job_type} job, a type this agent does not know"
                );
                continue;
            }
        };
        if running.count(job.job_type) >= type_limit(&ctx.config, job.job_type) {
            continue;
        }
        if !may_take(ctx, &job) {
            skipped += 1;
            continue;
        }
        match ctx.client.lock(&job.job_id, ctx.config.lock_duration).await {
            Ok(lock) => {
                capacity -= 1;
                started += 1;
                let (ctx, ended) = (ctx.clone(), ended.clone());
                tracing::info!(job = job.job_id, "locked {} job", job.job_type);
                let job_type = job.job_type;
                let task = running.tasks.spawn(async move {
                    use futures::FutureExt;
                    ctx.metrics.running.fetch_add(1, Ordering::Relaxed);
                    let job_id = job.job_id.clone();
                    // A panic unwinds through the job's locked value, which
                    // releases its lock and stops its helpers; the agent goes on.
                    let result = std::panic::AssertUnwindSafe(runner::run(ctx.clone(), job, lock))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            Metrics::bump(&ctx.metrics.panics);
                            tracing::error!(job = job_id, "the job's task panicked");
                            Ended::NotReported("the job's task panicked".into())
                        });
                    ctx.metrics.running.fetch_sub(1, Ordering::Relaxed);
                    ended.notify_one();
                    result
                });
                running.types.insert(task.id(), job_type);
            }
            Err(RegistryError::LockLost(_) | RegistryError::Gone(_)) => {}
            Err(error) => {
                Metrics::bump(&ctx.metrics.registry_errors);
                tracing::warn!(job = job.job_id, "lock failed: {error}");
            }
        }
    }
    Taken { started, skipped }
}

/// A job this agent can never run is locked and cancelled with the reason.
async fn cancel_malformed(ctx: &AgentCtx, job_id: &str, reason: &str) {
    tracing::warn!("{reason}");
    if job_id.is_empty() {
        return;
    }
    if let Ok(lock) = ctx.client.lock(job_id, ctx.config.lock_duration).await
        && ctx
            .client
            .cancel(job_id, &lock.lock_token, reason)
            .await
            .is_ok()
    {
        Metrics::bump(&ctx.metrics.cancelled);
    }
}

/// After the loop: running jobs get the grace period, then are released.
async fn drain(ctx: &Arc<AgentCtx>, running: Running) {
    let mut running = running.tasks;
    if running.is_empty() {
        return;
    }
    tracing::info!(
        "stopping: {} jobs running, {:?} to finish",
        running.len(),
        ctx.config.shutdown_grace
    );
    let mut stop = ctx.stop.clone();
    let grace = tokio::time::sleep(ctx.config.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = running.join_next() => if next.is_none() { return },
            () = &mut grace => {
                tracing::info!("grace period over: releasing {} jobs", running.len());
                ctx.stop.release_all();
                break;
            }
            () = stop.wait_for_release() => break,
        }
    }
    while running.join_next().await.is_some() {}
}
