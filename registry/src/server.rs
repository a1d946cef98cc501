//! The HTTP server: routing by the route table, authentication, body limits,
//! content types, and one `{error, message}` answer for every refusal. No
//! input makes it panic: every handler returns a `Result`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::faults::{Fault, FaultRates};
use crate::routes::{self, Caller, Endpoint, Route};
use crate::store::rfc3339;
use crate::store::{self, Counter};
use crate::wire::{self, ApiError, ApiResult, Code, bad};
use crate::{Registry, admin, auth, files, jobs};

/// Largest JSON body.
const MAX_JSON: usize = 1 << 20;

type Answer = Response<Full<Bytes>>;

/// Accepts connections until the task is dropped.
pub async fn serve(registry: Arc<Registry>, listener: TcpListener) {
    let console = crate::console::router(registry.clone());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let (registry, console) = (registry.clone(), console.clone());
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let (registry, console) = (registry.clone(), console.clone());
                async move { handle(&registry, console, request).await }
            });
            let _ = http1::Builder::new()
                .max_buf_size(corral_envelope::MAX_BLOCK_LEN + (64 << 10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The listen address a server was started on, for `aud` and URLs.
pub fn own_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

async fn handle(
    registry: &Registry,
    console: axum::Router,
    request: Request<Incoming>,
) -> Result<Answer, std::io::Error> {
    // The operator console (pages for people) never gets injected faults.
    if crate::console::serves(request.uri().path()) {
        return console_answer(console, request).await;
    }
    // Faults hit agent-service calls and the token endpoint, never the admin
    // API (a chaos run must be able to switch them off).
    let endpoint = routes::find(request.method().as_str(), request.uri().path())
        .ok()
        .map(|(route, _)| route)
        .filter(|route| route.caller != Caller::Admin && route.endpoint != Endpoint::OpenApi)
        .map(|route| route.endpoint);
    let fault = endpoint.and_then(|endpoint| registry.faults().roll(endpoint));
    match fault {
        Some(Fault::Refuse {
            status,
            retry_after,
        }) => return Ok(injected_refusal(endpoint, status, retry_after)),
        Some(Fault::Drop) => {
            // Nothing was done; the connection closes without an answer.
            return Err(std::io::Error::other("injected fault: connection dropped"));
        }
        Some(Fault::Lose) | None => {}
    }
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let answer = match dispatch(registry, request).await {
        Ok(answer) => answer,
        Err(refusal) => error(&refusal),
    };
    tracing::debug!(
        "{method} {path} {} {:?}",
        answer.status().as_u16(),
        started.elapsed()
    );
    if fault == Some(Fault::Lose) {
        // The work is done; the answer is lost, as on a dropped connection.
        return Err(std::io::Error::other("injected fault: answer lost"));
    }
    Ok(answer)
}

/// The console router's answer, its body collected.
async fn console_answer(
    console: axum::Router,
    request: Request<Incoming>,
) -> Result<Answer, std::io::Error> {
    use tower::ServiceExt;
    let answer = console
        .oneshot(request.map(axum::body::Body::new))
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = answer.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(std::io::Error::other)?;
    Ok(Response::from_parts(parts, Full::new(bytes)))
}

/// An injected 5xx or 429, in the form the endpoint answers errors in.
fn injected_refusal(endpoint: Option<Endpoint>, status: u16, retry_after: Option<u64>) -> Answer {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = if endpoint == Some(Endpoint::Token) {
        let code = if status == StatusCode::TOO_MANY_REQUESTS {
            "temporarily_unavailable"
        } else {
            "server_error"
        };
        serde_json::json!({ "error": code, "error_description": "injected fault" })
    } else {
        let code = match status {
            StatusCode::TOO_MANY_REQUESTS => Code::TooManyRequests,
            StatusCode::INTERNAL_SERVER_ERROR => Code::Internal,
            _ => Code::Unavailable,
        };
        serde_json::json!({ "error": code.name(), "message": "injected fault" })
    };
    let mut answer = json_answer(status, body.to_string());
    if let Some(seconds) = retry_after
        && let Ok(value) = seconds.to_string().parse()
    {
        answer.headers_mut().insert(RETRY_AFTER, value);
    }
    answer
}

fn error(refusal: &ApiError) -> Answer {
    let status =
        StatusCode::from_u16(refusal.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if refusal.code == Code::Internal {
        tracing::error!("registry error: {}", refusal.message);
    }
    json_answer(status, refusal.body())
}

fn json_answer(status: StatusCode, body: String) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("static header"),
    );
    answer
}

fn empty(status: StatusCode) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = status;
    answer
}

fn bearer(request: &Request<Incoming>) -> Option<String> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

/// Reads a body of at most `limit` bytes.
async fn body(request: Request<Incoming>, limit: usize) -> ApiResult<Bytes> {
    Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                ApiError::new(Code::TooLarge, format!("the body is over {limit} bytes"))
            } else {
                bad(format!("the body could not be read: {error}"))
            }
        })
}

/// Reads a body of at most `limit` bytes as the frames it came in (no copy).
async fn frames(request: Request<Incoming>, limit: usize) -> ApiResult<Vec<Bytes>> {
    let mut body = request.into_body();
    let mut frames = Vec::new();
    let mut length = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| bad(format!("the body could not be read: {error}")))?;
        if let Ok(data) = frame.into_data() {
            length += data.len();
            if length > limit {
                return Err(ApiError::new(
                    Code::TooLarge,
                    format!("the body is over {limit} bytes"),
                ));
            }
            frames.push(data);
        }
    }
    Ok(frames)
}

/// Reads and parses a JSON body, refusing other content types.
async fn json_body<T: serde::de::DeserializeOwned>(request: Request<Incoming>) -> ApiResult<T> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            format!("a JSON body needs Content-Type application/json, not `{content_type}`"),
        ));
    }
    let bytes = body(request, MAX_JSON).await?;
    serde_json::from_slice(&bytes)
        .map_err(|error| bad(format!("the JSON body is not valid: {error}")))
}

fn query(request: &Request<Incoming>, name: &str) -> Option<String> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            urlencoding::decode(value)
                .map(|value| value.into_owned())
                .unwrap_or_default()
        })
    })
}

async fn dispatch(registry: &Registry, request: Request<Incoming>) -> ApiResult<Answer> {
    let path = request.uri().path().to_string();
    let (route, params) = routes::find(request.method().as_str(), &path)?;
    let agent = match route.caller {
        Caller::Anyone => None,
        Caller::Agent => {
            let token = bearer(&request)
                .ok_or_else(|| ApiError::new(Code::Unauthorized, "a bearer token is required"))?;
            Some(
                registry
                    .store
                    .transaction(move |tx| auth::authenticate(tx, &token))
                    .await?,
            )
        }
        Caller::Admin => {
            if bearer(&request).as_deref() != Some(registry.admin_token()) {
                return Err(ApiError::new(
                    Code::Unauthorized,
                    "the admin token is required",
                ));
            }
            None
        }
    };
    // Ids the registry makes are plain; block ids are base64 and agent ids
    // are checked against the token instead.
    let plain_ids = match route.endpoint {
        Endpoint::Poll => &params[..0],
        Endpoint::PutBlock => &params[..1],
        _ => &params[..],
    };
    for value in plain_ids {
        files::check_id("id", value)?;
    }
    agent_or_admin(registry, route, params, agent.unwrap_or_default(), request).await
}

/// Deletes blocks of files that can no longer be committed, off the request path.
fn sweep(store: &crate::Store) {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(error) = files::sweep_abandoned(&store) {
            tracing::warn!("sweeping abandoned blocks failed: {error}");
        }
    });
}

async fn agent_or_admin(
    registry: &Registry,
    route: &Route,
    params: Vec<String>,
    agent: String,
    request: Request<Incoming>,
) -> ApiResult<Answer> {
    let store = registry.store.clone();
    let config = registry.config.clone();
    let param = |index: usize| params.get(index).cloned().unwrap_or_default();
    match route.endpoint {
        Endpoint::OpenApi => Ok(json_answer(StatusCode::OK, routes::openapi().to_string())),
        Endpoint::Token => {
            let host = request
                .headers()
                .get(HOST)
                .and_then(|value| value.to_str().ok())
                .map(|host| format!("http://{host}/connect/token"));
            let bytes = body(request, MAX_JSON).await?;
            let form: Vec<(String, String)> = String::from_utf8_lossy(&bytes)
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(key, value)| {
                    let decode = |text: &str| {
                        urlencoding::decode(&text.replace('+', " "))
                            .map(|text| text.into_owned())
                            .unwrap_or_default()
                    };
                    (decode(key), decode(value))
                })
                .collect();
            let mut audiences = registry.audiences();
            audiences.extend(host);
            let lifetime = config.token_lifetime;
            let answer = registry
                .store
                .transaction(move |tx| Ok(auth::token(tx, &form, &audiences, lifetime)))
                .await?;
            Ok(match answer {
                Ok(json) => json_answer(StatusCode::OK, json),
                Err(oauth) => json_answer(
                    StatusCode::from_u16(oauth.status).unwrap_or(StatusCode::BAD_REQUEST),
                    oauth.body(),
                ),
            })
        }
        Endpoint::Poll => {
            let agent_id = param(0);
            if agent_id != agent {
                return Err(ApiError::new(
                    Code::Forbidden,
                    format!("this token belongs to agent {agent}, not {agent_id}"),
                ));
            }
            let types: Vec<String> = query(&request, "type")
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
            let max = match query(&request, "max") {
                Some(max) => max
                    .parse::<usize>()
                    .map_err(|_| bad(format!("max `{max}` is not a number")))?,
                None => 100,
            };
            let list = store
                .transaction(move |tx| jobs::available(tx, &agent_id, &types, max))
                .await?;
            Ok(json_answer(
                StatusCode::OK,
                serde_json::to_string(&list).unwrap_or_default(),
            ))
        }
        Endpoint::Lock => {
            let body: wire::LockBody = json_body(request).await?;
            if body.agent_id != agent {
                return Err(ApiError::new(
                    Code::Forbidden,
                    format!("this token belongs to agent {agent}, not {}", body.agent_id),
                ));
            }
            let job_id = param(0);
            let cap = config.max_lock_seconds;
            let (token, expires) = store
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
            sweep(&store);
            let json =
                serde_json::json!({ "lockToken": token, "lockExpirationUtc": rfc3339(expires) });
            Ok(json_answer(StatusCode::OK, json.to_string()))
        }
        Endpoint::Progress => {
            let body: wire::ProgressBody = json_body(request).await?;
            let job_id = param(0);
            store
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
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Endpoint::Renew => {
            let body: wire::RenewBody = json_body(request).await?;
            let job_id = param(0);
            let cap = config.max_lock_seconds;
            let expires = store
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
            Ok(json_answer(
                StatusCode::OK,
                serde_json::json!({ "lockExpirationUtc": rfc3339(expires) }).to_string(),
            ))
        }
        Endpoint::Complete => {
            let body: wire::CompleteBody = json_body(request).await?;
            let job_id = param(0);
            let id = job_id.clone();
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
            sweep(&store);
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Endpoint::Cancel => {
            let body: wire::CancelBody = json_body(request).await?;
            let job_id = param(0);
            store
                .transaction(move |tx| jobs::cancel(tx, &job_id, &body.lock_token, &body.reason))
                .await?;
            sweep(&store);
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Endpoint::Release => {
            let body: wire::ReleaseBody = json_body(request).await?;
            let job_id = param(0);
            store
                .transaction(move |tx| jobs::release(tx, &job_id, &body.lock_token))
                .await?;
            sweep(&store);
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Endpoint::Initialize => {
            let body: wire::InitializeBody = json_body(request).await?;
            let (job_id, kind) = (param(0), param(1));
            let file_id = jobs::new_job_id();
            let keys = registry.keys.take(&format!("kek-{file_id}"))?;
            let id = file_id.clone();
            let jwk = store
                .transaction(move |tx| {
                    files::initialize(tx, &job_id, &kind, &body, &id, keys.clone())
                })
                .await?;
            Ok(json_answer(
                StatusCode::OK,
                serde_json::json!({ "fileId": file_id, "jsonWebKey": jwk }).to_string(),
            ))
        }
        Endpoint::PutBlock => {
            let (file_id, block_id) = (param(0), param(1));
            let block = frames(request, corral_envelope::MAX_BLOCK_LEN).await?;
            let length = block.iter().map(Bytes::len).sum();
            let id = file_id.clone();
            let block_id = store
                .transaction(move |tx| files::check_block(tx, &id, &block_id, length))
                .await?;
            let writer = store.clone();
            tokio::task::spawn_blocking(move || {
                files::write_block(&writer, &file_id, &block_id, &block)
            })
            .await
            .map_err(|error| ApiError::new(Code::Internal, error.to_string()))??;
            Ok(empty(StatusCode::CREATED))
        }
        Endpoint::CompleteFile => {
            let file_id = param(0);
            let committed = commit_file(&store, file_id.clone(), request).await;
            if let Err(refusal) = &committed {
                let code = refusal.code;
                store
                    .transaction(move |tx| files::note_refused_commit(tx, &file_id, code))
                    .await?;
            }
            committed
        }
        Endpoint::AdminFaults => Ok(faults_answer(registry)),
        Endpoint::AdminSetFaults => {
            let rates: FaultRates = json_body(request).await?;
            let shares = [rates.fail, rates.drop, rates.lose];
            if shares.iter().any(|share| !(0.0..=1.0).contains(share))
                || shares.iter().sum::<f64>() > 1.0 + 1e-9
            {
                return Err(bad(
                    "fail, drop and lose are shares from 0 to 1, adding up to at most 1",
                ));
            }
            registry.faults().set(rates);
            Ok(faults_answer(registry))
        }
        Endpoint::AdminStats => {
            let counts = store
                .transaction(|tx| {
                    Ok([
                        store::count(tx, Counter::DoubleCompletes)?,
                        store::count(tx, Counter::RefusedCommits)?,
                        store::count(tx, Counter::LateCommits)?,
                        store::count(tx, Counter::ExpiredLocks)?,
                    ])
                })
                .await?;
            let json = serde_json::json!({
                "doubleCompletes": counts[0],
                "refusedCommits": counts[1],
                "lateCommits": counts[2],
                "expiredLocks": counts[3],
                "faults": registry.faults().counts(),
            });
            Ok(json_answer(StatusCode::OK, json.to_string()))
        }
        Endpoint::AdminPostJobs => {
            let value: serde_json::Value = json_body(request).await?;
            let list: Vec<wire::NewJob> = match value {
                serde_json::Value::Array(_) => serde_json::from_value(value),
                other => serde_json::from_value(other).map(|job| vec![job]),
            }
            .map_err(|error| bad(format!("not a job: {error}")))?;
            let posted = store
                .transaction(move |tx| admin::post_jobs(tx, &list))
                .await?;
            Ok(json_answer(
                StatusCode::CREATED,
                serde_json::to_string(&posted).unwrap_or_default(),
            ))
        }
        Endpoint::AdminJobs => {
            let (state, agent_filter) = (query(&request, "state"), query(&request, "agent"));
            let list = store
                .transaction(move |tx| jobs::list(tx, state.as_deref(), agent_filter.as_deref()))
                .await?;
            Ok(json_answer(
                StatusCode::OK,
                serde_json::to_string(&list).unwrap_or_default(),
            ))
        }
        Endpoint::AdminJobFiles => {
            let job_id = param(0);
            let list = store
                .transaction(move |tx| admin::job_files(tx, &job_id))
                .await?;
            Ok(json_answer(
                StatusCode::OK,
                serde_json::to_string(&list).unwrap_or_default(),
            ))
        }
        Endpoint::AdminFileContent => {
            let file_id = param(0);
            let file = store
                .transaction(move |tx| files::committed(tx, &file_id))
                .await?;
            let reader = store.clone();
            let content_type = file.content_type.clone();
            let plaintext = tokio::task::spawn_blocking(move || files::decrypt(&reader, &file))
                .await
                .map_err(|error| ApiError::new(Code::Internal, error.to_string()))??;
            let mut answer = Response::new(Full::new(Bytes::from(plaintext)));
            if let Ok(value) = content_type.parse() {
                answer.headers_mut().insert(CONTENT_TYPE, value);
            }
            Ok(answer)
        }
        Endpoint::AdminDevices => {
            let reader = store.clone();
            let list = store
                .transaction(move |tx| admin::devices(&reader, tx))
                .await?;
            Ok(json_answer(
                StatusCode::OK,
                serde_json::to_string(&list).unwrap_or_default(),
            ))
        }
    }
}

/// Complete file: plan (database), verify every block (no database), record.
async fn commit_file(
    store: &crate::Store,
    file_id: String,
    request: Request<Incoming>,
) -> ApiResult<Answer> {
    let store = store.clone();
    let body: wire::CompleteFileBody = json_body(request).await?;
    let body = Arc::new(body);
    let (plan_body, plan_id) = (body.clone(), file_id.clone());
    let plan = store
        .transaction(move |tx| files::plan_commit(tx, &plan_id, &plan_body))
        .await?;
    if plan.already {
        return Ok(empty(StatusCode::NO_CONTENT));
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
    Ok(empty(StatusCode::NO_CONTENT))
}

fn faults_answer(registry: &Registry) -> Answer {
    let json = serde_json::json!({
        "rates": registry.faults().rates(),
        "counts": registry.faults().counts(),
    });
    json_answer(StatusCode::OK, json.to_string())
}
