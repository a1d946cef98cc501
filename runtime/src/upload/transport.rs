//! What the pipeline needs from the registry: Initialize, upload block, commit.

use async_trait::async_trait;
use bytes::Bytes;
use corral_envelope::{EncryptionData, KeyEncryptionKey};

pub use crate::client::RegistryError;
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

/// The registry calls of an upload. Every call is safe to retry as PROTOCOL.md
/// makes them: blocks and commits are idempotent, and `initialize`, which makes
/// a new file each time, leaves at worst an orphan that never receives a block,
/// which the registry discards when the job completes.
#[async_trait]
pub trait BlockTransport: Send + Sync {
    /// Initialize{Media,Thumbnail,Discovery}Upload for a new output file.
    async fn initialize(&self, spec: &OutputSpec) -> Result<UploadTarget, RegistryError>;
    /// Uploads (or replaces) one encrypted block.
    async fn put_block(
        &self,
        file_id: &str,
        block_id: &str,
        block: Bytes,
    ) -> Result<(), RegistryError>;
    /// Commits the file.
    async fn commit(&self, file_id: &str, commit: &FileCommit) -> Result<(), RegistryError>;
}
