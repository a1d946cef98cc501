//! The upload calls of one locked job, as a [`BlockTransport`].

use async_trait::async_trait;
use bytes::Bytes;
use corral_envelope::KeyEncryptionKey;

use super::{RegistryClient, RegistryError};
use crate::protocol::{CompleteFile, FileKind, InitializeUpload};
use crate::sink::OutputSpec;
use crate::upload::{BlockTransport, FileCommit, UploadTarget};

/// Uploads for one job held under one lock token.
pub struct JobUploads {
    client: RegistryClient,
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
        client: RegistryClient,
        job_id: &str,
        lock_token: &str,
        kind: FileKind,
        device_id: Option<String>,
        range: Option<(String, String)>,
    ) -> JobUploads {
        JobUploads {
            client,
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
    async fn initialize(&self, spec: &OutputSpec) -> Result<UploadTarget, RegistryError> {
        let request = InitializeUpload {
            lock_token: &self.lock_token,
            file_name: &spec.name,
            content_type: &spec.content_type,
            device_id: self.device_id.as_deref(),
            start_time_utc: self.range.as_ref().map(|(start, _)| start.as_str()),
            end_time_utc: self.range.as_ref().map(|(_, end)| end.as_str()),
        };
        let file = self
            .client
            .initialize(&self.job_id, self.kind, &request)
            .await?;
        let jwk = serde_json::to_vec(&file.json_web_key).expect("a JSON value serializes");
        let kek = KeyEncryptionKey::from_jwk_json(&jwk).map_err(|error| {
            RegistryError::invalid(format!("the registry's key for {}: {error}", spec.name))
        })?;
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
    ) -> Result<(), RegistryError> {
        self.client.put_block(file_id, block_id, block).await
    }

    async fn commit(&self, file_id: &str, commit: &FileCommit) -> Result<(), RegistryError> {
        let request = CompleteFile {
            lock_token: &self.lock_token,
            block_ids: &commit.block_ids,
            encryption_data: &commit.encryption_data,
            content_length: commit.content_length,
        };
        self.client.complete_file(file_id, &request).await
    }
}
