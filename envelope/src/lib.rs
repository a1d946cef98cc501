//! # corral-envelope: the registry's file encryption, to the byte
//!
//! Clearance encrypts files the way Azure Storage client-side encryption v2 does
//! (PROTOCOL.md, "Encryption"): a fresh 256-bit content key (CEK) per file;
//! the plaintext cut into regions of exactly 4 MiB, each sealed with AES-256-GCM
//! under a nonce that is the region's index; each region stored as
//! `nonce ‖ ciphertext ‖ tag` and uploaded as one block; the CEK, prefixed with
//! the protocol version, wrapped under the key-encryption key (KEK) the registry
//! hands out as a JsonWebKey; and an [`EncryptionData`] document that lets any
//! Azure SDK decrypt the result.
//!
//! The agent uses [`FileEncryptor`] to seal regions; the registry uses
//! [`decrypt::Decryptor`] to check every block before it accepts a commit.
//! AES-GCM comes from aws-lc-rs, chosen by measurement (see the `encrypt`
//! benchmark and the README); JWK parsing and key wrapping from josekit.

pub mod decrypt;
pub mod format;
pub mod keys;
mod region;

pub use format::{
    BLOCK_OVERHEAD, EncryptionData, MAX_BLOCK_LEN, NONCE_LEN, REGION_LEN, TAG_LEN, block_id,
    encrypted_len, region_count,
};
pub use keys::{KekError, KeyEncryptionKey, KeyUnwrapper};
pub use region::{ContentKey, FileEncryptor};
