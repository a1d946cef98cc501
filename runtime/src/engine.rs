//! The one wasmtime [`Engine`] of a process, its epoch ticker, and guest loading.
//!
//! The engine uses the pooling allocator (instance slots reserved up front,
//! copy-on-write memory images, so a job's instance is ready in microseconds)
//! and epoch interruption, driven by a single ticker thread for the whole
//! engine. A guest is compiled once, linked once, and pre-instantiated; each
//! job then only instantiates.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use sha2::{Digest, Sha256};

use crate::cache::ArtifactCache;
use crate::guest::{Guest, GuestError};
use crate::manifest::{MAX_MEMORY_BYTES, Manifest};
use crate::policy::OperatorPolicy;
use crate::sandbox::resolver::{self, Resolver};
use crate::sandbox::{self, JobState};
use crate::secrets::Secrets;
use crate::sink::hex;

/// How often the epoch advances: the granularity of CPU limits and of
/// yielding a busy guest back to the executor.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Sizing of the engine.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeConfig {
    /// Guest instances that may exist at once (jobs running plus a margin).
    pub max_instances: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { max_instances: 64 }
    }
}

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the WebAssembly engine: {0}")]
pub struct EngineError(String);

/// The engine, its linker, its ticker, optionally a cache of compiled guests,
/// and what the operator gives every guest it loads: the secrets with their
/// bindings (checked against each manifest's grants at load) and the resolver
/// of granted names. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<JobState>>,
    cache: Option<ArtifactCache>,
    secrets: Arc<Secrets>,
    resolver: Resolver,
    policy: Arc<OperatorPolicy>,
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, EngineError> {
        let instances = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .max_core_instances_per_component(32)
            .total_core_instances(instances * 32)
            .max_memories_per_component(4)
            .total_memories(instances * 4)
            .max_tables_per_component(32)
            .total_tables(instances * 32)
            .total_stacks(instances)
            .max_memory_size(MAX_MEMORY_BYTES as usize)
            .linear_memory_keep_resident(64 << 10);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|error| EngineError(format!("{error:#}")))?;
        let linker = sandbox::linker(&engine).map_err(|error| EngineError(format!("{error:#}")))?;
        start_ticker(&engine);
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            cache: None,
            secrets: Arc::default(),
            resolver: resolver::system(),
            policy: Arc::default(),
        })
    }

    /// Loads guests under `policy` from now on (the default policy grants no
    /// folder and caps limits at its defaults).
    pub fn with_policy(mut self, policy: Arc<OperatorPolicy>) -> Runtime {
        self.policy = policy;
        self
    }

    /// The policy guests are loaded under.
    pub fn policy(&self) -> &Arc<OperatorPolicy> {
        &self.policy
    }

    /// Loads guests against `secrets` from now on: a grant asking for a secret
    /// the operator did not bind to its origin, or that has no value, is refused.
    pub fn with_secrets(mut self, secrets: Arc<Secrets>) -> Runtime {
        self.secrets = secrets;
        self
    }

    /// Resolves guests' granted names with `resolver` (tests point names at
    /// chosen addresses this way).
    pub fn with_resolver(mut self, resolver: Resolver) -> Runtime {
        self.resolver = resolver;
        self
    }

    /// The secrets guests are loaded against.
    pub fn secrets(&self) -> &Arc<Secrets> {
        &self.secrets
    }

    /// Caches compiled guests in `dir` from now on, if the folder is the
    /// agent's own; if not, says why once and compiles without a cache.
    pub fn with_cache(mut self, dir: &Path) -> Result<Runtime, EngineError> {
        match ArtifactCache::new(dir, &self.engine) {
            Ok(cache) => self.cache = Some(cache),
            Err(error) => tracing::warn!(
                "refusing the cache folder {} ({error}); compiling guests without a cache",
                dir.display()
            ),
        }
        Ok(self)
    }

    /// Whether compiled guests are cached.
    pub fn caches(&self) -> bool {
        self.cache.is_some()
    }

    /// The folder compiled guests are cached in, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_ref().map(ArtifactCache::dir)
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads `wasm` with the manifest beside it (`x.wasm` → `x.toml`).
    pub fn load(&self, wasm: &Path) -> Result<Guest, GuestError> {
        let manifest = Manifest::load(&Manifest::path_for(wasm))?;
        let bytes = std::fs::read(wasm).map_err(|source| GuestError::Read {
            path: wasm.to_path_buf(),
            source,
        })?;
        self.load_bytes(&bytes, manifest)
    }

    /// Compiles, links and pre-instantiates a guest from its bytes.
    pub fn load_bytes(&self, bytes: &[u8], mut manifest: Manifest) -> Result<Guest, GuestError> {
        check_is_component(bytes)?;
        let sha256 = hex(&Sha256::digest(bytes));
        let (component, cache_use) = match &self.cache {
            Some(cache) => cache
                .load_or_compile(&self.engine, bytes, &sha256)
                .map(|(component, used)| (component, Some(used))),
            None => Component::new(&self.engine, bytes).map(|component| (component, None)),
        }
        .map_err(|error| GuestError::Compile(format!("{error:#}")))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|error| GuestError::Imports(format!("{error:#}")))?;
        for grant in &manifest.http {
            self.secrets.check_grant(grant)?;
        }
        self.policy.clamp_defaults(&mut manifest);
        self.policy.check(&manifest)?;
        Guest::new(
            pre,
            manifest,
            sha256,
            self.resolver.clone(),
            &self.policy,
            self.secrets.clone(),
            cache_use,
        )
    }
}

/// Refuses anything that is not a component before the compiler sees it, so
/// the message says what the file is.
fn check_is_component(bytes: &[u8]) -> Result<(), GuestError> {
    const MAGIC: &[u8] = b"\0asm";
    match bytes.get(..8) {
        Some(header) if header.starts_with(MAGIC) => match &header[4..] {
            [0x0d, 0x00, 0x01, 0x00] => Ok(()),
            [0x01, 0x00, 0x00, 0x00] => Err(GuestError::CoreModule),
            _ => Err(GuestError::NotWasm("unknown WebAssembly version".into())),
        },
        _ => Err(GuestError::NotWasm(
            "the file does not start with the WebAssembly magic bytes".into(),
        )),
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("corral-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread at start-up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_components_are_named_for_what_they_are() {
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(
            check_is_component(core),
            Err(GuestError::CoreModule)
        ));
        assert!(matches!(
            check_is_component(b"#!/bin/sh\n"),
            Err(GuestError::NotWasm(_))
        ));
        assert!(matches!(
            check_is_component(b""),
            Err(GuestError::NotWasm(_))
        ));
        assert!(check_is_component(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
