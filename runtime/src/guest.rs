//! A loaded guest, and running one job of it.
//!
//! [`Guest::run`] is the whole life of a job inside the sandbox: a fresh store
//! with the manifest's limits, instantiation from the pre-instantiated
//! component, the export for the job's type under a wall-time timeout, and the
//! mapping of whatever happened (a result, an error, a trap, a limit) to one
//! [`JobOutcome`] with a message that names the cause.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use wasmtime::component::InstancePre;
use wasmtime::{Store, UpdateDeadline};

use crate::cache::CacheUse;
use crate::manifest::{Manifest, ManifestError};
use crate::policy::OperatorPolicy;
use crate::protocol::{DiscoveredDevice, DiscoveryResult, Job, JobType};
use crate::sandbox::bindings::corral::integration::types as wit;
use crate::sandbox::bindings::{Integration, IntegrationPre};
use crate::sandbox::guest_text;
use crate::sandbox::http::OutboundPolicy;
use crate::sandbox::limits::LimitExceeded;
use crate::sandbox::log::LogBudget;
use crate::sandbox::progress::Progress;
use crate::sandbox::resolver::Resolver;
use crate::sandbox::{JobSetup, JobState};
use crate::secrets::Secrets;
use crate::sink::{OutputSink, OutputSpec, SinkError, StoredFile, store_whole};

/// How long a job's end waits for its output writers to discard what the
/// guest left unfinished.
const WRITERS_GRACE: Duration = Duration::from_secs(1);

/// Why a guest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The `.wasm` could not be read.
    #[error("cannot read guest {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The manifest is missing or wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Not WebAssembly at all.
    #[error("not a WebAssembly file: {0}")]
    NotWasm(String),
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component: build the guest with `--target wasm32-wasip2`"
    )]
    CoreModule,
    /// The component does not compile (corrupt, or uses unsupported features).
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// It is over one of the engine's per-component limits.
    #[error("{0}")]
    EngineLimit(String),
    /// It imports something corral does not provide.
    #[error("the component imports what corral does not provide: {0}")]
    Imports(String),
    /// It does not export the `corral:integration` world's functions.
    #[error("the component is not of the corral:integration world: {0}")]
    WrongWorld(String),
    /// A grant asks for a secret the operator did not give it.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretRefusal),
    /// A guest file is a link the policy does not allow.
    #[error("{0}")]
    Link(String),
    /// The manifest asks for more than the operator's policy allows.
    #[error("refused by the operator's policy: {0}")]
    Policy(#[from] crate::policy::PolicyRefusal),
}

/// How a job ended, as the agent acts on it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Everything asked for was stored (→ `Completed`).
    Completed,
    /// Part of it was stored (→ `PartiallyCompleted`).
    PartiallyCompleted,
    /// Discovery found these devices (→ a discovery file, then `Completed`).
    Discovered(Vec<DiscoveredDevice>),
    /// Not now, maybe later (→ release).
    Unavailable(String),
    /// Never (→ cancel).
    Unsupported(String),
    /// Failed: the guest said so, trapped, or hit a limit (→ `Failed`).
    Failed(String),
}

/// Everything about one finished job.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// How it ended.
    pub outcome: JobOutcome,
    /// The files it stored, in order.
    pub files: Vec<StoredFile>,
    /// Its last progress.
    pub progress: Progress,
    /// Time spent running guest code.
    pub guest_time: Duration,
    /// Time of the whole run.
    pub elapsed: Duration,
    /// The guest's last log lines.
    pub log_tail: Vec<String>,
    /// Why a camera refused the credentials the host added (401/403), if
    /// one did: a configuration fault, not the job's.
    pub camera_auth_refused: Option<String>,
}

impl JobReport {
    /// For a discovery job, stores PROTOCOL.md's discovery file (which the host
    /// writes from the devices the guest returned) and adds it to `files`.
    pub async fn store_discovery(&mut self, sink: &dyn OutputSink) -> Result<(), SinkError> {
        if let JobOutcome::Discovered(devices) = &self.outcome {
            let result = DiscoveryResult {
                devices: devices.clone(),
            };
            let spec = OutputSpec {
                name: DiscoveryResult::FILE_NAME.into(),
                content_type: DiscoveryResult::CONTENT_TYPE.into(),
            };
            self.files
                .push(store_whole(sink, &spec, result.to_json().into()).await?);
        }
        Ok(())
    }
}

/// What a job runs with besides the guest.
#[derive(Clone)]
pub struct JobEnv {
    /// Where output files go.
    pub sink: Arc<dyn OutputSink>,
    /// Where progress is published.
    pub progress: watch::Sender<Progress>,
}

/// A compiled, linked, pre-instantiated guest. Cheap to clone.
#[derive(Clone)]
pub struct Guest {
    inner: Arc<GuestInner>,
}

struct GuestInner {
    manifest: Manifest,
    sha256: String,
    loaded_at: SystemTime,
    jobs_run: AtomicU64,
    pre: IntegrationPre<JobState>,
    policy: Arc<OutboundPolicy>,
    settings: Arc<BTreeMap<String, String>>,
    log: LogBudget,
    /// The secrets it was loaded against (values and the operator's bindings).
    secrets: Arc<Secrets>,
    /// Whether its compiled code came from the cache (`None`: no cache).
    cache_use: Option<CacheUse>,
}

impl Guest {
    pub(crate) fn new(
        pre: InstancePre<JobState>,
        manifest: Manifest,
        sha256: String,
        resolver: Resolver,
        policy: &OperatorPolicy,
        secrets: Arc<Secrets>,
        cache_use: Option<CacheUse>,
    ) -> Result<Guest, GuestError> {
        let log = LogBudget {
            lines: manifest.limits.log_lines,
            bytes: policy.log_bytes_per_job,
            lines_per_sec: policy.log_lines_per_sec,
        };
        let pre = IntegrationPre::new(pre)
            .map_err(|error| GuestError::WrongWorld(format!("{error:#}")))?;
        Ok(Guest {
            inner: Arc::new(GuestInner {
                policy: Arc::new(
                    OutboundPolicy::with_resolver(manifest.http.clone(), resolver).map_err(
                        |message| {
                            GuestError::Manifest(ManifestError::Invalid {
                                path: format!("{}.toml", manifest.name).into(),
                                message,
                            })
                        },
                    )?,
                ),
                settings: Arc::new(manifest.settings.clone()),
                log,
                secrets,
                sha256,
                loaded_at: SystemTime::now(),
                jobs_run: AtomicU64::new(0),
                manifest,
                pre,
                cache_use,
            }),
        })
    }

    /// Whether this guest's compiled code came from the compile cache
    /// (`Some(Hit)`), was compiled and stored there (`Some(Miss)`), or was
    /// compiled with no cache (`None`).
    pub fn cache_use(&self) -> Option<CacheUse> {
        self.inner.cache_use
    }

    /// The guest's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// SHA-256 of the guest's `.wasm`, lower-case hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// When this version was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.inner.loaded_at
    }

    /// Jobs this version has run.
    pub fn jobs_run(&self) -> u64 {
        self.inner.jobs_run.load(Ordering::Relaxed)
    }

    /// A ready instance in a fresh store, the way every job starts (the
    /// `instantiate` benchmark measures this).
    pub async fn instantiate(
        &self,
        job_id: &str,
        env: JobEnv,
    ) -> wasmtime::Result<(Store<JobState>, Integration)> {
        let mut store = self
            .store(self.setup(job_id, env))
            .map_err(wasmtime::Error::msg)?;
        let instance = self.inner.pre.instantiate_async(&mut store).await?;
        Ok((store, instance))
    }

    /// Runs `job` to its end and reports how it went. Never panics on anything
    /// the guest does; every failure becomes [`JobOutcome::Failed`] with a reason.
    pub async fn run(&self, job: &Job, env: JobEnv) -> JobReport {
        let started = Instant::now();
        self.inner.jobs_run.fetch_add(1, Ordering::Relaxed);
        let manifest = &self.inner.manifest;
        let early_end = |outcome: JobOutcome| JobReport {
            outcome,
            files: Vec::new(),
            progress: Progress::default(),
            guest_time: Duration::ZERO,
            elapsed: started.elapsed(),
            log_tail: Vec::new(),
            camera_auth_refused: None,
        };
        if !manifest.serves(job.job_type) {
            let why = format!(
                "guest {} does not serve {} jobs",
                manifest.name, job.job_type
            );
            return early_end(JobOutcome::Unsupported(why));
        }
        let mut store = match self.store(self.setup(&job.job_id, env)) {
            Ok(store) => store,
            Err(why) => return early_end(JobOutcome::Failed(why)),
        };
        let wit_job = to_wit_job(job);
        let ledger = store.data().ledger.clone();
        let call = async {
            let instance = self.inner.pre.instantiate_async(&mut store).await?;
            let result = match job.job_type {
                JobType::Discovery => {
                    instance
                        .call_discover(&mut store, &wit_job)
                        .await?
                        .map(|devices| {
                            JobOutcome::Discovered(
                                devices.into_iter().map(from_wit_device).collect(),
                            )
                        })
                }
                JobType::Thumbnail => instance
                    .call_thumbnail(&mut store, &wit_job)
                    .await?
                    .map(|()| JobOutcome::Completed),
                JobType::MediaRequest => instance
                    .call_extract_media(&mut store, &wit_job)
                    .await?
                    .map(|outcome| match outcome {
                        wit::Outcome::Completed => JobOutcome::Completed,
                        wit::Outcome::PartiallyCompleted => JobOutcome::PartiallyCompleted,
                    }),
            };
            wasmtime::Result::Ok(result)
        };
        let wall = manifest.limits.wall;
        let called = tokio::time::timeout(wall, ledger.meter(call, true)).await;
        let state = store.data_mut();
        let outcome = match called {
            Err(_elapsed) => {
                JobOutcome::Failed(ledger.refuse(LimitExceeded::Wall(wall)).to_string())
            }
            Ok(Err(trap)) => JobOutcome::Failed(trap_message(state, &trap)),
            Ok(Ok(Err(job_error))) => from_job_error(state, job_error),
            Ok(Ok(Ok(outcome))) => check_success(state, job.job_type, outcome),
        };
        // A reflected credential fails the job whatever the guest made of it.
        let outcome = match state.reflection() {
            Some(reflected) => JobOutcome::Failed(reflected.to_string()),
            None => outcome,
        };
        let report = JobReport {
            outcome,
            files: state.outputs.take_stored(),
            progress: state.progress(),
            guest_time: state.ledger.cpu_spent(),
            elapsed: started.elapsed(),
            log_tail: state.log.tail(),
            camera_auth_refused: state.auth_refused(),
        };
        // Dropping the store closes every stream still open; waiting for the
        // writers then means every unfinished file has been discarded. A
        // writer stuck in its sink (a hung disk) does not hold the job's end
        // past a second: it is left to finish or fail on its own.
        let writers = state.outputs.writers();
        drop(store);
        writers.close();
        if tokio::time::timeout(WRITERS_GRACE, writers.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "job {}: an output writer was still busy {WRITERS_GRACE:?} after the job ended; not waiting for it",
                job.job_id
            );
        }
        report
    }

    fn setup<'a>(&'a self, job_id: &'a str, env: JobEnv) -> JobSetup<'a> {
        JobSetup {
            manifest: &self.inner.manifest,
            policy: self.inner.policy.clone(),
            settings: self.inner.settings.clone(),
            log: self.inner.log,
            job_id,
            sink: env.sink,
            secrets: self.inner.secrets.clone(),
            progress: env.progress,
        }
    }

    fn store(&self, setup: JobSetup<'_>) -> Result<Store<JobState>, String> {
        let mut store = Store::new(self.inner.pre.engine(), JobState::new(setup)?);
        store.limiter(|state| &mut state.memory);
        // The callback runs once per epoch tick while guest code runs: enforce
        // the CPU limit and count what the resource table holds, else yield so
        // other jobs on this thread get their turn.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            state.ledger.check_cpu().map_err(wasmtime::Error::new)?;
            state.sweep().map_err(wasmtime::Error::new)?;
            Ok(UpdateDeadline::Yield(1))
        });
        Ok(store)
    }
}

/// A successful return is only a success if the job's files were all finished,
/// no limit was hit, and a job that must produce a file did.
fn check_success(state: &JobState, job_type: JobType, outcome: JobOutcome) -> JobOutcome {
    if let Some(limit) = state.outputs.limit_exceeded() {
        return JobOutcome::Failed(limit);
    }
    if let Some(limit) = state.ledger.hit() {
        return JobOutcome::Failed(limit.to_string());
    }
    if let Err(limit) = state.ledger.check_cpu() {
        return JobOutcome::Failed(limit.to_string());
    }
    let unfinished = state.outputs.unfinished();
    if !unfinished.is_empty() {
        return JobOutcome::Failed(format!(
            "output {} was created but never finished",
            quoted_list(&unfinished)
        ));
    }
    let needs_file = matches!(job_type, JobType::Thumbnail | JobType::MediaRequest);
    if needs_file && state.outputs.stored().is_empty() {
        return JobOutcome::Failed(format!(
            "the guest reported success but stored no file for this {job_type} job"
        ));
    }
    outcome
}

fn from_job_error(state: &JobState, error: wit::JobError) -> JobOutcome {
    let with_context = |message: String| {
        let mut message = message;
        if let Some(limit) = state.outputs.limit_exceeded()
            && !message.contains(&limit)
        {
            message = format!("{message} ({limit})");
        }
        if let Some(limit) = state.ledger.hit().map(|hit| hit.to_string())
            && !message.contains(&limit)
        {
            message = format!("{message} ({limit})");
        }
        let denials = state.denials();
        if !denials.is_empty() {
            let list: Vec<String> = denials.iter().map(ToString::to_string).collect();
            message = format!("{message} (sandbox denied: {})", list.join("; "));
        }
        message
    };
    let from_guest = |message: String| with_context(guest_text::message(&message));
    match error {
        wit::JobError::Unavailable(message) => JobOutcome::Unavailable(from_guest(message)),
        wit::JobError::Unsupported(message) => JobOutcome::Unsupported(from_guest(message)),
        wit::JobError::Failed(message) => JobOutcome::Failed(from_guest(message)),
    }
}

/// One line naming why guest code stopped: a limit, or the whole cause chain
/// of the trap, where in the guest it happened, and the last thing the guest
/// printed (a Rust panic prints its message to stderr).
fn trap_message(state: &JobState, error: &wasmtime::Error) -> String {
    if let Some(limit) = state.ledger.hit() {
        return with_cause(limit, error);
    }
    if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
        return with_cause(state.ledger.refuse(limit.clone()), error);
    }
    if let Some(limit) = state.handles_exhausted(error) {
        return with_cause(limit, error);
    }
    if cause_chain(error).contains(crate::sandbox::HEADER_MAP_TOO_BIG) {
        let limit = state.ledger.refuse(LimitExceeded::FixedCap {
            resource: "bytes in one header map",
            limit: crate::sandbox::HEADER_MAP_BYTES as u64,
            label: "header_map_bytes",
        });
        return with_cause(limit, error);
    }
    if let Some(limit) = state.outputs.limit_exceeded() {
        return limit;
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!(
            "the guest called exit({}) instead of returning a result",
            exit.0
        );
    }
    let stderr = state.stderr();
    if let Some(exception) = crate::last_words::uncaught_exception(&stderr) {
        // The language runtime's trap (an abort, a panic) only repeats it.
        return guest_text::message(&format!(
            "{exception} (the guest trapped: {})",
            cause_chain(error)
        ));
    }
    let mut message = format!("guest trapped: {}", cause_chain(error));
    if let Some(frame) = error
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|trace| trace.frames().iter().find_map(|frame| frame.func_name()))
    {
        message.push_str(&format!(" (in {})", guest_text::visible(frame)));
    }
    if let Some(words) = crate::last_words::last_words(&stderr) {
        message.push_str(&format!(" (guest stderr: {words})"));
    }
    guest_text::message(&message)
}

/// A limit's message, with the trap's own cause chain when it says more.
fn with_cause(limit: LimitExceeded, error: &wasmtime::Error) -> String {
    let limit = limit.to_string();
    let causes = cause_chain(error);
    if causes.contains(&limit) || causes == "an error without a description" {
        limit
    } else {
        guest_text::message(&format!("{limit}: {causes}"))
    }
}

/// Every cause of `error`, outermost first, one line each, joined by `: `;
/// the wasm backtrace (a context, not a cause) is left out.
fn cause_chain(error: &wasmtime::Error) -> String {
    let mut causes: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let line = text.lines().next().unwrap_or_default().trim();
        if line.is_empty()
            || line.starts_with("error while executing at wasm backtrace")
            || causes.iter().any(|known| known == line)
        {
            continue;
        }
        causes.push(line.to_string());
    }
    if causes.is_empty() {
        return "an error without a description".into();
    }
    causes.join(": ")
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn to_wit_job(job: &Job) -> wit::Job {
    let timestamp = |time: time::OffsetDateTime| wit::Timestamp {
        unix_millis: (time.unix_timestamp_nanos() / 1_000_000) as i64,
        rfc3339: crate::protocol::format_rfc3339(time),
    };
    wit::Job {
        id: job.job_id.clone(),
        kind: match job.job_type {
            JobType::MediaRequest => wit::JobKind::MediaRequest,
            JobType::Discovery => wit::JobKind::Discovery,
            JobType::Thumbnail => wit::JobKind::Thumbnail,
        },
        device_id: job.device_id.clone(),
        time_range: match (job.start_time_utc, job.end_time_utc) {
            (Some(start), Some(end)) => Some(wit::TimeRange {
                start: timestamp(start),
                end: timestamp(end),
            }),
            _ => None,
        },
        parameters: job.parameters.clone().into_iter().collect(),
    }
}

fn from_wit_device(device: wit::Device) -> DiscoveredDevice {
    DiscoveredDevice {
        device_id: device.device_id,
        name: device.name,
        manufacturer: device.manufacturer,
        model: device.model,
        latitude: device.latitude,
        longitude: device.longitude,
        capabilities: device.capabilities,
    }
}
