//! Cutting, sealing and uploading one file at a time, N blocks in flight.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use corral_envelope::{FileEncryptor, NONCE_LEN, REGION_LEN, block_id};
use tokio::task::JoinSet;

use super::{BlockTransport, FileCommit, UploadTarget};
use crate::client::retry::RetryPolicy;
use crate::client::{JobFaults, RegistryError};
use crate::sink::{OutputSink, OutputSpec, SinkError, SinkFile};

/// Tuning of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct UploadConfig {
    /// Blocks being sealed or uploaded at once, per file (default 4).
    pub blocks_in_flight: usize,
    /// Retries of block uploads and commits.
    pub retry: RetryPolicy,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            blocks_in_flight: 4,
            retry: RetryPolicy::default(),
        }
    }
}

/// An output sink that encrypts and uploads each file to the registry.
/// Every registry error it meets is noted in its [`JobFaults`], so the agent
/// can tell a registry that failed from a guest that did.
pub struct UploadSink {
    transport: Arc<dyn BlockTransport>,
    config: UploadConfig,
    faults: JobFaults,
}

impl UploadSink {
    /// A sink uploading through `transport`.
    pub fn new(transport: Arc<dyn BlockTransport>, config: UploadConfig) -> UploadSink {
        UploadSink {
            transport,
            config: UploadConfig {
                blocks_in_flight: config.blocks_in_flight.max(1),
                ..config
            },
            faults: JobFaults::default(),
        }
    }

    /// A sink noting the registry's errors in `faults` (shared with the caller).
    pub fn with_faults(mut self, faults: JobFaults) -> UploadSink {
        self.faults = faults;
        self
    }

    /// The registry errors met so far.
    pub fn faults(&self) -> &JobFaults {
        &self.faults
    }
}

fn sink_error(faults: &JobFaults, what: &str, error: RegistryError) -> SinkError {
    faults.note(&error);
    SinkError(format!("{what}: {error}"))
}

#[async_trait]
impl OutputSink for UploadSink {
    // Nothing up front: a file's region grows with what is written to it
    // (a thumbnail's stays small), and `held_bytes` says what it holds.

    async fn create(&self, spec: &OutputSpec) -> Result<Box<dyn SinkFile>, SinkError> {
        // Retried: if an answer is lost, the file it made never receives a
        // block, and the registry discards it at `complete` (PROTOCOL.md).
        let target = self
            .config
            .retry
            .run(&format!("Initialize of {}", spec.name), || {
                self.transport.initialize(spec)
            })
            .await
            .map_err(|error| {
                sink_error(
                    &self.faults,
                    &format!("cannot initialize upload of {}", spec.name),
                    error,
                )
            })?;
        Ok(Box::new(EncryptedUpload {
            name: spec.name.clone(),
            transport: self.transport.clone(),
            config: self.config,
            encryptor: Arc::new(FileEncryptor::new()),
            file_id: Arc::from(target.file_id.as_str()),
            target,
            faults: self.faults.clone(),
            region: vec![0; NONCE_LEN],
            next_index: 0,
            length: 0,
            in_flight: JoinSet::new(),
            spare: Vec::new(),
        }))
    }
}

/// One file being sealed and uploaded.
struct EncryptedUpload {
    name: String,
    transport: Arc<dyn BlockTransport>,
    config: UploadConfig,
    encryptor: Arc<FileEncryptor>,
    target: UploadTarget,
    file_id: Arc<str>,
    faults: JobFaults,
    /// `NONCE_LEN` bytes of room, then the region's plaintext so far.
    region: Vec<u8>,
    next_index: u64,
    length: u64,
    /// Blocks being sealed or uploaded; each hands its buffer back.
    in_flight: JoinSet<Result<Bytes, SinkError>>,
    /// Buffers back from finished uploads, for reuse.
    spare: Vec<Vec<u8>>,
}

/// A whole block: the nonce, a region and the tag.
const BLOCK_CAPACITY: usize = NONCE_LEN + REGION_LEN + 16;

/// Room for `more` bytes in `region` (and the tag), grown by doubling up to
/// a whole block, so a small file holds little and a large one is copied at
/// most once over while its first region fills.
fn make_room(region: &mut Vec<u8>, more: usize) {
    let needed = region.len() + more + 16;
    if needed <= region.capacity() {
        return;
    }
    let target = needed.max(region.capacity() * 2).min(BLOCK_CAPACITY);
    region.reserve_exact(target - region.len());
}

impl EncryptedUpload {
    /// Hands the current region to a task that seals and uploads it; waits
    /// first while `blocks_in_flight` are already under way (back-pressure).
    async fn submit_region(&mut self) -> Result<(), SinkError> {
        while self.in_flight.len() >= self.config.blocks_in_flight {
            self.reap_one().await?;
        }
        let next = self.spare.pop().unwrap_or_else(|| vec![0; NONCE_LEN]);
        let mut block = std::mem::replace(&mut self.region, next);
        let index = self.next_index;
        self.next_index += 1;
        let encryptor = self.encryptor.clone();
        let transport = self.transport.clone();
        let file_id = self.file_id.clone();
        let retry = self.config.retry;
        let faults = self.faults.clone();
        self.in_flight.spawn(async move {
            let block = tokio::task::spawn_blocking(move || {
                encryptor.seal(index, &mut block);
                Bytes::from(block)
            })
            .await
            .map_err(|error| SinkError(format!("sealing block {index} failed: {error}")))?;
            let id = block_id(index);
            retry
                .run(&format!("upload of block {index}"), || {
                    transport.put_block(&file_id, &id, block.clone())
                })
                .await
                .map_err(|error| {
                    sink_error(&faults, &format!("block {index} of file {file_id}"), error)
                })?;
            Ok(block)
        });
        Ok(())
    }

    /// Waits for one block; recycles its buffer; fails the file on its error.
    async fn reap_one(&mut self) -> Result<(), SinkError> {
        match self.in_flight.join_next().await {
            None => Ok(()),
            Some(Ok(Ok(block))) => {
                if let Ok(buffer) = block.try_into_mut() {
                    let mut buffer = Vec::from(buffer);
                    buffer.truncate(NONCE_LEN);
                    self.spare.push(buffer);
                }
                Ok(())
            }
            Some(Ok(Err(error))) => {
                self.in_flight.abort_all();
                Err(error)
            }
            Some(Err(join)) => {
                self.in_flight.abort_all();
                Err(SinkError(format!("an upload task failed: {join}")))
            }
        }
    }
}

#[async_trait]
impl SinkFile for EncryptedUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let room = NONCE_LEN + REGION_LEN - self.region.len();
            let take = room.min(rest.len());
            make_room(&mut self.region, take);
            self.region.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            self.length += take as u64;
            if self.region.len() == NONCE_LEN + REGION_LEN {
                self.submit_region().await?;
            }
        }
        Ok(())
    }

    fn held_bytes(&self) -> u64 {
        let spare: usize = self.spare.iter().map(Vec::capacity).sum();
        (self.region.capacity() + spare + self.in_flight.len() * BLOCK_CAPACITY) as u64
    }

    async fn commit(mut self: Box<Self>, length: u64, _sha256: &str) -> Result<String, SinkError> {
        if length != self.length {
            return Err(SinkError(format!(
                "{} bytes were counted but {} reached the upload",
                length, self.length
            )));
        }
        if self.region.len() > NONCE_LEN {
            self.submit_region().await?;
        }
        while !self.in_flight.is_empty() {
            self.reap_one().await?;
        }
        let encryption_data = self
            .encryptor
            .encryption_data(&self.target.kek)
            .map_err(|error| SinkError(format!("cannot wrap the key of {}: {error}", self.name)))?;
        let commit = FileCommit {
            block_ids: (0..self.next_index).map(block_id).collect(),
            encryption_data,
            content_length: self.length,
        };
        let file_id = self.file_id.clone();
        self.config
            .retry
            .run(&format!("commit of file {file_id}"), || {
                self.transport.commit(&file_id, &commit)
            })
            .await
            .map_err(|error| {
                sink_error(&self.faults, &format!("cannot commit {}", self.name), error)
            })?;
        Ok(file_id.to_string())
    }
}
