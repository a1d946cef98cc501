//! Where a job's output files go.
//!
//! The sandbox writes every output file through an [`OutputSink`]: under
//! `corral run-job` a [`DirSink`] writes plain files into a folder; under the
//! agent an upload sink encrypts and uploads them. A guest cannot tell which.
//!
//! Contract: a [`SinkFile`] dropped without [`SinkFile::commit`] is discarded,
//! never kept half-written.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

/// What a guest asked to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// A plain file name, already checked by the sandbox.
    pub name: String,
    /// Its MIME type.
    pub content_type: String,
}

/// A file fully written and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The file's name.
    pub name: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its length in bytes.
    pub length: u64,
    /// SHA-256 of its bytes, lower-case hex.
    pub sha256: String,
    /// Where the sink put it (a path, a registry file id).
    pub location: String,
}

/// Why a sink could not store a file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// A destination for output files.
#[async_trait]
pub trait OutputSink: Send + Sync {
    /// Starts a new file.
    async fn create(&self, spec: &OutputSpec) -> Result<Box<dyn SinkFile>, SinkError>;

    /// The most memory the sink holds for one open file (its buffers), which
    /// the sandbox charges to the job while the file is open.
    fn buffer_bytes(&self) -> u64 {
        0
    }
}

/// One file being stored.
#[async_trait]
pub trait SinkFile: Send {
    /// Appends `chunk`.
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError>;
    /// The memory the file holds now beyond [`OutputSink::buffer_bytes`]
    /// (buffers that grow with what was written), which the sandbox charges
    /// to the job after each write.
    fn held_bytes(&self) -> u64 {
        0
    }
    /// Keeps the file: everything written is stored. `length` and `sha256` are
    /// what the sandbox counted, for the sink to check or record.
    async fn commit(self: Box<Self>, length: u64, sha256: &str) -> Result<String, SinkError>;
}

/// Lower-case hex of `bytes` (for SHA-256 digests).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// Stores `bytes` as one whole file through `sink` (e.g. the discovery result,
/// which the host writes itself).
pub async fn store_whole(
    sink: &dyn OutputSink,
    spec: &OutputSpec,
    bytes: Bytes,
) -> Result<StoredFile, SinkError> {
    use sha2::Digest;
    let sha256 = hex(&sha2::Sha256::digest(&bytes));
    let length = bytes.len() as u64;
    let mut file = sink.create(spec).await?;
    file.write(bytes).await?;
    let location = file.commit(length, &sha256).await?;
    Ok(StoredFile {
        name: spec.name.clone(),
        content_type: spec.content_type.clone(),
        length,
        sha256,
        location,
    })
}

/// Counts output files and drops their bytes: for benchmarks, and for
/// checking a guest's output without keeping it.
#[derive(Debug, Clone, Default)]
pub struct NullSink;

#[async_trait]
impl OutputSink for NullSink {
    async fn create(&self, _spec: &OutputSpec) -> Result<Box<dyn SinkFile>, SinkError> {
        Ok(Box::new(NullFile))
    }
}

struct NullFile;

#[async_trait]
impl SinkFile for NullFile {
    async fn write(&mut self, _chunk: Bytes) -> Result<(), SinkError> {
        Ok(())
    }

    async fn commit(self: Box<Self>, _length: u64, _sha256: &str) -> Result<String, SinkError> {
        Ok("null".into())
    }
}

/// Writes output files into a folder, as `<name>`; a file is written as
/// `<name>.partial` and renamed when committed, so a reader never sees half.
#[derive(Debug, Clone)]
pub struct DirSink {
    dir: PathBuf,
}

impl DirSink {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<DirSink> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(DirSink { dir })
    }

    /// The folder written into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The write buffer of a [`DirSink`] file: small, since chunks of the size
/// guests write (up to 1 MiB) go past it to the file. The file keeps a
/// buffer of its own for the write under way on the blocking pool (tokio's
/// default lets it grow to 2 MiB and keep that): it is held to the same size.
const DIR_BUFFER: usize = 64 << 10;

#[async_trait]
impl OutputSink for DirSink {
    fn buffer_bytes(&self) -> u64 {
        2 * DIR_BUFFER as u64
    }

    async fn create(&self, spec: &OutputSpec) -> Result<Box<dyn SinkFile>, SinkError> {
        let path = self.dir.join(&spec.name);
        let partial = self.dir.join(format!("{}.partial", spec.name));
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|error| SinkError(format!("cannot create {}: {error}", partial.display())))?;
        file.set_max_buf_size(DIR_BUFFER);
        Ok(Box::new(DirFile {
            file: Some(tokio::io::BufWriter::with_capacity(DIR_BUFFER, file)),
            partial,
            path,
        }))
    }
}

struct DirFile {
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    partial: PathBuf,
    path: PathBuf,
}

#[async_trait]
impl SinkFile for DirFile {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| SinkError("file closed".into()))?;
        file.write_all(&chunk)
            .await
            .map_err(|error| SinkError(format!("cannot write {}: {error}", self.partial.display())))
    }

    async fn commit(mut self: Box<Self>, _length: u64, _sha256: &str) -> Result<String, SinkError> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| SinkError("file closed".into()))?;
        let fail = |error: std::io::Error| {
            SinkError(format!("cannot store {}: {error}", self.path.display()))
        };
        file.flush().await.map_err(fail)?;
        file.get_mut().sync_all().await.map_err(fail)?;
        drop(file);
        tokio::fs::rename(&self.partial, &self.path)
            .await
            .map_err(fail)?;
        Ok(self.path.display().to_string())
    }
}

impl Drop for DirFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            // Dropped without commit: discard the partial file.
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
