//! `corral:integration/output`: files the guest writes.
//!
//! Links: the `output` interface and its `file` resource; each file hands out
//! one `wasi:io` output-stream. Per-job state: the sink, the names used, the
//! files stored. Limits: `limits.output_bytes` over all
//! files of the job, counted as bytes are accepted; at most
//! `limits.open_outputs` files open at once; the host memory an open file
//! holds (the sink's buffer, as the sink declares it, and the chunks queued
//! for its writer) is charged to the job's ledger until it is released.
//!
//! Bytes go from the stream to a writer task through a small bounded channel:
//! the guest gets back-pressure when the sink is slow, a chunk spliced from an
//! HTTP body moves as the same `Bytes` without a copy, and hashing and sink
//! I/O run beside the guest rather than on its thread. Waiting for room is
//! cancel-safe (a dropped `ready()` loses nothing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::JobState;
use super::bindings::corral::integration::output::{Host, HostFile, OutputError};
use super::ledger::{Held, Ledger};
use super::limits::LimitExceeded;
use crate::sink::{OutputSink, OutputSpec, SinkError, SinkFile, StoredFile, hex};

/// Largest write a guest may make in one call (and the chunk size of a splice).
const WRITE_BUDGET: usize = 1 << 20;
/// Chunks queued between the stream and the writer task.
const QUEUED_CHUNKS: usize = 4;
/// Most output files one job may create.
const MAX_FILES: usize = 1024;

/// The output side of one job.
pub struct JobOutputs {
    sink: Arc<dyn OutputSink>,
    writers: TaskTracker,
    budget: Arc<OutputBudget>,
    names: Vec<String>,
    stored: Vec<StoredFile>,
    ledger: Ledger,
    open: Arc<AtomicU64>,
    open_cap: u32,
}

/// An open file's place among the job's open outputs, and the sink memory
/// charged for it; both end when it is finished or dropped.
struct OpenSlot {
    open: Arc<AtomicU64>,
    _buffer: Held,
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bytes all outputs of a job may still take.
#[derive(Debug)]
struct OutputBudget {
    limit: u64,
    used: AtomicU64,
    exceeded: AtomicBool,
}

impl JobOutputs {
    /// Outputs going to `sink`, at most `limit` bytes in all and `open_cap`
    /// files open at once, their memory charged to `ledger`.
    pub fn new(sink: Arc<dyn OutputSink>, limit: u64, ledger: Ledger, open_cap: u32) -> JobOutputs {
        JobOutputs {
            ledger,
            open: Arc::default(),
            open_cap,
            sink,
            writers: TaskTracker::new(),
            budget: Arc::new(OutputBudget {
                limit,
                used: AtomicU64::new(0),
                exceeded: AtomicBool::new(false),
            }),
            names: Vec::new(),
            stored: Vec::new(),
        }
    }

    /// The writer tasks of this job's files. Once the store is dropped, waiting
    /// on it (after `close`) guarantees every unfinished file was discarded.
    pub fn writers(&self) -> TaskTracker {
        self.writers.clone()
    }

    /// Files finished and kept, in order.
    pub fn stored(&self) -> &[StoredFile] {
        &self.stored
    }

    /// Takes the files kept.
    pub fn take_stored(&mut self) -> Vec<StoredFile> {
        std::mem::take(&mut self.stored)
    }

    /// Names of files created but never finished.
    pub fn unfinished(&self) -> Vec<String> {
        self.names
            .iter()
            .filter(|name| !self.stored.iter().any(|file| &file.name == *name))
            .cloned()
            .collect()
    }

    /// The limit message, if the job tried to write more than its limit.
    pub fn limit_exceeded(&self) -> Option<String> {
        self.budget
            .exceeded
            .load(Ordering::Relaxed)
            .then(|| self.budget.message())
    }
}

impl OutputBudget {
    /// Takes `bytes`; past the limit, records the hit in `ledger`.
    fn take(&self, bytes: u64, ledger: &Ledger) -> Result<(), String> {
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if used > self.limit {
            if !self.exceeded.swap(true, Ordering::Relaxed) {
                ledger.refuse(LimitExceeded::Output(self.limit));
            }
            return Err(self.message());
        }
        Ok(())
    }

    fn message(&self) -> String {
        LimitExceeded::Output(self.limit).to_string()
    }
}

/// The host side of a guest's `file` resource.
pub struct OutputFile {
    spec: OutputSpec,
    state: FileState,
    slot: Option<OpenSlot>,
}

enum FileState {
    /// Created; the stream not yet taken.
    Open(Box<dyn SinkFile>),
    /// The stream is out; its writer task owns the sink file, and commits it
    /// when `commit` fires (or discards it when `commit` is dropped).
    Streaming {
        writer: JoinHandle<Result<Written, SinkError>>,
        commit: oneshot::Sender<()>,
        stream_alive: Arc<AtomicBool>,
    },
    /// Finished (or failed while finishing).
    Done,
}

/// What a writer task reports once it committed its file.
struct Written {
    length: u64,
    sha256: String,
    location: String,
}

/// Checks a guest-chosen file name: one plain, printable path component.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err(format!(
            "file name must be 1 to 200 bytes, got {}",
            name.len()
        ));
    }
    if name.starts_with('.') || name.ends_with(".partial") {
        return Err(format!("file name `{name}` is reserved"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\' | ':') || c.is_control())
    {
        return Err(format!(
            "file name `{}` contains `{}`",
            name.escape_default(),
            bad.escape_default()
        ));
    }
    Ok(())
}

fn check_content_type(content_type: &str) -> Result<(), String> {
    let valid = content_type.len() <= 128
        && content_type
            .split_once('/')
            .is_some_and(|(kind, sub)| !kind.is_empty() && !sub.is_empty())
        && content_type
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' ');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "content type `{}` is not a MIME type",
            content_type.escape_default()
        ))
    }
}

impl Host for JobState {
    async fn create(
        &mut self,
        name: String,
        content_type: String,
    ) -> wasmtime::Result<Result<Resource<OutputFile>, OutputError>> {
        if let Err(why) = check_name(&name).and_then(|()| check_content_type(&content_type)) {
            return Ok(Err(OutputError::Invalid(why)));
        }
        let outputs = &mut self.outputs;
        if outputs.names.contains(&name) {
            return Ok(Err(OutputError::Invalid(format!(
                "file `{name}` was already created"
            ))));
        }
        if outputs.names.len() >= MAX_FILES {
            return Ok(Err(OutputError::LimitExceeded(format!(
                "a job may create at most {MAX_FILES} files"
            ))));
        }
        if outputs.open.load(Ordering::Relaxed) >= u64::from(outputs.open_cap) {
            let hit = outputs.ledger.refuse(LimitExceeded::Cap {
                resource: "open outputs",
                limit: u64::from(outputs.open_cap),
                key: "open_outputs",
            });
            return Ok(Err(OutputError::LimitExceeded(hit.to_string())));
        }
        let buffer = match outputs.ledger.hold(outputs.sink.buffer_bytes()) {
            Ok(held) => held,
            Err(hit) => return Ok(Err(OutputError::LimitExceeded(hit.to_string()))),
        };
        outputs.open.fetch_add(1, Ordering::Relaxed);
        let slot = OpenSlot {
            open: outputs.open.clone(),
            _buffer: buffer,
        };
        let spec = OutputSpec { name, content_type };
        let file = match outputs.sink.create(&spec).await {
            Ok(file) => file,
            Err(error) => return Ok(Err(OutputError::Failed(error.0))),
        };
        outputs.names.push(spec.name.clone());
        let resource = self.table.push(OutputFile {
            spec,
            state: FileState::Open(file),
            slot: Some(slot),
        })?;
        Ok(Ok(resource))
    }
}

impl HostFile for JobState {
    async fn stream(
        &mut self,
        file: Resource<OutputFile>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, OutputError>> {
        let budget = self.outputs.budget.clone();
        let ledger = self.outputs.ledger.clone();
        let output = self.table.get_mut(&file)?;
        let sink_file = match std::mem::replace(&mut output.state, FileState::Done) {
            FileState::Open(sink_file) => sink_file,
            other => {
                output.state = other;
                return Ok(Err(OutputError::WrongState(
                    "the stream was already taken".into(),
                )));
            }
        };
        let (stream, streaming) =
            SinkStream::start(sink_file, budget, ledger, &self.outputs.writers);
        output.state = streaming;
        let stream: DynOutputStream = Box::new(stream);
        Ok(Ok(self.table.push_child(stream, &file)?))
    }

    async fn finish(
        &mut self,
        file: Resource<OutputFile>,
    ) -> wasmtime::Result<Result<u64, OutputError>> {
        let budget = self.outputs.budget.clone();
        let ledger = self.outputs.ledger.clone();
        let output = self.table.get_mut(&file)?;
        let (writer, commit) = match std::mem::replace(&mut output.state, FileState::Done) {
            FileState::Open(sink_file) => {
                // Nothing was ever written: an empty file.
                let (stream, streaming) =
                    SinkStream::start(sink_file, budget, ledger, &self.outputs.writers);
                drop(stream);
                let FileState::Streaming { writer, commit, .. } = streaming else {
                    unreachable!("start always streams");
                };
                (writer, commit)
            }
            FileState::Streaming {
                writer,
                commit,
                stream_alive,
            } => {
                if stream_alive.load(Ordering::Acquire) {
                    output.state = FileState::Streaming {
                        writer,
                        commit,
                        stream_alive,
                    };
                    return Ok(Err(OutputError::WrongState(
                        "drop the output stream before calling finish".into(),
                    )));
                }
                (writer, commit)
            }
            FileState::Done => {
                return Ok(Err(OutputError::WrongState(
                    "the file was already finished".into(),
                )));
            }
        };
        let spec = output.spec.clone();
        let slot = output.slot.take();
        let _ = commit.send(());
        let written = writer.await;
        drop(slot);
        let written = match written {
            Ok(Ok(written)) => written,
            Ok(Err(error)) => return Ok(Err(OutputError::Failed(error.0))),
            Err(join) => {
                let why = format!("writer task failed: {join}");
                return Ok(Err(OutputError::Failed(why)));
            }
        };
        self.outputs.stored.push(StoredFile {
            name: spec.name,
            content_type: spec.content_type,
            length: written.length,
            sha256: written.sha256,
            location: written.location,
        });
        Ok(Ok(written.length))
    }

    async fn drop(&mut self, file: Resource<OutputFile>) -> wasmtime::Result<()> {
        // Dropping the sink file (here, or in its writer task when the commit
        // signal is dropped) discards it; `unfinished` reports it.
        self.table.delete(file)?;
        Ok(())
    }
}

/// The `output-stream` a guest writes a file through.
struct SinkStream {
    sender: mpsc::Sender<Chunk>,
    permit: Option<mpsc::OwnedPermit<Chunk>>,
    /// Bytes handed to the writer task, and bytes it has written.
    sent: u64,
    written: watch::Receiver<u64>,
    flushing: bool,
    failure: Arc<Mutex<Option<String>>>,
    budget: Arc<OutputBudget>,
    ledger: Ledger,
    alive: Arc<AtomicBool>,
}

/// A chunk on its way to the writer, its memory charged until written.
type Chunk = (Bytes, Held);

impl SinkStream {
    fn start(
        file: Box<dyn SinkFile>,
        budget: Arc<OutputBudget>,
        ledger: Ledger,
        writers: &TaskTracker,
    ) -> (SinkStream, FileState) {
        let (sender, receiver) = mpsc::channel(QUEUED_CHUNKS);
        let (written_tx, written) = watch::channel(0);
        let (commit, commit_rx) = oneshot::channel();
        let failure = Arc::new(Mutex::new(None));
        let writer = writers.spawn(ledger.meter(
            write_chunks(
                file,
                receiver,
                written_tx,
                failure.clone(),
                commit_rx,
                ledger.clone(),
            ),
            false,
        ));
        let alive = Arc::new(AtomicBool::new(true));
        let stream = SinkStream {
            sender,
            permit: None,
            sent: 0,
            written,
            flushing: false,
            failure,
            budget,
            ledger,
            alive: alive.clone(),
        };
        let streaming = FileState::Streaming {
            writer,
            commit,
            stream_alive: alive,
        };
        (stream, streaming)
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Moves chunks into the sink file, hashing them and charging to the job what
/// the file's buffers hold after each write; when the stream closes, commits
/// the file if the guest finished it, else discards it (by dropping it here,
/// so a job's writers being done means its unfinished files are gone).
async fn write_chunks(
    mut file: Box<dyn SinkFile>,
    mut chunks: mpsc::Receiver<Chunk>,
    written: watch::Sender<u64>,
    failure: Arc<Mutex<Option<String>>>,
    commit: oneshot::Receiver<()>,
    ledger: Ledger,
) -> Result<Written, SinkError> {
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    let mut buffers: Option<Held> = None;
    while let Some((chunk, held)) = chunks.recv().await {
        hasher.update(&chunk);
        length += chunk.len() as u64;
        let wrote = file.write(chunk).await;
        drop(held);
        let charged = wrote.and_then(|()| {
            let now = file.held_bytes();
            if buffers.as_ref().map_or(0, Held::bytes) != now {
                buffers = None;
                buffers = Some(ledger.hold(now).map_err(|hit| SinkError(hit.to_string()))?);
            }
            Ok(())
        });
        if let Err(error) = charged {
            *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.0.clone());
            return Err(error);
        }
        written.send_replace(length);
    }
    if commit.await.is_err() {
        drop(file);
        return Err(SinkError("the file was never finished".into()));
    }
    let sha256 = hex(&hasher.finalize());
    let location = file.commit(length, &sha256).await?;
    Ok(Written {
        length,
        sha256,
        location,
    })
}

#[async_trait::async_trait]
impl Pollable for SinkStream {
    async fn ready(&mut self) {
        if self.flushing {
            let sent = self.sent;
            // Err means the writer task ended (failed); check_write reports it.
            let _ = self.written.wait_for(|written| *written >= sent).await;
            self.flushing = false;
        }
        if self.permit.is_none()
            && let Ok(permit) = self.sender.clone().reserve_owned().await
        {
            self.permit = Some(permit);
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for SinkStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.len() > WRITE_BUDGET {
            return Err(StreamError::trap("write larger than check-write allowed"));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let permit = self
            .permit
            .take()
            .ok_or_else(|| StreamError::trap("write without a check-write permit"))?;
        self.budget
            .take(bytes.len() as u64, &self.ledger)
            .map_err(|message| {
                StreamError::LastOperationFailed(wasmtime::format_err!("{message}"))
            })?;
        let held = self
            .ledger
            .hold(bytes.len() as u64)
            .map_err(|hit| StreamError::LastOperationFailed(wasmtime::Error::new(hit)))?;
        self.sent += bytes.len() as u64;
        permit.send((bytes, held));
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.flushing = true;
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if let Some(failure) = self.failure() {
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{failure}"
            )));
        }
        if self.budget.exceeded.load(Ordering::Relaxed) {
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{}",
                self.budget.message()
            )));
        }
        if self.flushing && *self.written.borrow() < self.sent {
            return Ok(0);
        }
        self.flushing = false;
        if self.permit.is_none() {
            match self.sender.clone().try_reserve_owned() {
                Ok(permit) => self.permit = Some(permit),
                Err(mpsc::error::TrySendError::Full(_)) => return Ok(0),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    let why = self.failure().unwrap_or_else(|| "output closed".into());
                    return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                        "{why}"
                    )));
                }
            }
        }
        Ok(WRITE_BUDGET)
    }
}

impl Drop for SinkStream {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_plain_components() {
        assert!(check_name("cam-0001-1700000000000.ts").is_ok());
        for bad in [
            "",
            "../etc/passwd",
            "a/b",
            "a\\b",
            ".hidden",
            "x.partial",
            "c:d",
            "a\nb",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check_content_type("video/mp2t").is_ok());
        assert!(check_content_type("video").is_err());
        assert!(check_content_type("text/plain\r\nX: y").is_err());
    }
}
