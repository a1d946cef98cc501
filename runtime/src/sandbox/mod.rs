//! The sandbox: everything one job of a guest may touch, and nothing else.
//!
//! Each job gets its own [`wasmtime::Store`] holding a [`JobState`]: a WASI
//! context that grants nothing (no environment, arguments, files or sockets),
//! and one module per capability, each with the same parts (what it links, its
//! per-job state, its limits):
//!
//! | module | capability |
//! |---|---|
//! | [`http`] | `wasi:http` to the origins and methods the manifest grants, credentials added by the host where the operator bound them |
//! | [`address`] | the addresses a granted name may reach (never this machine or a metadata service) |
//! | [`resolver`] | name lookups for granted names |
//! | [`reflection`] | the search of answers for the credentials the host sent |
//! | [`output`] | output files, streamed to an [`OutputSink`](crate::sink::OutputSink) |
//! | [`progress`] | progress reports |
//! | [`log`] | log lines, capped |
//! | [`settings`] | the manifest's non-secret settings |
//! | [`wasi`] | WASI p2, with sockets capped, binds refused, folders opening regular files only |
//! | [`stdio`] | the guest's stdout and stderr, into its log |
//! | [`limits`] | the limits and caps, and the message each fails a job with |
//! | [`ledger`] | what the host spends for a job: memory and CPU, charged by every capability |

pub mod address;
pub mod guest_text;
pub mod http;
pub mod ledger;
pub mod limits;
pub mod log;
pub mod output;
pub mod progress;
pub mod reflection;
pub mod resolver;
pub mod settings;
pub mod stdio;
pub mod wasi;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use self::http::{OutboundHooks, OutboundPolicy};
use self::ledger::{Held, Ledger};
use self::limits::{LimitExceeded, MemoryLimiter};
use self::log::SharedLog;
use self::output::JobOutputs;
use self::progress::Progress;
use self::stdio::GuestStdio;
use crate::manifest::{Caps, Manifest};
use crate::secrets::Secrets;
use crate::sink::OutputSink;

/// Host bindings of the `corral:integration` world.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "integration",
        path: "../wit",
        imports: {
            "corral:integration/output": async | trappable,
            "corral:integration/log": trappable,
            default: tracing,
        },
        exports: { default: async },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "corral:integration/output.file": super::output::OutputFile,
        },
        require_store_data_send: true,
    });
}

/// Largest header map (names and values together) a guest may build: the
/// host holds each map it makes. A bigger one traps with
/// [`HEADER_MAP_TOO_BIG`], which the job's message names as this limit.
pub const HEADER_MAP_BYTES: usize = 128 << 10;

/// wasmtime-wasi-http's words for a header map over [`HEADER_MAP_BYTES`].
pub const HEADER_MAP_TOO_BIG: &str = "total size of fields exceeds limit";

/// The data of one job's store.
pub struct JobState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    pub(crate) memory: MemoryLimiter,
    pub(crate) ledger: Ledger,
    caps: Caps,
    progress: watch::Sender<Progress>,
    pub(crate) log: SharedLog,
    settings: Arc<BTreeMap<String, String>>,
    pub(crate) outputs: JobOutputs,
    stdio: GuestStdio,
    /// The log's tail and the stdio capture, charged once.
    _log_memory: Held,
}

/// What a job's store is made from.
pub struct JobSetup<'a> {
    /// The guest's manifest.
    pub manifest: &'a Manifest,
    /// Its outbound policy, built once from the manifest.
    pub policy: Arc<OutboundPolicy>,
    /// Its settings, shared by all its jobs.
    pub settings: Arc<BTreeMap<String, String>>,
    /// What a job may log.
    pub log: log::LogBudget,
    /// The job's id, for logs.
    pub job_id: &'a str,
    /// Where outputs go.
    pub sink: Arc<dyn OutputSink>,
    /// Credentials the host may add to requests.
    pub secrets: Arc<Secrets>,
    /// Where progress is published.
    pub progress: watch::Sender<Progress>,
}

impl JobState {
    /// The state of a new job's store; `Err` names a grant that cannot be honoured.
    pub fn new(setup: JobSetup<'_>) -> Result<JobState, String> {
        let limits = &setup.manifest.limits;
        let caps = setup.manifest.caps;
        let ledger = Ledger::new(&setup.manifest.name, limits.memory_bytes, limits.cpu);
        let log_memory = ledger
            .hold(log::MEMORY + stdio::CAPTURE as u64)
            .map_err(|hit| hit.to_string())?;
        let log = SharedLog::new(
            &setup.manifest.name,
            setup.job_id,
            setup.log,
            ledger.clone(),
        );
        let stdio = GuestStdio::new(log.clone());
        // Deny by default: no env, args, sockets or name lookups; only the
        // manifest's read-only folders and TCP endpoints.
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stdio.stream(stdio::Which::Stderr))
            .stdout(stdio.stream(stdio::Which::Stdout))
            .max_random_size(wasi::MAX_RANDOM_BYTES)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .allow_tcp(!setup.manifest.tcp.is_empty());
        let tcp_grants: Arc<[SocketAddr]> = setup.manifest.tcp.clone().into();
        let tcp_local: Arc<[SocketAddr]> = setup.manifest.tcp_local.clone().into();
        wasi.socket_addr_check(move |addr, use_| {
            let allowed = match use_ {
                // A granted endpoint; one a name never reaches (loopback,
                // this machine, metadata, ...) only if the operator named it
                // at load (`[policy] local_grants`), checked again now.
                SocketAddrUse::TcpConnect => {
                    tcp_grants.contains(&addr)
                        && (tcp_local.contains(&addr)
                            || address::refused_for_name(addr.ip()).is_none())
                }
                // The implicit bind before a connect (an explicit bind is
                // refused before it gets here, see `wasi`).
                SocketAddrUse::TcpBind => addr.port() == 0 && addr.ip().is_unspecified(),
                _ => false,
            };
            Box::pin(async move { allowed })
        });
        // The real paths the operator's policy resolved and allowed at load
        // (`OperatorPolicy::admit`), not the paths the manifest wrote.
        for (host, guest) in &setup.manifest.folders {
            wasi.preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(|error| {
                    format!(
                        "the read-only folder {} cannot be opened: {error}",
                        host.display()
                    )
                })?;
        }
        let wasi = wasi.build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(caps.handles as usize);
        Ok(JobState {
            wasi,
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(HEADER_MAP_BYTES);
                http
            },
            table,
            hooks: OutboundHooks::new(setup.policy, setup.secrets, ledger.clone(), caps),
            memory: MemoryLimiter::new(ledger.clone()),
            ledger: ledger.clone(),
            caps,
            progress: setup.progress,
            log,
            settings: setup.settings,
            outputs: JobOutputs::new(setup.sink, limits.output_bytes, ledger, caps.open_outputs),
            stdio,
            _log_memory: log_memory,
        })
    }

    /// What the guest wrote to stderr and stdout (the last of it), as text.
    pub fn stderr(&self) -> String {
        self.stdio.captured()
    }

    /// Counts what the resource table holds for the job (header maps, with
    /// the maps of requests and responses) into the ledger; `Err` if the job
    /// is then over its memory limit. Runs every epoch tick of guest code.
    pub fn sweep(&mut self) -> Result<(), LimitExceeded> {
        let mut bytes = 0u64;
        for entry in self.table.iter_mut() {
            bytes += http::held_in(entry);
        }
        self.ledger.set_swept(bytes)
    }

    /// The `handles` cap as a limit, if `error` says the resource table is full.
    pub fn handles_exhausted(&self, error: &wasmtime::Error) -> Option<LimitExceeded> {
        let full = error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<wasmtime::component::ResourceTableError>(),
                Some(wasmtime::component::ResourceTableError::Full)
            )
        });
        full.then(|| {
            self.ledger.refuse(LimitExceeded::Cap {
                resource: "resource-table entries (handles)",
                limit: u64::from(self.caps.handles),
                key: "handles",
            })
        })
    }

    /// Requests the sandbox refused.
    pub fn denials(&self) -> Vec<http::Denied> {
        self.hooks.denials()
    }

    /// The first credentialed request answered 401/403 (see
    /// [`OutboundHooks::auth_refused`]).
    pub fn auth_refused(&self) -> Option<String> {
        self.hooks.auth_refused()
    }

    /// The first answer that reflected the host's credentials, if any.
    pub fn reflection(&self) -> Option<http::Denied> {
        self.denials()
            .into_iter()
            .find(|denied| matches!(denied, http::Denied::CredentialReflected { .. }))
    }

    /// The latest progress.
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }
}

impl WasiView for JobState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for JobState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// A linker with every import a guest may use: WASI p2 (granting nothing by
/// itself), `wasi:http`, and corral's own interfaces.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<JobState>> {
    use bindings::corral::integration as corral;
    let mut linker = Linker::new(engine);
    wasi::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    corral::progress::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    corral::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    corral::settings::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    corral::output::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    Ok(linker)
}
