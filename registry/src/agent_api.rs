//! The agent service's handlers (PROTOCOL.md) and the token endpoint; each
//! carries its OpenAPI description.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderMap;
use http::StatusCode;
use http::header::HOST;

use crate::store::rfc3339;
use crate::web::{AgentCaller, Block, FormBody, Ids, JsonBody, QueryOf, json_answer};
use crate::wire::{
    self, ApiError, ApiResult, CancelBody, Code, CompleteBody, CompleteFileBody, ErrorBody,
    InitializeAnswer, InitializeBody, JobJson, LockAnswer, LockBody, OAuthErrorBody, PollQuery,
    ProgressBody, ReleaseBody, RenewAnswer, RenewBody, TokenAnswer, TokenForm, bad,
};
use crate::{Registry, Store, auth, files, jobs};

/// Refuses a call for another agent than the token's.
fn same_agent(caller: &str, claimed: &str) -> ApiResult<()> {
    if caller != claimed {
        return Err(ApiError::new(
            Code::Forbidden,
            format!("this token belongs to agent {caller}, not {claimed}"),
        ));
    }
    Ok(())
}

/// Deletes blocks of files that can no longer be committed, off the request path.
fn sweep(store: &Store) {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(error) = files::sweep_abandoned(&store) {
            tracing::warn!("sweeping abandoned blocks failed: {error}");
        }
    });
}

/// OAuth2 token: jwt-bearer assertion (RS512) or client_credentials.
#[utoipa::path(post, path = "/connect/token", operation_id = "Token", tag = "token",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "a bearer token", body = TokenAnswer),
        (status = 400, description = "invalid_request, invalid_grant, unsupported_grant_type", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
    ),
    security(()))]
pub async fn token(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> ApiResult<Response> {
    let host = headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .map(|host| format!("http://{host}/connect/token"));
    let mut audiences = registry.audiences();
    audiences.extend(host);
    let lifetime = registry.config.token_lifetime;
    let answer = registry
        .store
        .transaction(move |tx| Ok(auth::token(tx, &form, &audiences, lifetime)))
        .await?;
    Ok(match answer {
        Ok(json) => json_answer(StatusCode::OK, json),
        Err(oauth) => oauth.into_response(),
    })
}

/// Available jobs of this agent, oldest first.
#[utoipa::path(get, path = "/agentservice/api/v1/agents/{agentId}/jobs", operation_id = "Poll",
    tag = "agent", params(("agentId" = String, Path, description = "the token's agent"), PollQuery),
    responses(
        (status = 200, description = "the jobs", body = Vec<JobJson>),
        (status = 403, description = "another agent's jobs", body = ErrorBody),
    ),
    security(("agentToken" = [])))]
pub async fn poll(
    State(registry): State<Arc<Registry>>,
    AgentCaller(agent): AgentCaller,
    ids: Ids,
    QueryOf(query): QueryOf<PollQuery>,
) -> ApiResult<Json<Vec<JobJson>>> {
    let agent_id = ids.one();
    same_agent(&agent, &agent_id)?;
    let types: Vec<String> = query
        .types
        .map(|types| {
            types
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(unknown) = types
        .iter()
        .find(|t| !wire::JOB_TYPES.contains(&t.as_str()))
    {
        return Err(bad(format!("unknown job type `{unknown}` in `type`")));
    }
    let max = query.max.unwrap_or(100);
    let list = registry
        .store
        .transaction(move |tx| jobs::available(tx, &agent_id, &types, max))
        .await?;
    Ok(Json(list))
}

/// Lock a job (idempotent per requestId).
#[utoipa::path(post, path = "/agentservice/api/v1/jobs/{jobId}/lock", operation_id = "Lock",
    tag = "agent", params(("jobId" = String, Path, description = "the job")), request_body = LockBody,
    responses(
        (status = 200, description = "locked", body = LockAnswer),
        (status = 403, description = "posted for another agent", body = ErrorBody),
        (status = 404, description = "unknown job", body = ErrorBody),
        (status = 409, description = "held by someone", body = ErrorBody),
        (status = 410, description = "completed or cancelled", body = ErrorBody),
    ),
    security(("agentToken" = [])))]
pub async fn lock(
    State(registry): State<Arc<Registry>>,
    AgentCaller(agent): AgentCaller,
    ids: Ids,
    JsonBody(body): JsonBody<LockBody>,
) -> ApiResult<Json<LockAnswer>> {
    same_agent(&agent, &body.agent_id)?;
    let job_id = ids.one();
    let cap = registry.config.max_lock_seconds;
    let (lock_token, expires) = registry
        .store
        .transaction(move |tx| {
            jobs::lock(
                tx,
                &job_id,
                &body.agent_id,
                body.lock_duration_seconds,
                body.request_id.as_deref(),
                cap,
            )
        })
        .await?;
    sweep(&registry.store);
    Ok(Json(LockAnswer {
        lock_token,
        lock_expiration_utc: rfc3339(expires),
    }))
}

/// Report taskProgress / taskTotal.
#[utoipa::path(put, path = "/agentservice/api/v1/jobs/{jobId}/progress", operation_id = "Progress",
    tag = "agent", params(("jobId" = String, Path, description = "the job")), request_body = ProgressBody,
    responses(
        (status = 204, description = "recorded"),
        (status = 400, description = "out of range", body = ErrorBody),
        (status = 409, description = "lock not held", body = ErrorBody),
    ),
    security(("agentToken" = [])))]
pub async fn progress(
    State(registry): State<Arc<Registry>>,
    _: AgentCaller,
    ids: Ids,
    JsonBody(body): JsonBody<ProgressBody>,
) -> ApiResult<StatusCode> {
    let job_id = ids.one();
    registry
        .store
        .transaction(move |tx| {
            jobs::progress(
                tx,
                &job_id,
                &body.lock_token,
                body.task_progress,
                body.task_total,
            )
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Extend the lock.
#[utoipa::path(post, path = "/agentservice/api/v1/jobs/{jobId}/renew", operation_id = "Renew",
    tag = "agent", params(("jobId" = String, Path, description = "the job")), request_body = RenewBody,
    responses(
        (status = 200, description = "renewed", body = RenewAnswer),
        (status = 409, description = "lock lost", body = ErrorBody),
    ),
    security(("agentToken" = [])))]
pub async fn renew(
    State(registry): State<Arc<Registry>>,
    _: AgentCaller,
    ids: Ids,
    JsonBody(body): JsonBody<RenewBody>,
) -> ApiResult<Json<RenewAnswer>> {
    let job_id = ids.one();
    let cap = registry.config.max_lock_seconds;
    let expires = registry
        .store
        .transaction(move |tx| {
            jobs::renew(
                tx,
                &job_id,
                &body.lock_token,
                body.lock_duration_seconds,
                cap,
            )
        })
        .await?;
    Ok(Json(RenewAnswer {
        lock_expiration_utc: rfc3339(expires),
    }))
}

/// Complete as Completed, PartiallyCompleted or Failed.
#[utoipa::path(post, path = "/agentservice/api/v1/jobs/{jobId}/complete", operation_id = "Complete",
    tag = "agent", params(("jobId" = String, Path, description = "the job")), request_body = CompleteBody,
    responses(
        (status = 204, description = "completed"),
        (status = 400, description = "bad state or an uncommitted file", body = ErrorBody),
        (status = 409, description = "lock lost", body = ErrorBody),
    ),
    security(("agentToken" = [])))]
pub async fn complete(
    State(registry): State<Arc<Registry>>,
    _: AgentCaller,
    ids: Ids,
    JsonBody(body): JsonBody<CompleteBody>,
) -> ApiResult<StatusCode> {
    let job_id = ids.one();
    let id = job_id.clone();
    let store = &registry.store;
    let completed = store
        .transaction(move |tx| {
            jobs::complete(
                tx,
                &id,
                &body.lock_token,
                &body.state,
                body.message.as_deref(),
            )
        })
        .await;
    if let Err(refusal) = completed {
        store
            .transaction(move |tx| jobs::note_refused_complete(tx, &job_id))
            .await?;
        return Err(refusal);
    }
    sweep(store);
    Ok(StatusCode::NO_CONTENT)
}

/// Cancel: never offered again.
#[utoipa::path(post, path = "/agentservice/api/v1/jobs/{jobId}/cancel", operation_id = "Cancel",
    tag = "agent", params(("jobId" = String, Path, description = "the job")), request_body = CancelBody,
    responses(
        (status = 204, description = "cancelled"),
        (status = 400, description = "no reason", body = ErrorBody),
        (status = 409, description = "lock lost", body = ErrorBody),
    ),
    security(("agentToken" = [])))]
pub async fn cancel(
    State(registry): State<Arc<Registry>>,
    _: AgentCaller,
    ids: Ids,
    JsonBody(body): JsonBody<CancelBody>,
) -> ApiResult<StatusCode> {
    let job_id = ids.one();
    registry
        .store
        .transaction(move |tx| jobs::cancel(tx, &job_id, &body.lock_token, &body.reason))
        .await?;
    sweep(&registry.store);
    Ok(StatusCode::NO_CONTENT)
}

/// Release: available again.
#[utoipa::path(post, path = "/agentservice/api/v1/jobs/{jobId}/release", operation_id = "Release",
    tag = "agent", params(("jobId" = String, Path, description = "the job")), request_body = ReleaseBody,
    responses(
        (status = 204, description = "released"),
        (status = 409, description = "lock lost", body = ErrorBody),
    ),
    security(("agentToken" = [])))]
pub async fn release(
    State(registry): State<Arc<Registry>>,
    _: AgentCaller,
    ids: Ids,
    JsonBody(body): JsonBody<ReleaseBody>,
) -> ApiResult<StatusCode> {
    let job_id = ids.one();
    registry
        .store
        .transaction(move |tx| jobs::release(tx, &job_id, &body.lock_token))
        .await?;
    sweep(&registry.store);
    Ok(StatusCode::NO_CONTENT)
}

/// InitializeMediaUpload / InitializeThumbnailUpload / InitializeDiscoveryUpload.
#[utoipa::path(post, path = "/agentservice/api/v1/jobs/{jobId}/files/{kind}",
    operation_id = "Initialize", tag = "agent",
    params(("jobId" = String, Path, description = "the job"),
           ("kind" = String, Path, description = "media, thumbnail or discovery")),
    request_body = InitializeBody,
    responses(
        (status = 200, description = "a new file", body = InitializeAnswer),
        (status = 400, description = "kind does not match the job", body = ErrorBody),
        (status = 409, description = "lock not held", body = ErrorBody),
    ),
    security(("agentToken" = [])))]
pub async fn initialize(
    State(registry): State<Arc<Registry>>,
    _: AgentCaller,
    ids: Ids,
    JsonBody(body): JsonBody<InitializeBody>,
) -> ApiResult<Json<InitializeAnswer>> {
    let (job_id, kind) = ids.two();
    let file_id = jobs::new_job_id();
    let keys = registry.keys.take(&format!("kek-{file_id}"))?;
    let id = file_id.clone();
    let json_web_key = registry
        .store
        .transaction(move |tx| files::initialize(tx, &job_id, &kind, &body, &id, keys.clone()))
        .await?;
    Ok(Json(InitializeAnswer {
        file_id,
        json_web_key,
    }))
}

/// Upload (or replace) an encrypted block.
#[utoipa::path(put, path = "/agentservice/api/v1/files/{fileId}/blocks/{blockId}",
    operation_id = "PutBlock", tag = "agent",
    params(("fileId" = String, Path, description = "the file"),
           ("blockId" = String, Path, description = "base64 block id")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the encrypted block, at most 4 MiB + 28 bytes"),
    responses(
        (status = 201, description = "stored"),
        (status = 400, description = "bad block id", body = ErrorBody),
        (status = 404, description = "unknown file", body = ErrorBody),
        (status = 409, description = "lock gone", body = ErrorBody),
        (status = 413, description = "too large", body = ErrorBody),
    ),
    security(("agentToken" = [])))]
pub async fn put_block(
    State(registry): State<Arc<Registry>>,
    _: AgentCaller,
    ids: Ids,
    Block(block): Block,
) -> ApiResult<StatusCode> {
    let (file_id, block_id) = ids.two();
    let store = &registry.store;
    let length = block.iter().map(Bytes::len).sum();
    let id = file_id.clone();
    let block_id = store
        .transaction(move |tx| files::check_block(tx, &id, &block_id, length))
        .await?;
    let writer = store.clone();
    tokio::task::spawn_blocking(move || files::write_block(&writer, &file_id, &block_id, &block))
        .await
        .map_err(|error| ApiError::new(Code::Internal, error.to_string()))??;
    Ok(StatusCode::CREATED)
}

/// Commit the ordered block list with its EncryptionData; every block is
/// decrypted and checked.
#[utoipa::path(post, path = "/agentservice/api/v1/files/{fileId}/complete",
    operation_id = "CompleteFile", tag = "agent",
    params(("fileId" = String, Path, description = "the file")), request_body = CompleteFileBody,
    responses(
        (status = 204, description = "committed"),
        (status = 400, description = "missing block, bad metadata, a block that does not decrypt, wrong length", body = ErrorBody),
        (status = 409, description = "lock lost or committed differently", body = ErrorBody),
    ),
    security(("agentToken" = [])))]
pub async fn complete_file(
    State(registry): State<Arc<Registry>>,
    _: AgentCaller,
    ids: Ids,
    JsonBody(body): JsonBody<CompleteFileBody>,
) -> ApiResult<StatusCode> {
    let file_id = ids.one();
    let store = &registry.store;
    let committed = commit_file(store, file_id.clone(), body).await;
    if let Err(refusal) = &committed {
        let code = refusal.code;
        store
            .transaction(move |tx| files::note_refused_commit(tx, &file_id, code))
            .await?;
    }
    committed
}

/// Complete file: plan (database), verify every block (no database), record.
async fn commit_file(
    store: &Store,
    file_id: String,
    body: CompleteFileBody,
) -> ApiResult<StatusCode> {
    let store = store.clone();
    let body = Arc::new(body);
    let (plan_body, plan_id) = (body.clone(), file_id.clone());
    let plan = store
        .transaction(move |tx| files::plan_commit(tx, &plan_id, &plan_body))
        .await?;
    if plan.already {
        return Ok(StatusCode::NO_CONTENT);
    }
    let plan = Arc::new(plan);
    let (verifier, verify_plan, length) = (store.clone(), plan.clone(), body.content_length);
    let verified =
        tokio::task::spawn_blocking(move || files::verify(&verifier, &verify_plan, length))
            .await
            .map_err(|error| ApiError::new(Code::Internal, error.to_string()))??;
    let block_ids = body.block_ids.clone();
    let recorded = store
        .transaction(move |tx| files::record_commit(tx, &plan, &body, &verified))
        .await;
    if let Err(refusal) = recorded {
        if refusal.code != Code::Conflict {
            return Err(refusal);
        }
        let (discarder, id) = (store.clone(), file_id.clone());
        let _ =
            tokio::task::spawn_blocking(move || files::discard_unrecorded(&discarder, &id)).await;
        return Err(refusal);
    }
    let pruner = store.clone();
    let _ = tokio::task::spawn_blocking(move || files::prune_blocks(&pruner, &file_id, &block_ids))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
