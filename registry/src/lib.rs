//! # corral-registry: an on-premise Clearance registry
//!
//! The server side of PROTOCOL.md, so that everything runs on one machine with
//! no cloud account: the token endpoint (JWT-bearer assertions checked against
//! each service principal's key, or client credentials), jobs with locks,
//! renewals, progress and idempotent outcomes, and encrypted uploads that are
//! decrypted and checked block by block before a commit is accepted.
//!
//! State lives in a data folder: `registry.sqlite3` (SQLite, WAL) and
//! `blocks/` (each file's blocks, kept as ciphertext once committed and
//! decrypted on demand, as the real service keeps them). The files' bytes may
//! live in an Azure Blob Storage container instead ([`blobs`]).
//! The command line (`corral registry ...`) works on the folder directly, also
//! while a server runs. Instead of SQLite the state may live in PostgreSQL,
//! shared by several registry nodes ([`store::pg`]).
//!
//! Every agent-service call and the token endpoint can be made to fail on
//! purpose ([`faults`]), for tests and chaos runs.
//!
//! Modules: [`routes`] (the table the axum router and `/openapi.json` share),
//! [`agent_api`] and [`admin_api`] (the handlers), [`web`] (extractors and
//! error answers), [`server`] (the app and its connections), [`auth`] (principals, tokens), [`jobs`] (the job state
//! machine), [`files`] (uploads), [`admin`], [`store`] (SQLite or PostgreSQL), [`blobs`] (the folder or Azure), [`wire`] (JSON
//! names and error codes).

pub mod admin;
pub mod admin_api;
pub mod agent_api;
pub mod auth;
pub mod blobs;
pub mod console;
pub mod faults;
pub mod files;
pub mod jobs;
pub mod keys;
pub mod routes;
pub mod server;
pub mod store;
pub mod web;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use corral_envelope::keys::WrapAlgorithm;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use crate::faults::{Fault, FaultCounts, FaultRates, Faults};
pub use crate::store::Store;
pub use crate::wire::{ApiError, FileJson, JobJson, NewJob};

/// How the registry behaves.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The longest lock granted (a longer request gets this).
    pub max_lock_seconds: u64,
    /// How long a bearer token lives.
    pub token_lifetime: Duration,
    /// How Initialize keys wrap content keys (RSA-OAEP by default, or A256KW).
    pub key_algorithm: WrapAlgorithm,
    /// Base URLs under which the registry is reached (accepted as the
    /// assertion's audience with `/connect/token`), besides the request's Host.
    pub public_urls: Vec<String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_lock_seconds: jobs::DEFAULT_MAX_LOCK_SECONDS,
            token_lifetime: Duration::from_secs(3600),
            key_algorithm: WrapAlgorithm::RsaOaep,
            public_urls: Vec::new(),
        }
    }
}

/// A registry over one data folder.
pub struct Registry {
    store: Store,
    keys: keys::KeyPool,
    config: RegistryConfig,
    admin_token: String,
    faults: Faults,
}

impl Registry {
    /// Opens the data folder `dir` (created if missing), state in its SQLite
    /// database.
    pub fn open(dir: &Path, config: RegistryConfig) -> Result<Registry, String> {
        Registry::with_store(Store::open(dir)?, config)
    }

    /// A registry over `store` (see [`Store::open_postgres`] for a node of
    /// several on one database).
    pub fn with_store(store: Store, config: RegistryConfig) -> Result<Registry, String> {
        let admin_token = admin_token(&store)?;
        Ok(Registry {
            store,
            keys: keys::KeyPool::new(config.key_algorithm),
            config,
            admin_token,
            faults: Faults::default(),
        })
    }

    /// The storage.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The admin API's bearer token (kept in the data folder's `admin-token`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The fault switches.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    fn audiences(&self) -> Vec<String> {
        self.config
            .public_urls
            .iter()
            .map(|url| format!("{}/connect/token", url.trim_end_matches('/')))
            .collect()
    }

    /// Starts serving on `addr` (port 0 picks a free one).
    pub async fn start(mut self, addr: SocketAddr) -> Result<RunningRegistry, String> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| format!("the registry cannot listen on {addr}: {error}"))?;
        let addr = listener.local_addr().map_err(|error| error.to_string())?;
        self.config.public_urls.push(server::own_url(addr));
        let registry = Arc::new(self);
        let task = tokio::spawn(server::serve(registry.clone(), listener));
        Ok(RunningRegistry {
            addr,
            registry,
            task,
        })
    }
}

/// The admin token: in the data folder's `admin-token`, and with a shared
/// state store the one all nodes share (written to that file too).
fn admin_token(store: &Store) -> Result<String, String> {
    let path = store.dir().join("admin-token");
    let token = match store.shared() {
        Some(shared) => shared
            .shared_setting("admin_token", &auth::random_token())
            .map_err(|error| error.message)?,
        None => {
            if let Ok(token) = std::fs::read_to_string(&path) {
                return Ok(token.trim().to_string());
            }
            auth::random_token()
        }
    };
    std::fs::write(&path, &token)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(token)
}

/// A running registry; stops when dropped.
pub struct RunningRegistry {
    addr: SocketAddr,
    registry: Arc<Registry>,
    task: JoinHandle<()>,
}

impl RunningRegistry {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        server::own_url(self.addr)
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serves until the process ends.
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}
