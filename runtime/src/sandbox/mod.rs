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
//! | [`limits`] | memory and CPU limits |

pub mod address;
pub mod guest_text;
pub mod http;
pub mod limits;
pub mod log;
pub mod output;
pub mod progress;
pub mod reflection;
pub mod resolver;
pub mod settings;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use self::http::{OutboundHooks, OutboundPolicy};
use self::limits::{CpuMeter, MemoryLimiter};
use self::log::GuestLog;
use self::output::JobOutputs;
use self::progress::Progress;
use crate::manifest::Manifest;
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

/// Bytes of guest stdout/stderr kept (for failure messages).
const STDIO_CAPTURE: usize = 64 * 1024;

/// The data of one job's store.
pub struct JobState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    pub(crate) memory: MemoryLimiter,
    pub(crate) cpu: CpuMeter,
    progress: watch::Sender<Progress>,
    pub(crate) log: GuestLog,
    settings: Arc<BTreeMap<String, String>>,
    pub(crate) outputs: JobOutputs,
    stderr: MemoryOutputPipe,
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
        let stderr = MemoryOutputPipe::new(STDIO_CAPTURE);
        // Deny by default: no env, args, sockets or name lookups; only the
        // manifest's read-only folders and TCP endpoints.
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone())
            .stdout(stderr.clone())
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .allow_tcp(!setup.manifest.tcp.is_empty());
        let tcp_grants: Arc<[SocketAddr]> = setup.manifest.tcp.clone().into();
        wasi.socket_addr_check(move |addr, use_| {
            let allowed = match use_ {
                SocketAddrUse::TcpConnect => tcp_grants.contains(&addr),
                // The implicit bind before a connect: any local address.
                SocketAddrUse::TcpBind => addr.port() == 0 && addr.ip().is_unspecified(),
                _ => false,
            };
            Box::pin(async move { allowed })
        });
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
        Ok(JobState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks::new(setup.policy, setup.secrets),
            memory: MemoryLimiter::new(limits.memory_bytes),
            cpu: CpuMeter::new(limits.cpu),
            progress: setup.progress,
            log: GuestLog::new(&setup.manifest.name, setup.job_id, setup.log),
            settings: setup.settings,
            outputs: JobOutputs::new(setup.sink, limits.output_bytes),
            stderr,
        })
    }

    /// What the guest wrote to stderr and stdout (capped), as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
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
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    corral::progress::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    corral::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    corral::settings::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    corral::output::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    Ok(linker)
}
