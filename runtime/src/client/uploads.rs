//! The upload calls of one locked job, as a [`BlockTransport`].

use async_trait::async_trait;
use bytes::Bytes;
use corral_envelope::KeyEncryptionKey;
use http::Method;

use super::RegistryHttp;
use super::wire::{self, CompleteFile, FileKind, InitializeUpload, InitializedFile};
use crate::sink::OutputSpec;
use crate::upload::{BlockTransport, FileCommit, TransportError, UploadTarget};

const JSON: &str = "application/json";
const OCTETS: &str = "application/octet-stream";

/// Uploads for one job held under one lock token.
pub struct JobUploads {
    http: RegistryHttp,
    job_id: String,
    lock_token: String,
    kind: FileKind,
    device_id: Option<String>,
    range: Option<(String, String)>,
}

impl JobUploads {
    /// Uploads of `kind` files for `job_id` under `lock_token`; `device_id`
    /// and `range` (RFC 3339 strings) are sent with each Initialize call.
    pub fn new(
        http: RegistryHttp,
        job_id: &str,
        lock_token: &str,
        kind: FileKind,
        device_id: Option<String>,
        range: Option<(String, String)>,
    ) -> JobUploads {
        JobUploads {
            http,
            job_id: job_id.to_string(),
            lock_token: lock_token.to_string(),
            kind,
            device_id,
            range,
        }
    }
}

#[async_trait]
impl BlockTransport for JobUploads {
    async fn initialize(&self, spec: &OutputSpec) -> Result<UploadTarget, TransportError> {
        let body = InitializeUpload {
            lock_token: &self.lock_token,
            file_name: &spec.name,
            content_type: &spec.content_type,
            device_id: self.device_id.as_deref(),
            start_time_utc: self.range.as_ref().map(|(start, _)| start.as_str()),
            end_time_utc: self.range.as_ref().map(|(_, end)| end.as_str()),
        };
        let body = serde_json::to_vec(&body).expect("the body always serializes");
        let path = wire::initialize_path(&self.job_id, self.kind);
        let answer = self
            .http
            .send(Method::POST, &path, JSON, body.into())
            .await?;
        let file: InitializedFile = serde_json::from_slice(&answer.body).map_err(|error| {
            TransportError::Rejected(format!("{path}: unexpected answer: {error}"))
        })?;
        let jwk = serde_json::to_vec(&file.json_web_key).expect("a JSON value serializes");
        let kek = KeyEncryptionKey::from_jwk_json(&jwk)
            .map_err(|error| TransportError::Rejected(format!("{path}: {error}")))?;
        Ok(UploadTarget {
            file_id: file.file_id,
            kek,
        })
    }

    async fn put_block(
        &self,
        file_id: &str,
        block_id: &str,
        block: Bytes,
    ) -> Result<(), TransportError> {
        let path = wire::block_path(file_id, block_id);
        self.http
            .send(Method::PUT, &path, OCTETS, block)
            .await
            .map(drop)
    }

    async fn commit(&self, file_id: &str, commit: &FileCommit) -> Result<(), TransportError> {
        let body = CompleteFile {
            lock_token: &self.lock_token,
            block_ids: &commit.block_ids,
            encryption_data: &commit.encryption_data,
            content_length: commit.content_length,
        };
        let body = serde_json::to_vec(&body).expect("the body always serializes");
        let path = wire::complete_file_path(file_id);
        self.http
            .send(Method::POST, &path, JSON, body.into())
            .await
            .map(drop)
    }
}
