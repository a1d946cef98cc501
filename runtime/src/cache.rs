//! Compiled guests cached on disk, so a restart or a swap back loads in
//! milliseconds instead of compiling again.
//!
//! Compiled code is native code the agent runs, so it is trusted only when
//! the agent can prove it wrote it:
//! - the folder must be the agent's own: it and every folder above it owned by
//!   the agent's user or root and writable by no one else (a sticky folder
//!   such as `/tmp` above it is fine); otherwise it is refused and guests are
//!   compiled without a cache;
//! - an entry is named by the engine's compatibility hash and the SHA-256 of
//!   the `.wasm`, and its sidecar holds an HMAC-SHA256, under a key the agent
//!   keeps beside the folder (`<folder>.key`, mode 0600, never inside it), of
//!   the module's SHA-256 and the compiled bytes. An entry whose tag does not
//!   verify (planted, truncated, copied from another guest), or that wasmtime
//!   refuses (another version or configuration), is ignored and the guest
//!   compiled again.
//!
//! The default folder is the user's cache (`$XDG_CACHE_HOME/corral/guests`,
//! else `~/.cache/corral/guests`), never inside the guests folder.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
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
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    tag_key: hmac::Key,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The user id the agent runs as.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The default cache folder: the user's cache, never the guests folder.
pub fn default_dir() -> PathBuf {
    user_cache_dir().join("guests")
}

/// corral's folder in the user's cache: `$XDG_CACHE_HOME/corral`, else
/// `~/.cache/corral` (compiled guests, the Python and JS toolchains).
pub fn user_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("corral-{}", current_uid())))
        .join("corral")
}

/// Whether `dir` and every folder above it are the agent's own: owned by its
/// user or root, writable by no one else (above it, a sticky folder may be).
pub fn check_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why);
    let dir = std::fs::canonicalize(dir)?;
    let me = current_uid();
    for (depth, folder) in dir.ancestors().enumerate() {
        let metadata = std::fs::metadata(folder)?;
        if metadata.uid() != me && metadata.uid() != 0 {
            return Err(refuse(format!(
                "{} is owned by user {}, neither the agent's user ({me}) nor root",
                folder.display(),
                metadata.uid()
            )));
        }
        let others_write = metadata.mode() & 0o022 != 0;
        let sticky = metadata.mode() & 0o1000 != 0;
        if others_write && (depth == 0 || !sticky) {
            return Err(refuse(format!(
                "{} is writable by other users (mode {:o})",
                folder.display(),
                metadata.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

/// The cache's tag key, beside the folder: read, or made once (0600).
fn tag_key(dir: &Path) -> std::io::Result<hmac::Key> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = dir.with_extension("key");
    if !path.exists() {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| std::io::Error::other("no randomness"))?;
        let partial = dir.with_extension(format!("key.{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?;
        file.write_all(&secret)?;
        drop(file);
        // Linking never replaces: of two agents making it at once, one wins.
        let _ = std::fs::hard_link(&partial, &path);
        let _ = std::fs::remove_file(&partial);
    }
    let metadata = std::fs::symlink_metadata(&path)?;
    if !metadata.is_file() || metadata.uid() != current_uid() || metadata.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the cache key {} must be a regular file of the agent's user, mode 0600",
                path.display()
            ),
        ));
    }
    let secret = std::fs::read(&path)?;
    if secret.len() != 32 {
        return Err(std::io::Error::other(format!(
            "the cache key {} is not 32 bytes",
            path.display()
        )));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &secret))
}

impl ArtifactCache {
    /// A cache in `dir` (created, private) for `engine`; `Err` says why the
    /// folder cannot be trusted.
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<ArtifactCache> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::fs::create_dir_all(dir)?;
        if std::fs::metadata(dir)?.uid() == current_uid() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        check_private(dir)?;
        let tag_key = tag_key(dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
            tag_key,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn paths(&self, wasm_sha256: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{}-{wasm_sha256}", self.engine_key);
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.tag")),
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
        if let (Ok(bytes), Ok(tag)) = (std::fs::read(&artifact), std::fs::read_to_string(&sidecar))
        {
            if self.verify(wasm_sha256, &bytes, tag.trim()) {
                // SAFETY: the bytes are what this agent serialized for this
                // module and engine: their tag verifies under the agent's key,
                // which no one else can read or write, and wasmtime checks the
                // engine compatibility header before using them.
                match unsafe { Component::deserialize(engine, &bytes) } {
                    Ok(component) => return Ok((component, CacheUse::Hit)),
                    Err(error) => {
                        tracing::warn!("ignoring cache entry {}: {error:#}", artifact.display())
                    }
                }
            } else {
                tracing::warn!(
                    "ignoring cache entry {}: its tag does not verify (not written by this agent for this module)",
                    artifact.display()
                );
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(error) = self.store(&component, wasm_sha256, &artifact, &sidecar) {
            tracing::warn!("cannot cache {}: {error}", artifact.display());
        }
        Ok((component, CacheUse::Miss))
    }

    /// The tag of `bytes` compiled from the module `wasm_sha256`.
    fn tag(&self, wasm_sha256: &str, bytes: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.tag_key);
        context.update(wasm_sha256.as_bytes());
        context.update(b"\0");
        context.update(bytes);
        hex(context.sign().as_ref())
    }

    fn verify(&self, wasm_sha256: &str, bytes: &[u8], tag: &str) -> bool {
        let expected = self.tag(wasm_sha256, bytes);
        // Both are hex of the same length; compare in constant time.
        expected.len() == tag.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                expected.as_bytes(),
                tag.as_bytes(),
            )
            .is_ok()
    }

    fn store(
        &self,
        component: &Component,
        wasm_sha256: &str,
        artifact: &Path,
        sidecar: &Path,
    ) -> anyhow::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|error| anyhow::anyhow!("{error:#}"))?;
        // A name of its own, so two loads of one module at once (two tests,
        // two agents on one folder) never write into the same file.
        static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let partial = artifact.with_extension(format!(
            "{}.{}.partial",
            std::process::id(),
            STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&partial, &bytes)?;
        std::fs::rename(&partial, artifact)?;
        std::fs::write(sidecar, self.tag(wasm_sha256, &bytes))?;
        Ok(())
    }
}
