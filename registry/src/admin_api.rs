//! The admin API's handlers (the admin token), each with its OpenAPI
//! description: jobs, files, devices, fault switches and counters.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde::Serialize;
use utoipa::ToSchema;

use crate::admin::{self, DeviceJson};
use crate::faults::{FaultCounts, FaultRates};
use crate::store::{self, Counter};
use crate::web::{AdminCaller, Ids, JsonBody, QueryOf};
use crate::wire::{ApiResult, ErrorBody, FileJson, JobJson, JobsQuery, NewJob, bad};
use crate::{Registry, jobs};

/// The fault switches and what they injected.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaultsJson {
    /// The shares in force.
    pub rates: FaultRates,
    /// Faults injected since the registry started.
    pub counts: FaultCounts,
}

/// What the registry counted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsJson {
    /// Completes repeated after a job was done.
    pub double_completes: u64,
    /// File commits refused.
    pub refused_commits: u64,
    /// File commits after the lock was gone.
    pub late_commits: u64,
    /// Locks that ran out.
    pub expired_locks: u64,
    /// Faults injected since the registry started.
    pub faults: FaultCounts,
}

/// One job or an array of jobs (the schema of the body, which is read as
/// JSON first so that a bad job is named).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum NewJobs {
    /// Several jobs, posted all or none.
    Many(Vec<NewJob>),
    /// One job.
    One(NewJob),
}

/// Post one job or an array of jobs.
#[utoipa::path(post, path = "/admin/api/v1/jobs", operation_id = "AdminPostJobs", tag = "admin",
    request_body = NewJobs,
    responses(
        (status = 201, description = "the posted jobs", body = Vec<JobJson>),
        (status = 400, description = "invalid job", body = ErrorBody),
    ),
    security(("adminToken" = [])))]
pub async fn post_jobs(
    State(registry): State<Arc<Registry>>,
    _: AdminCaller,
    JsonBody(value): JsonBody<serde_json::Value>,
) -> ApiResult<(StatusCode, Json<Vec<JobJson>>)> {
    let list: Vec<NewJob> = match value {
        serde_json::Value::Array(_) => serde_json::from_value(value),
        other => serde_json::from_value(other).map(|job| vec![job]),
    }
    .map_err(|error| bad(format!("not a job: {error}")))?;
    let posted = registry
        .store
        .transaction(move |tx| admin::post_jobs(tx, &list))
        .await?;
    Ok((StatusCode::CREATED, Json(posted)))
}

/// List jobs with state, progress and files.
#[utoipa::path(get, path = "/admin/api/v1/jobs", operation_id = "AdminJobs", tag = "admin",
    params(JobsQuery),
    responses((status = 200, description = "the jobs with their files", body = Vec<JobJson>)),
    security(("adminToken" = [])))]
pub async fn list_jobs(
    State(registry): State<Arc<Registry>>,
    _: AdminCaller,
    QueryOf(query): QueryOf<JobsQuery>,
) -> ApiResult<Json<Vec<JobJson>>> {
    let list = registry
        .store
        .transaction(move |tx| jobs::list(tx, query.state.as_deref(), query.agent.as_deref()))
        .await?;
    Ok(Json(list))
}

/// A job's files.
#[utoipa::path(get, path = "/admin/api/v1/jobs/{jobId}/files", operation_id = "AdminJobFiles",
    tag = "admin", params(("jobId" = String, Path, description = "the job")),
    responses(
        (status = 200, description = "the files", body = Vec<FileJson>),
        (status = 404, description = "unknown job", body = ErrorBody),
    ),
    security(("adminToken" = [])))]
pub async fn job_files(
    State(registry): State<Arc<Registry>>,
    _: AdminCaller,
    ids: Ids,
) -> ApiResult<Json<Vec<FileJson>>> {
    let job_id = ids.one();
    let list = registry
        .store
        .transaction(move |tx| admin::job_files(tx, &job_id))
        .await?;
    Ok(Json(list))
}

/// A committed file, decrypted.
#[utoipa::path(get, path = "/admin/api/v1/files/{fileId}/content",
    operation_id = "AdminFileContent", tag = "admin",
    params(("fileId" = String, Path, description = "the file")),
    responses(
        (status = 200, description = "the plaintext, with its content type",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "unknown or uncommitted file", body = ErrorBody),
    ),
    security(("adminToken" = [])))]
pub async fn file_content(
    State(registry): State<Arc<Registry>>,
    _: AdminCaller,
    ids: Ids,
) -> ApiResult<Response> {
    let (file, plaintext) = admin::file_content(&registry.store, ids.one()).await?;
    let mut answer = plaintext.into_response();
    if let Ok(value) = file.content_type.parse() {
        answer.headers_mut().insert(CONTENT_TYPE, value);
    }
    Ok(answer)
}

/// Devices learned from discovery results, with their latest thumbnail.
#[utoipa::path(get, path = "/admin/api/v1/devices", operation_id = "AdminDevices", tag = "admin",
    responses((status = 200, description = "the devices", body = Vec<DeviceJson>)),
    security(("adminToken" = [])))]
pub async fn devices(
    State(registry): State<Arc<Registry>>,
    _: AdminCaller,
) -> ApiResult<Json<Vec<DeviceJson>>> {
    let reader = registry.store.clone();
    let list = registry
        .store
        .transaction(move |tx| admin::devices(&reader, tx))
        .await?;
    Ok(Json(list))
}

fn faults_json(registry: &Registry) -> Json<FaultsJson> {
    Json(FaultsJson {
        rates: registry.faults().rates(),
        counts: registry.faults().counts(),
    })
}

/// The fault injection rates and what was injected so far.
#[utoipa::path(get, path = "/admin/api/v1/faults", operation_id = "AdminFaults", tag = "admin",
    responses((status = 200, description = "rates and counts", body = FaultsJson)),
    security(("adminToken" = [])))]
pub async fn faults(State(registry): State<Arc<Registry>>, _: AdminCaller) -> Json<FaultsJson> {
    faults_json(&registry)
}

/// Sets the shares of agent-service and token calls refused (5xx, 429),
/// dropped before the call, or whose answer is lost after it (all 0: no faults).
#[utoipa::path(put, path = "/admin/api/v1/faults", operation_id = "AdminSetFaults", tag = "admin",
    request_body = FaultRates,
    responses(
        (status = 200, description = "the same as GET", body = FaultsJson),
        (status = 400, description = "shares out of range", body = ErrorBody),
    ),
    security(("adminToken" = [])))]
pub async fn set_faults(
    State(registry): State<Arc<Registry>>,
    _: AdminCaller,
    JsonBody(rates): JsonBody<FaultRates>,
) -> ApiResult<Json<FaultsJson>> {
    let shares = [rates.fail, rates.drop, rates.lose];
    if shares.iter().any(|share| !(0.0..=1.0).contains(share))
        || shares.iter().sum::<f64>() > 1.0 + 1e-9
    {
        return Err(bad(
            "fail, drop and lose are shares from 0 to 1, adding up to at most 1",
        ));
    }
    registry.faults().set(rates);
    Ok(faults_json(&registry))
}

/// What the registry counted across restarts, and the faults injected since
/// it started.
#[utoipa::path(get, path = "/admin/api/v1/stats", operation_id = "AdminStats", tag = "admin",
    responses((status = 200, description = "the counters", body = StatsJson)),
    security(("adminToken" = [])))]
pub async fn stats(
    State(registry): State<Arc<Registry>>,
    _: AdminCaller,
) -> ApiResult<Json<StatsJson>> {
    let counts = registry
        .store
        .transaction(|tx| {
            Ok([
                store::count(tx, Counter::DoubleCompletes)?,
                store::count(tx, Counter::RefusedCommits)?,
                store::count(tx, Counter::LateCommits)?,
                store::count(tx, Counter::ExpiredLocks)?,
            ])
        })
        .await?;
    Ok(Json(StatsJson {
        double_completes: counts[0],
        refused_commits: counts[1],
        late_commits: counts[2],
        expired_locks: counts[3],
        faults: registry.faults().counts(),
    }))
}
