//! Every path and JSON name of PROTOCOL.md, client side. If the real service
//! differs, this module alone changes.

use corral_envelope::EncryptionData;
use serde::{Deserialize, Serialize};

/// The prefix of every agent call, after the registry's base URL.
pub const API_PREFIX: &str = "/agentservice/api/v1";

/// Which Initialize call a file needs (the upload kind matches the job type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// InitializeMediaUpload.
    Media,
    /// InitializeThumbnailUpload.
    Thumbnail,
    /// InitializeDiscoveryUpload.
    Discovery,
}

impl FileKind {
    /// The path segment of the Initialize call.
    pub fn segment(self) -> &'static str {
        match self {
            FileKind::Media => "media",
            FileKind::Thumbnail => "thumbnail",
            FileKind::Discovery => "discovery",
        }
    }
}

/// Percent-encodes one path segment (block ids are base64 and may hold `/`, `+`, `=`).
pub fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `POST /jobs/{jobId}/files/{kind}`.
pub fn initialize_path(job_id: &str, kind: FileKind) -> String {
    format!(
        "{API_PREFIX}/jobs/{}/files/{}",
        segment(job_id),
        kind.segment()
    )
}

/// `PUT /files/{fileId}/blocks/{blockId}`.
pub fn block_path(file_id: &str, block_id: &str) -> String {
    format!(
        "{API_PREFIX}/files/{}/blocks/{}",
        segment(file_id),
        segment(block_id)
    )
}

/// `POST /files/{fileId}/complete`.
pub fn complete_file_path(file_id: &str) -> String {
    format!("{API_PREFIX}/files/{}/complete", segment(file_id))
}

/// Body of an Initialize call.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeUpload<'a> {
    /// The job's lock token.
    pub lock_token: &'a str,
    /// The file's name.
    pub file_name: &'a str,
    /// Its MIME type.
    pub content_type: &'a str,
    /// The device, when the job has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<&'a str>,
    /// Start of the recording (media).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time_utc: Option<&'a str>,
    /// End of the recording (media).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time_utc: Option<&'a str>,
}

/// Answer of an Initialize call.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializedFile {
    /// The new file's id.
    pub file_id: String,
    /// The key-encryption key, a JsonWebKey object.
    pub json_web_key: serde_json::Value,
}

/// Body of "complete file".
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteFile<'a> {
    /// The job's lock token.
    pub lock_token: &'a str,
    /// Block ids in order.
    pub block_ids: &'a [String],
    /// The encryption metadata (Azure's PascalCase inside).
    pub encryption_data: &'a EncryptionData,
    /// Plaintext length.
    pub content_length: u64,
}

/// An error answer, `{"error","message"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    /// A code such as `LOCK_LOST`.
    #[serde(default)]
    pub error: String,
    /// Human text.
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_protocol_md() {
        assert_eq!(
            initialize_path("j1", FileKind::Media),
            "/agentservice/api/v1/jobs/j1/files/media"
        );
        assert_eq!(
            block_path("f1", "AAAAAAAAAD8="),
            "/agentservice/api/v1/files/f1/blocks/AAAAAAAAAD8%3D"
        );
        assert_eq!(
            block_path("f1", "a/b+"),
            "/agentservice/api/v1/files/f1/blocks/a%2Fb%2B"
        );
        assert_eq!(
            complete_file_path("f/1"),
            "/agentservice/api/v1/files/f%2F1/complete"
        );
    }

    #[test]
    fn bodies_use_camel_case() {
        let body = InitializeUpload {
            lock_token: "t",
            file_name: "a.ts",
            content_type: "video/mp2t",
            device_id: Some("cam-1"),
            start_time_utc: None,
            end_time_utc: None,
        };
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"lockToken":"t","fileName":"a.ts","contentType":"video/mp2t","deviceId":"cam-1"}"#
        );
    }
}
