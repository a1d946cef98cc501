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

/// What one component may contain, checked by wasmtime when it is loaded.
/// The pooling allocator reserves slots by these numbers for every guest
/// alike, so they are the engine's, not a manifest's. They hold the language
/// runtimes with headroom; measured (componentize-py 0.25.1, componentize-js
/// 0.23.0, the http-vms guests): core instances 14 (Python) and 4 (JS);
/// memories 1; tables 2; the largest table starts at 5,768 (Python) and
/// 7,786 (JS) elements; instance state 417 KB (Python) and 228 KB (JS).
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// Core module instances in one component (`max_core_instances_per_component`).
    pub core_instances_per_component: u32,
    /// Linear memories in one component (`max_memories_per_component`).
    pub memories_per_component: u32,
    /// Tables in one component (`max_tables_per_component`).
    pub tables_per_component: u32,
    /// Elements of one table (`table_elements`).
    pub table_elements: usize,
    /// Bytes of one component instance's runtime state (`max_component_instance_size`).
    pub component_instance_bytes: usize,
}

impl EngineLimits {
    /// The limits every runtime of the agent uses.
    pub const DEFAULT: EngineLimits = EngineLimits {
        core_instances_per_component: 64,
        memories_per_component: 4,
        tables_per_component: 32,
        table_elements: 40_000,
        component_instance_bytes: 4 << 20,
    };
}

/// A component over one of the [`EngineLimits`], in words that name the
/// limit (wasmtime's own message names the pooling allocator's knob only
/// for some), or `None` if `message` is about something else.
pub fn over_engine_limit(message: &str) -> Option<String> {
    let limits = EngineLimits::DEFAULT;
    let needs = |after: &str| -> Option<u64> {
        let rest = &message[message.find(after)? + after.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let (what, limit, field) = if message.contains("core module instances, which exceeds") {
        let count = needs("transitively contains ")?;
        (
            format!("{count} core module instances"),
            limits.core_instances_per_component.to_string(),
            "core_instances_per_component",
        )
    } else if message.contains("Wasm linear memories, which exceeds") {
        let count = needs("transitively contains ")?;
        (
            format!("{count} linear memories"),
            limits.memories_per_component.to_string(),
            "memories_per_component",
        )
    } else if message.contains("tables, which exceeds") {
        let count = needs("transitively contains ")?;
        (
            format!("{count} tables"),
            limits.tables_per_component.to_string(),
            "tables_per_component",
        )
    } else if message.contains("minimum element size of") {
        let count = needs("minimum element size of ")?;
        (
            format!("a table of {count} elements"),
            limits.table_elements.to_string(),
            "table_elements",
        )
    } else if message.contains("instance allocation for this component requires") {
        let bytes = needs("requires ")?;
        (
            format!("{bytes} bytes of instance state"),
            format!("{} bytes", limits.component_instance_bytes),
            "component_instance_bytes",
        )
    } else {
        return None;
    };
    Some(format!(
        "the component needs {what}, more than this engine allows ({limit}, `EngineLimits::{field}` in runtime/src/engine.rs); \
         no manifest key raises it, since every guest shares the engine's pool: build the guest without extra instances \
         (e.g. without `componentize-py --stub-wasi`)"
    ))
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
        Runtime::with_limits(config, &EngineLimits::DEFAULT)
    }

    /// [`Runtime::new`] with other per-component limits (tests use small ones).
    pub fn with_limits(
        config: RuntimeConfig,
        limits: &EngineLimits,
    ) -> Result<Runtime, EngineError> {
        let instances = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .max_core_instances_per_component(limits.core_instances_per_component)
            .total_core_instances(instances * limits.core_instances_per_component)
            .max_memories_per_component(limits.memories_per_component)
            .total_memories(instances * limits.memories_per_component)
            .max_tables_per_component(limits.tables_per_component)
            .total_tables(instances * limits.tables_per_component)
            .table_elements(limits.table_elements)
            .max_component_instance_size(limits.component_instance_bytes)
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
        // The operator knows a guest by its file: a `guests` binding of a
        // secret names file stems, whatever name the manifest claims.
        let stem = wasm.file_stem().map_or_else(
            || manifest.name.clone(),
            |stem| stem.to_string_lossy().into_owned(),
        );
        self.load_as(&bytes, manifest, &stem)
    }

    /// Compiles, links and pre-instantiates a guest from its bytes (known to
    /// the operator by its manifest's name).
    pub fn load_bytes(&self, bytes: &[u8], manifest: Manifest) -> Result<Guest, GuestError> {
        let name = manifest.name.clone();
        self.load_as(bytes, manifest, &name)
    }

    fn load_as(
        &self,
        bytes: &[u8],
        mut manifest: Manifest,
        guest: &str,
    ) -> Result<Guest, GuestError> {
        check_is_component(bytes)?;
        let sha256 = hex(&Sha256::digest(bytes));
        let (component, cache_use) = match &self.cache {
            Some(cache) => cache
                .load_or_compile(&self.engine, bytes, &sha256)
                .map(|(component, used)| (component, Some(used))),
            None => Component::new(&self.engine, bytes).map(|component| (component, None)),
        }
        .map_err(|error| {
            let message = format!("{error:#}");
            match over_engine_limit(&message) {
                Some(limit) => GuestError::EngineLimit(limit),
                None => GuestError::Compile(message),
            }
        })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|error| GuestError::Imports(format!("{error:#}")))?;
        // The operator decides what the manifest asked for: each secret (its
        // origins, methods, guests and CA), then the policy (limits, folders
        // as resolved now, IP grants a name never reaches).
        self.secrets.admit(&mut manifest, guest)?;
        self.policy.admit(&mut manifest, &self.secrets)?;
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

    #[test]
    fn a_component_over_an_engine_limit_is_refused_naming_the_limit() {
        let small = EngineLimits {
            core_instances_per_component: 1,
            ..EngineLimits::DEFAULT
        };
        let runtime = Runtime::with_limits(RuntimeConfig { max_instances: 1 }, &small).unwrap();
        let manifest = crate::bundled::http_vms_manifest("http://127.0.0.1:8081").unwrap();
        let Err(refused) = runtime.load_bytes(crate::bundled::HTTP_VMS, manifest) else {
            panic!("http-vms has more than one core instance");
        };
        assert!(matches!(refused, GuestError::EngineLimit(_)), "{refused}");
        let text = refused.to_string();
        assert!(text.contains("core module instances"), "{text}");
        assert!(
            text.contains("EngineLimits::core_instances_per_component"),
            "{text}"
        );
        assert!(text.contains("no manifest key raises it"), "{text}");
    }

    #[test]
    fn every_engine_limit_has_its_words() {
        for (wasmtime_says, field) in [
            (
                "The component transitively contains 40 Wasm linear memories, which exceeds the configured maximum of 4",
                "memories_per_component",
            ),
            (
                "The component transitively contains 40 tables, which exceeds the configured maximum of 32",
                "tables_per_component",
            ),
            (
                "table index 0 has a minimum element size of 90000 which exceeds the limit of 40000",
                "table_elements",
            ),
            (
                "instance allocation for this component requires 9000000 bytes of `VMComponentContext`",
                "component_instance_bytes",
            ),
        ] {
            let words = over_engine_limit(wasmtime_says).unwrap();
            assert!(words.contains(field), "{words}");
        }
        assert_eq!(over_engine_limit("invalid leading byte"), None);
    }
}
