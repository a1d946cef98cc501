//! The file store: where the bytes of uploaded files live, behind
//! [`FileStore`]. Its state (which blocks a file received, its commit, its
//! key) stays in the state store; a file store holds only bytes, and for
//! Azure the committed file's `encryptiondata` metadata beside them.
//!
//! Two implementations: [`folder::FolderBlobs`], blocks as files under the
//! data folder (the default, one machine), and [`azure::AzureBlobs`], an
//! Azure Blob Storage container (or Azurite) shared by several registry
//! nodes, where a committed file is an ordinary client-side-encrypted block
//! blob.
//!
//! A commit goes: [`FileStore::commit`] (Azure: Put Block List), then the
//! registry reads every block back with [`FileStore::read_block`] and
//! decrypts it, then records the commit, then [`FileStore::prune`] drops the
//! blocks the commit did not name (the folder; Azure did so at the commit).

pub mod azure;
pub mod folder;
mod shared_key;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

/// A block id as the agent chose it: standard padded base64 of 1 to 64
/// bytes (Azure's rule for Put Block), with its decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockId {
    text: String,
    bytes: Vec<u8>,
}

impl BlockId {
    /// Parses `text`, or says why it is not a block id.
    pub fn parse(text: &str) -> Result<BlockId, String> {
        let bytes = STANDARD.decode(text).map_err(|_| {
            format!(
                "block id `{}` is not standard padded base64",
                text.escape_default()
            )
        })?;
        if bytes.is_empty() || bytes.len() > 64 {
            return Err(format!(
                "block id `{text}` decodes to {} bytes (1 to 64 allowed)",
                bytes.len()
            ));
        }
        Ok(BlockId {
            text: text.to_string(),
            bytes,
        })
    }

    /// The id as the agent sent it (base64).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The decoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Where one block sits in a committed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The block.
    pub id: BlockId,
    /// Its first byte's offset in the committed file.
    pub offset: u64,
    /// Its length in bytes.
    pub len: usize,
}

/// Why a file store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, on which path.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The blob service did not answer.
    #[error("{what}: {endpoint} does not answer: {reason}")]
    Unreachable {
        /// The call.
        what: String,
        /// The service's address (never a key).
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The blob service answered with an error.
    #[error("{what}: the blob service answered {status} {code}")]
    Refused {
        /// The call.
        what: String,
        /// The HTTP status.
        status: u16,
        /// Azure's error code (`x-ms-error-code`), or the reason phrase.
        code: String,
    },
    /// A commit named a block the store does not hold (Azure: discarded by
    /// an earlier Put Block List of the same blob).
    #[error("{0}")]
    UnknownBlock(String),
    /// The store's configuration is unusable.
    #[error("{0}")]
    Config(String),
}

/// Where uploaded files' bytes live. Methods block (call them off the async
/// workers); every one is safe to repeat, and to run on several nodes at once.
pub trait FileStore: Send + Sync {
    /// What and where, for messages (never a key).
    fn describe(&self) -> String;

    /// Stores block `id` of file `file_id` (replacing one of the same id),
    /// from the frames it arrived in.
    fn put_block(&self, file_id: &str, id: &BlockId, block: &[Bytes]) -> Result<(), BlobError>;

    /// Makes `blocks`, in this order, the content of `file_id`, with
    /// `encryption_data` (Azure's `EncryptionData` JSON) as its metadata
    /// where the store keeps metadata. Blocks not named may be discarded.
    fn commit(
        &self,
        file_id: &str,
        blocks: &[BlockId],
        encryption_data: &str,
    ) -> Result<(), BlobError>;

    /// Reads back one block of a file committed by [`FileStore::commit`].
    fn read_block(&self, file_id: &str, block: &Placed) -> Result<Vec<u8>, BlobError>;

    /// The whole committed content of `file_id`, made of `blocks` in order.
    fn read_file(&self, file_id: &str, blocks: &[BlockId]) -> Result<Vec<u8>, BlobError>;

    /// After a commit was recorded: drops the blocks it did not name.
    fn prune(&self, file_id: &str, keep: &[BlockId]);

    /// Deletes everything stored for `file_id`, committed or not; a file with
    /// nothing stored is no error.
    fn delete(&self, file_id: &str) -> Result<(), BlobError>;
}

#[cfg(test)]
mod tests {
    use super::BlockId;

    #[test]
    fn a_block_id_is_padded_base64_of_one_to_sixty_four_bytes() {
        assert_eq!(
            BlockId::parse("AAAAAAAAAAE=").unwrap().bytes(),
            &[0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert!(BlockId::parse("AAAAAAAAAAE").is_err(), "unpadded");
        assert!(BlockId::parse("").is_err(), "empty");
        assert!(BlockId::parse(&"A".repeat(88)).is_err(), "66 bytes");
    }
}
