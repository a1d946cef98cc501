//! The format's constants, names and metadata document. Every JSON name of
//! `EncryptionData` lives here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// Plaintext bytes per region (and so per block): exactly 4 MiB.
pub const REGION_LEN: usize = 4 * 1024 * 1024;
/// Bytes of the nonce stored in front of each region.
pub const NONCE_LEN: usize = 12;
/// Bytes of the GCM tag stored after each region.
pub const TAG_LEN: usize = 16;
/// What encryption adds to each region.
pub const BLOCK_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// The largest block: a full region sealed.
pub const MAX_BLOCK_LEN: usize = REGION_LEN + BLOCK_OVERHEAD;
/// Bytes a block id decodes to (a big-endian region index).
pub const BLOCK_ID_LEN: usize = 8;
/// The protocol version, as `EncryptionAgent.Protocol` and as the wrapped prefix.
pub const PROTOCOL: &str = "2.0";
/// `EncryptionAgent.EncryptionAlgorithm`.
pub const ALGORITHM: &str = "AES_GCM_256";
/// `EncryptionMode`.
pub const MODE: &str = "FullBlob";

/// Number of regions (blocks) of a `plaintext_len`-byte file.
pub fn region_count(plaintext_len: u64) -> u64 {
    plaintext_len.div_ceil(REGION_LEN as u64)
}

/// Bytes stored for a `plaintext_len`-byte file: plaintext + 28 per region.
pub fn encrypted_len(plaintext_len: u64) -> u64 {
    plaintext_len + BLOCK_OVERHEAD as u64 * region_count(plaintext_len)
}

/// The nonce of region `index`: the index as a 12-byte big-endian integer.
pub fn nonce(index: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0; NONCE_LEN];
    nonce[NONCE_LEN - 8..].copy_from_slice(&index.to_be_bytes());
    nonce
}

/// The block id of region `index`: standard padded base64 of the index as 8
/// big-endian bytes, so every id of a file decodes to the same length.
pub fn block_id(index: u64) -> String {
    STANDARD.encode(index.to_be_bytes())
}

/// The region index a block id names, if it is one of ours.
pub fn block_index(id: &str) -> Option<u64> {
    let bytes = STANDARD.decode(id).ok()?;
    let bytes: [u8; BLOCK_ID_LEN] = bytes.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The `EncryptionData` document sent with a commit, in Azure's names and order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionData {
    /// The wrapped content key.
    pub wrapped_content_key: WrappedContentKey,
    /// Protocol and algorithm.
    pub encryption_agent: EncryptionAgent,
    /// Region layout.
    pub encrypted_region_info: EncryptedRegionInfo,
    /// Who wrapped the key.
    pub key_wrapping_metadata: KeyWrappingMetadata,
    /// Always `FullBlob`.
    pub encryption_mode: String,
}

/// `WrappedContentKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WrappedContentKey {
    /// The `kid` of the KEK.
    pub key_id: String,
    /// The wrapped `"2.0\0\0\0\0\0" ‖ CEK`, standard base64.
    pub encrypted_key: String,
    /// `RSA-OAEP`, `RSA-OAEP-256` or `A256KW`.
    pub algorithm: String,
}

/// `EncryptionAgent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionAgent {
    /// `2.0`.
    pub protocol: String,
    /// `AES_GCM_256`.
    pub encryption_algorithm: String,
}

/// `EncryptedRegionInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptedRegionInfo {
    /// Plaintext bytes per region: 4194304.
    pub data_length: u64,
    /// Nonce bytes: 12.
    pub nonce_length: u64,
}

/// `KeyWrappingMetadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyWrappingMetadata {
    /// Name and version of the library that wrapped the key.
    pub encryption_library: String,
}

impl EncryptionData {
    /// The document for a CEK wrapped as `wrapped_key` under KEK `key_id` with
    /// `algorithm`.
    pub fn new(key_id: &str, algorithm: &str, wrapped_key: &[u8]) -> EncryptionData {
        EncryptionData {
            wrapped_content_key: WrappedContentKey {
                key_id: key_id.to_string(),
                encrypted_key: STANDARD.encode(wrapped_key),
                algorithm: algorithm.to_string(),
            },
            encryption_agent: EncryptionAgent {
                protocol: PROTOCOL.to_string(),
                encryption_algorithm: ALGORITHM.to_string(),
            },
            encrypted_region_info: EncryptedRegionInfo {
                data_length: REGION_LEN as u64,
                nonce_length: NONCE_LEN as u64,
            },
            key_wrapping_metadata: KeyWrappingMetadata {
                encryption_library: concat!(
                    "corral-envelope/",
                    env!("CARGO_PKG_VERSION"),
                    " (josekit, aws-lc-rs)"
                )
                .to_string(),
            },
            encryption_mode: MODE.to_string(),
        }
    }

    /// Checks the fixed parts of the document (protocol, algorithm, layout,
    /// mode), saying which is wrong.
    pub fn check(&self) -> Result<(), String> {
        let agent = &self.encryption_agent;
        let region = &self.encrypted_region_info;
        if agent.protocol != PROTOCOL {
            return Err(format!(
                "EncryptionAgent.Protocol is `{}`, not `{PROTOCOL}`",
                agent.protocol
            ));
        }
        if agent.encryption_algorithm != ALGORITHM {
            return Err(format!(
                "EncryptionAgent.EncryptionAlgorithm is `{}`, not `{ALGORITHM}`",
                agent.encryption_algorithm
            ));
        }
        if region.data_length != REGION_LEN as u64 || region.nonce_length != NONCE_LEN as u64 {
            return Err(format!(
                "EncryptedRegionInfo is {}/{}, not {REGION_LEN}/{NONCE_LEN}",
                region.data_length, region.nonce_length
            ));
        }
        if self.encryption_mode != MODE {
            return Err(format!(
                "EncryptionMode is `{}`, not `{MODE}`",
                self.encryption_mode
            ));
        }
        Ok(())
    }

    /// The wrapped key's bytes.
    pub fn wrapped_key(&self) -> Result<Vec<u8>, String> {
        STANDARD
            .decode(&self.wrapped_content_key.encrypted_key)
            .map_err(|error| format!("WrappedContentKey.EncryptedKey is not base64: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_format() {
        assert_eq!(encrypted_len(0), 0);
        assert_eq!(encrypted_len(1), 29);
        assert_eq!(encrypted_len(REGION_LEN as u64), REGION_LEN as u64 + 28);
        assert_eq!(
            encrypted_len(REGION_LEN as u64 + 1),
            REGION_LEN as u64 + 1 + 56
        );
        assert_eq!(nonce(1), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(nonce(0x0102), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn block_ids_have_one_width_and_round_trip() {
        let ids: Vec<String> = [0, 1, 62, 63, 255, 1 << 40].map(block_id).to_vec();
        assert!(ids.iter().all(|id| id.len() == 12 && id.ends_with('=')));
        for (id, index) in ids.iter().zip([0, 1, 62, 63, 255, 1 << 40]) {
            assert_eq!(block_index(id), Some(index));
        }
        assert_eq!(block_index("AAAA"), None);
    }

    #[test]
    fn the_document_keeps_azures_names_and_order() {
        let json =
            serde_json::to_string(&EncryptionData::new("kid-1", "RSA-OAEP", b"wrapped")).unwrap();
        let order = [
            "WrappedContentKey",
            "KeyId",
            "EncryptedKey",
            "Algorithm",
            "EncryptionAgent",
            "Protocol",
            "EncryptionAlgorithm",
            "EncryptedRegionInfo",
            "DataLength",
            "NonceLength",
            "KeyWrappingMetadata",
            "EncryptionLibrary",
            "EncryptionMode",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|name| json.find(&format!("\"{name}\"")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{json}");
        assert!(json.contains(r#""DataLength":4194304,"NonceLength":12"#));
    }
}
