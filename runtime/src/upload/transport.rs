//! What the pipeline needs from the registry: Initialize, upload block, commit.

use async_trait::async_trait;
use bytes::Bytes;
use corral_envelope::{EncryptionData, KeyEncryptionKey};
use std::time::Duration;

use crate::sink::OutputSpec;

/// A file the registry initialized: its id and the key to wrap its content
/// key with.
#[derive(Debug)]
pub struct UploadTarget {
    /// The registry's file id.
    pub file_id: String,
    /// The key-encryption key (the JsonWebKey of the Initialize answer).
    pub kek: KeyEncryptionKey,
}

/// The commit of one file (PROTOCOL.md's "complete file").
#[derive(Debug, Clone)]
pub struct FileCommit {
    /// Block ids in order.
    pub block_ids: Vec<String>,
    /// The encryption metadata.
    pub encryption_data: EncryptionData,
    /// Plaintext length in bytes.
    pub content_length: u64,
}

/// Why a registry call failed, sorted by what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// Worth retrying: connection lost, timeout, 5xx, 429/503.
    #[error("{message}")]
    Transient {
        /// What happened.
        message: String,
        /// How long the server asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The job's lock is gone (409): stop, commit nothing.
    #[error("the lock is lost: {0}")]
    LockLost(String),
    /// The registry refused the request for good (other 4xx).
    #[error("the registry refused: {0}")]
    Rejected(String),
}

impl TransportError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TransportError::Transient { .. })
    }
}

/// The registry calls of an upload. Every call is safe to retry as PROTOCOL.md
/// makes them idempotent, except `initialize`, which creates a new file each
/// time (an orphan is discarded by the registry when the job completes).
#[async_trait]
pub trait BlockTransport: Send + Sync {
    /// Initialize{Media,Thumbnail,Discovery}Upload for a new output file.
    async fn initialize(&self, spec: &OutputSpec) -> Result<UploadTarget, TransportError>;
    /// Uploads (or replaces) one encrypted block.
    async fn put_block(
        &self,
        file_id: &str,
        block_id: &str,
        block: Bytes,
    ) -> Result<(), TransportError>;
    /// Commits the file.
    async fn commit(&self, file_id: &str, commit: &FileCommit) -> Result<(), TransportError>;
}
