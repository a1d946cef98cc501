//! Compiled guests cached on disk, so a restart or a swap back loads in
//! milliseconds instead of compiling again.
//!
//! An entry is named by the engine's compatibility hash and the SHA-256 of the
//! `.wasm`, and a sidecar holds the SHA-256 of the compiled bytes as written.
//! An entry whose bytes do not match its sidecar (truncated, replaced), or that
//! wasmtime refuses (another version or configuration), is ignored and the
//! guest compiled again. The folder is created private to the agent's user:
//! compiled code is trusted once it passes these checks, so only the agent may
//! write there.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::sink::hex;

/// Whether a load came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Deserialized from the cache.
    Hit,
    /// Compiled (and written to the cache).
    Miss,
}

/// A folder of compiled guests for one engine configuration.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir` (created, private) for `engine`.
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<ArtifactCache> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn paths(&self, wasm_sha256: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{}-{wasm_sha256}", self.engine_key);
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.sha256")),
        )
    }

    /// The component for `wasm` (whose SHA-256 is `wasm_sha256`): from the
    /// cache when a sound entry exists, else compiled and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_sha256: &str,
    ) -> wasmtime::Result<(Component, CacheUse)> {
        let (artifact, sidecar) = self.paths(wasm_sha256);
        if let (Ok(bytes), Ok(digest)) =
            (std::fs::read(&artifact), std::fs::read_to_string(&sidecar))
        {
            if hex(&Sha256::digest(&bytes)) == digest.trim() {
                // SAFETY: the bytes are what this agent serialized for this
                // engine (the digest matches the one written beside them, in a
                // folder only the agent writes), and wasmtime checks the engine
                // compatibility header before using them.
                match unsafe { Component::deserialize(engine, &bytes) } {
                    Ok(component) => return Ok((component, CacheUse::Hit)),
                    Err(error) => {
                        tracing::warn!("ignoring cache entry {}: {error:#}", artifact.display())
                    }
                }
            } else {
                tracing::warn!(
                    "ignoring cache entry {}: its digest does not match",
                    artifact.display()
                );
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(error) = self.store(&component, &artifact, &sidecar) {
            tracing::warn!("cannot cache {}: {error}", artifact.display());
        }
        Ok((component, CacheUse::Miss))
    }

    fn store(&self, component: &Component, artifact: &Path, sidecar: &Path) -> anyhow::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|error| anyhow::anyhow!("{error:#}"))?;
        let partial = artifact.with_extension("partial");
        std::fs::write(&partial, &bytes)?;
        std::fs::rename(&partial, artifact)?;
        std::fs::write(sidecar, hex(&Sha256::digest(&bytes)))?;
        Ok(())
    }
}
