//! The admin side: posting and listing jobs, files decrypted, devices learned
//! from discovery results. Used by the admin API and by `corral registry`.

use std::collections::BTreeMap;

use crate::store::Tx;
use serde::Serialize;

use crate::files;
use crate::store::{self, Store};
use crate::wire::{ApiResult, FileJson, JobJson, NewJob, not_found};

/// Posts jobs in one transaction (all or none).
pub fn post_jobs(tx: &Tx<'_>, jobs: &[NewJob]) -> ApiResult<Vec<JobJson>> {
    jobs.iter().map(|job| crate::jobs::post(tx, job)).collect()
}

/// A job's files.
pub fn job_files(tx: &Tx<'_>, job_id: &str) -> ApiResult<Vec<FileJson>> {
    store::job(tx, job_id)?.ok_or_else(|| not_found(format!("no job {job_id}")))?;
    Ok(store::files_of(tx, job_id)?
        .iter()
        .map(store::FileRow::to_json)
        .collect())
}

/// A device from discovery, with its latest thumbnail.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJson {
    /// The device as the latest discovery file described it.
    #[serde(flatten)]
    pub device: serde_json::Value,
    /// The job that discovered it.
    pub discovered_by_job: String,
    /// The latest committed thumbnail's file id.
    pub thumbnail_file_id: Option<String>,
}

/// Devices from the committed discovery files (newest description wins).
pub fn devices(store: &Store, tx: &Tx<'_>) -> ApiResult<Vec<DeviceJson>> {
    let mut devices: BTreeMap<String, DeviceJson> = BTreeMap::new();
    for file in store::committed_files(tx, "discovery")? {
        let plaintext = files::decrypt(store, &file)?;
        let json: serde_json::Value = serde_json::from_slice(&plaintext).unwrap_or_default();
        for device in json
            .get("devices")
            .and_then(|list| list.as_array())
            .into_iter()
            .flatten()
        {
            let Some(id) = device.get("deviceId").and_then(|id| id.as_str()) else {
                continue;
            };
            devices.entry(id.to_string()).or_insert_with(|| DeviceJson {
                device: device.clone(),
                discovered_by_job: file.job_id.clone(),
                thumbnail_file_id: None,
            });
        }
    }
    for file in store::committed_files(tx, "thumbnail")? {
        let device_id = match &file.device_id {
            Some(id) => Some(id.clone()),
            None => store::job(tx, &file.job_id)?.and_then(|job| job.device_id),
        };
        if let Some(device) = device_id.and_then(|id| devices.get_mut(&id))
            && device.thumbnail_file_id.is_none()
        {
            device.thumbnail_file_id = Some(file.file_id.clone());
        }
    }
    Ok(devices.into_values().collect())
}

/// A committed file and its plaintext, decrypted on the blocking pool (the
/// console's downloads and thumbnails).
pub async fn file_content(store: &Store, file_id: String) -> ApiResult<(store::FileRow, Vec<u8>)> {
    let file = store
        .transaction(move |tx| files::committed(tx, &file_id))
        .await?;
    let (reader, row) = (store.clone(), file.clone());
    let plaintext = tokio::task::spawn_blocking(move || files::decrypt(&reader, &row))
        .await
        .map_err(|error| {
            crate::wire::ApiError::new(crate::wire::Code::Internal, error.to_string())
        })??;
    Ok((file, plaintext))
}

/// The schema of [`DeviceJson`]: the discovery file's device (at least its
/// `deviceId`) with the two fields the registry adds.
impl utoipa::PartialSchema for DeviceJson {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
        let text = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .description(Some(
                "A device as the latest discovery file described it, with the job that discovered it and its latest thumbnail",
            ))
            .property("deviceId", text())
            .required("deviceId")
            .property("discoveredByJob", text())
            .required("discoveredByJob")
            .property(
                "thumbnailFileId",
                ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])),
            )
            .required("thumbnailFileId")
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for DeviceJson {}
