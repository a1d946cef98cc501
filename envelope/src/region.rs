//! Sealing regions with a file's content key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::format::{EncryptionData, NONCE_LEN, PROTOCOL, nonce};
use crate::keys::{KekError, KeyEncryptionKey};

/// Bytes of a content key.
pub const CONTENT_KEY_LEN: usize = 32;

/// A file's 256-bit content key. Never leaves the process unwrapped; `Debug`
/// does not print it.
pub struct ContentKey([u8; CONTENT_KEY_LEN]);

impl ContentKey {
    /// A fresh random key.
    pub fn generate() -> ContentKey {
        let mut key = [0; CONTENT_KEY_LEN];
        aws_lc_rs::rand::fill(&mut key).expect("the system random source works");
        ContentKey(key)
    }

    /// A key from its bytes (the registry, after unwrapping).
    pub fn from_bytes(bytes: [u8; CONTENT_KEY_LEN]) -> ContentKey {
        ContentKey(bytes)
    }

    /// `"2.0"` padded with NUL to 8 bytes, then the key: what gets wrapped.
    fn wrap_payload(&self) -> Vec<u8> {
        let mut payload = version_prefix().to_vec();
        payload.extend_from_slice(&self.0);
        payload
    }

    pub(crate) fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte key is valid for AES-256-GCM"),
        )
    }
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

/// The 8 bytes in front of the content key inside the wrapped payload.
pub(crate) fn version_prefix() -> [u8; 8] {
    let mut prefix = [0; 8];
    prefix[..PROTOCOL.len()].copy_from_slice(PROTOCOL.as_bytes());
    prefix
}

/// Seals the regions of one file.
pub struct FileEncryptor {
    key: ContentKey,
    aead: LessSafeKey,
}

impl FileEncryptor {
    /// An encryptor with a fresh content key.
    pub fn new() -> FileEncryptor {
        FileEncryptor::with_key(ContentKey::generate())
    }

    /// An encryptor with a given key (tests).
    pub fn with_key(key: ContentKey) -> FileEncryptor {
        let aead = key.aead();
        FileEncryptor { key, aead }
    }

    /// The commit's metadata: the content key wrapped under `kek`.
    pub fn encryption_data(&self, kek: &KeyEncryptionKey) -> Result<EncryptionData, KekError> {
        let wrapped = kek.wrap(&self.key.wrap_payload())?;
        Ok(EncryptionData::new(
            kek.kid(),
            kek.algorithm().name(),
            &wrapped,
        ))
    }

    /// Seals region `index` in place. `block` holds `NONCE_LEN` bytes of room,
    /// then the region's plaintext; afterwards it is `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, index: u64, block: &mut Vec<u8>) {
        assert!(
            block.len() >= NONCE_LEN,
            "a block starts with room for the nonce"
        );
        let nonce_bytes = nonce(index);
        block[..NONCE_LEN].copy_from_slice(&nonce_bytes);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::empty(),
                &mut block[NONCE_LEN..],
            )
            .expect("AES-GCM sealing of at most 4 MiB cannot fail");
        block.extend_from_slice(tag.as_ref());
    }
}

impl Default for FileEncryptor {
    fn default() -> Self {
        FileEncryptor::new()
    }
}
