//! The registry client: authentication and every call of PROTOCOL.md, each
//! retried on a transient failure, as PROTOCOL.md makes every one safe to repeat
//! ("Retries and idempotency": a lost Initialize answer leaves an orphan file
//! that `complete` discards).
//!
//! - [`connection`]: the Clearance connection file;
//! - [`auth`]: bearer tokens (JWT-bearer assertion or client credentials);
//! - [`http`]: HTTP(S) with timeouts, answers sorted into [`RegistryError`];
//! - [`retry`]: capped exponential backoff with jitter inside a deadline;
//! - [`RegistryClient`]: the typed calls; [`JobUploads`]: the upload calls of
//!   one locked job as the pipeline's [`BlockTransport`](crate::upload::BlockTransport).
//!
//! Paths and JSON names come from [`crate::protocol`], nowhere else.

pub mod auth;
pub mod connection;
mod error;
pub mod faults;
pub mod health;
pub mod http;
pub mod nodes;
pub mod retry;
pub mod uploads;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ::http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use ::http::{Method, Request};
use bytes::Bytes;
use http_body_util::Full;

use self::auth::{Credentials, TokenSource};
use self::connection::ConnectionFile;
pub use self::error::RegistryError;
pub use self::faults::JobFaults;
use self::health::RegistryHealth;
use self::http::{HttpClient, Wait};
use self::nodes::Nodes;
use self::retry::RetryPolicy;
pub use self::uploads::JobUploads;
use crate::protocol::{
    self, CancelRequest, CompleteFile, CompleteRequest, CompletionState, FileKind,
    InitializeUpload, InitializedFile, Job, JobCall, JobType, LockGranted, LockRequest,
    ProgressRequest, ReleaseRequest, RenewRequest, Renewed,
};

const JSON: &str = "application/json";
const OCTETS: &str = "application/octet-stream";

/// A random UUID (version 4) in its 8-4-4-4-12 text form.
pub fn uuid_v4() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = crate::sink::hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// One entry of a poll.
#[derive(Debug, Clone)]
pub enum Polled {
    /// A job the agent can run.
    Job(Job),
    /// A job of a type this agent does not know (a newer registry's): left
    /// alone for an agent that does.
    Foreign {
        /// The job's id.
        job_id: String,
        /// Its type, as the registry spells it.
        job_type: String,
    },
    /// A job it cannot: its id (possibly empty) and why.
    Malformed {
        /// The job's id, if the entry had one.
        job_id: String,
        /// What is wrong.
        reason: String,
    },
}

impl Polled {
    /// One entry of a poll's answer.
    fn read(value: serde_json::Value) -> Polled {
        let job_id = value
            .get("jobId")
            .and_then(|id| id.as_str())
            .unwrap_or_default()
            .to_string();
        let job_type = value.get("type").and_then(|kind| kind.as_str());
        if let Some(job_type) = job_type.filter(|kind| JobType::parse(kind).is_none()) {
            return Polled::Foreign {
                job_id,
                job_type: job_type.to_string(),
            };
        }
        match serde_json::from_value::<Job>(value) {
            Ok(job) => match job.validate() {
                Ok(()) => Polled::Job(job),
                Err(malformed) => Polled::Malformed {
                    job_id,
                    reason: malformed.to_string(),
                },
            },
            Err(error) => Polled::Malformed {
                reason: format!("job {job_id} is malformed: {error}"),
                job_id,
            },
        }
    }
}

/// A client of one registry, for one agent id. Cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
    retry: RetryPolicy,
}

struct Inner {
    http: HttpClient,
    api: String,
    nodes: Arc<Nodes>,
    agent_id: String,
    tokens: Arc<TokenSource>,
    health: Arc<RegistryHealth>,
}

impl RegistryClient {
    /// A client of the registry at `api` (its base address) for `agent_id`.
    pub fn new(
        http: HttpClient,
        api: &str,
        agent_id: &str,
        tokens: TokenSource,
        retry: RetryPolicy,
    ) -> RegistryClient {
        RegistryClient::with_nodes(http, &[api.to_string()], agent_id, tokens, retry)
    }

    /// A client of the registry whose nodes are at `apis` (base addresses,
    /// at least one): calls go to the first that answers (see [`Nodes`]).
    pub fn with_nodes(
        http: HttpClient,
        apis: &[String],
        agent_id: &str,
        tokens: TokenSource,
        retry: RetryPolicy,
    ) -> RegistryClient {
        let nodes = Nodes::new(apis);
        let api = nodes.urls()[0].clone();
        RegistryClient {
            inner: Arc::new(Inner {
                http,
                health: Arc::new(RegistryHealth::of(&api)),
                api,
                nodes: Arc::new(nodes),
                agent_id: agent_id.to_string(),
                tokens: Arc::new(tokens),
            }),
            retry,
        }
    }

    /// The same client (same token, same connections) retrying by `retry`:
    /// shorter deadlines for calls that must not hold up a shutdown.
    pub fn with_retry(&self, retry: RetryPolicy) -> RegistryClient {
        RegistryClient {
            inner: self.inner.clone(),
            retry,
        }
    }

    /// The same client (same token, same health) over connections of its
    /// own, for calls made from another runtime (see [`HttpClient::own_pool`]).
    pub fn with_own_connections(&self) -> RegistryClient {
        RegistryClient {
            inner: Arc::new(Inner {
                http: self.inner.http.own_pool(),
                api: self.inner.api.clone(),
                nodes: self.inner.nodes.clone(),
                agent_id: self.inner.agent_id.clone(),
                tokens: self.inner.tokens.clone(),
                health: self.inner.health.clone(),
            }),
            retry: self.retry,
        }
    }

    /// Whether the registry answers, as every call of this client saw it.
    pub fn health(&self) -> Arc<RegistryHealth> {
        self.inner.health.clone()
    }

    /// A client set up from a connection file: every node its
    /// ApiBaseAddresses lists (`api`, when given, replaces them all).
    pub fn from_connection_file(
        file: &ConnectionFile,
        agent_id: &str,
        api: Option<&str>,
        extra_ca: Option<&Path>,
        retry: RetryPolicy,
    ) -> Result<RegistryClient, String> {
        let http = HttpClient::new(extra_ca)?;
        let tokens = TokenSource::with_endpoints(
            http.clone(),
            &file.token_endpoints(),
            Credentials::from_connection_file(file),
        );
        let apis = match api {
            Some(api) => vec![api.to_string()],
            None => file.api_all.clone(),
        };
        Ok(RegistryClient::with_nodes(
            http, &apis, agent_id, tokens, retry,
        ))
    }

    /// The registry's (first node's) base address.
    pub fn api(&self) -> &str {
        &self.inner.api
    }

    /// The base address of the node calls go to now.
    pub fn current_node(&self) -> String {
        self.inner.nodes.current().1.to_string()
    }

    /// The agent id.
    pub fn agent_id(&self) -> &str {
        &self.inner.agent_id
    }

    /// Gets a token and polls once for `types`, so a bad key, an agent id
    /// the registry does not give this key, or an unreachable registry shows
    /// before a job is spent. A poll changes nothing on the registry.
    pub async fn check(&self, types: &[JobType]) -> Result<(), RegistryError> {
        let token = || async {
            let result = self.inner.tokens.token().await;
            self.inner.health.record(&result);
            result
        };
        self.retry.run("the token request", token).await?;
        let types = if types.is_empty() {
            &JobType::ALL[..]
        } else {
            types
        };
        self.poll(types, Some(1)).await.map(drop)
    }

    /// The available jobs of the given types, oldest first as the registry
    /// sends them. A job that does not parse or lacks what its type needs
    /// comes back as [`Polled::Malformed`], so one bad job never hides the
    /// others; one of a type this agent does not know as [`Polled::Foreign`].
    pub async fn poll(
        &self,
        types: &[JobType],
        max: Option<usize>,
    ) -> Result<Vec<Polled>, RegistryError> {
        let path = protocol::jobs_path(&self.inner.agent_id, types, max);
        let body = self
            .call(Method::GET, &path, JSON, Bytes::new(), Wait::Brief)
            .await?;
        let list: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|error| {
            RegistryError::invalid(format!(
                "GET {path}: the answer is not a list of jobs: {error}"
            ))
        })?;
        Ok(list.into_iter().map(Polled::read).collect())
    }

    /// Locks `job_id` for `lease`. Retries carry the same request id, so a lost
    /// answer never makes two locks.
    pub async fn lock(&self, job_id: &str, lease: Duration) -> Result<LockGranted, RegistryError> {
        let request = LockRequest {
            agent_id: self.inner.agent_id.clone(),
            lock_duration_seconds: lease.as_secs().max(1),
            request_id: uuid_v4(),
        };
        self.job_call(job_id, JobCall::Lock, &request).await
    }

    /// Reports progress.
    pub async fn progress(
        &self,
        job_id: &str,
        lock_token: &str,
        done: u64,
        total: u64,
    ) -> Result<(), RegistryError> {
        let request = ProgressRequest {
            lock_token: lock_token.to_string(),
            task_progress: done.min(total),
            task_total: total,
        };
        self.job_call_no_answer(job_id, JobCall::Progress, &request)
            .await
    }

    /// Renews the lock for `lease`.
    pub async fn renew(
        &self,
        job_id: &str,
        lock_token: &str,
        lease: Duration,
    ) -> Result<Renewed, RegistryError> {
        let request = RenewRequest {
            lock_token: lock_token.to_string(),
            lock_duration_seconds: lease.as_secs().max(1),
        };
        self.job_call(job_id, JobCall::Renew, &request).await
    }

    /// Completes the job in `state`.
    pub async fn complete(
        &self,
        job_id: &str,
        lock_token: &str,
        state: CompletionState,
        message: Option<String>,
    ) -> Result<(), RegistryError> {
        let request = CompleteRequest {
            lock_token: lock_token.to_string(),
            state,
            message,
        };
        self.job_call_no_answer(job_id, JobCall::Complete, &request)
            .await
    }

    /// Cancels the job: it will never be done.
    pub async fn cancel(
        &self,
        job_id: &str,
        lock_token: &str,
        reason: &str,
    ) -> Result<(), RegistryError> {
        let reason = if reason.trim().is_empty() {
            "cancelled by the agent"
        } else {
            reason
        };
        let request = CancelRequest {
            lock_token: lock_token.to_string(),
            reason: reason.to_string(),
        };
        self.job_call_no_answer(job_id, JobCall::Cancel, &request)
            .await
    }

    /// Releases the job for another try later.
    pub async fn release(&self, job_id: &str, lock_token: &str) -> Result<(), RegistryError> {
        let request = ReleaseRequest {
            lock_token: lock_token.to_string(),
        };
        self.job_call_no_answer(job_id, JobCall::Release, &request)
            .await
    }

    /// Initialize{Media,Thumbnail,Discovery}Upload. Retried like every call: if
    /// an answer is lost, the file it made never receives a block, and the
    /// registry discards it when the job completes.
    pub async fn initialize(
        &self,
        job_id: &str,
        kind: FileKind,
        request: &InitializeUpload<'_>,
    ) -> Result<InitializedFile, RegistryError> {
        let path = protocol::initialize_path(job_id, kind);
        let body = serde_json::to_vec(request).expect("request bodies serialize");
        let answer = self
            .call(Method::POST, &path, JSON, body.into(), Wait::Brief)
            .await?;
        serde_json::from_slice(&answer).map_err(|error| {
            RegistryError::invalid(format!("POST {path}: unexpected answer: {error}"))
        })
    }

    /// Uploads (or replaces) one block.
    pub async fn put_block(
        &self,
        file_id: &str,
        block_id: &str,
        block: Bytes,
    ) -> Result<(), RegistryError> {
        let path = protocol::block_path(file_id, block_id);
        self.call(Method::PUT, &path, OCTETS, block, Wait::Bulk)
            .await
            .map(drop)
    }

    /// Commits a file.
    pub async fn complete_file(
        &self,
        file_id: &str,
        request: &CompleteFile<'_>,
    ) -> Result<(), RegistryError> {
        let path = protocol::complete_file_path(file_id);
        let body = serde_json::to_vec(request).expect("request bodies serialize");
        self.call(Method::POST, &path, JSON, body.into(), Wait::Bulk)
            .await
            .map(drop)
    }

    async fn job_call<B: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        job_id: &str,
        call: JobCall,
        request: &B,
    ) -> Result<A, RegistryError> {
        let path = protocol::job_call_path(job_id, call);
        let body = serde_json::to_vec(request).expect("request bodies serialize");
        let answer = self
            .call(call.method(), &path, JSON, body.into(), Wait::Brief)
            .await?;
        serde_json::from_slice(&answer)
            .map_err(|error| RegistryError::invalid(format!("{path}: unexpected answer: {error}")))
    }

    async fn job_call_no_answer<B: serde::Serialize>(
        &self,
        job_id: &str,
        call: JobCall,
        request: &B,
    ) -> Result<(), RegistryError> {
        let path = protocol::job_call_path(job_id, call);
        let body = serde_json::to_vec(request).expect("request bodies serialize");
        self.call(call.method(), &path, JSON, body.into(), Wait::Brief)
            .await
            .map(drop)
    }

    /// Sends one call with a bearer token; a 401 gets one more try with a
    /// fresh token; transient failures are retried with the policy's backoff.
    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: Bytes,
        wait: Wait,
    ) -> Result<Bytes, RegistryError> {
        let what = format!("{method} {path}");
        let attempt = || async {
            let mut refreshed = false;
            let result = loop {
                let token = match self.inner.tokens.token().await {
                    Ok(token) => token,
                    Err(error) => break Err(error),
                };
                let call = OneCall {
                    what: &what,
                    method: &method,
                    path,
                    content_type,
                    body: body.clone(),
                    wait,
                };
                match self.send(call, &token).await {
                    Err(RegistryError::Unauthorized(_)) if !refreshed => {
                        self.inner.tokens.invalidate(&token).await;
                        refreshed = true;
                    }
                    other => break other,
                }
            };
            self.inner.health.record(&result);
            result
        };
        self.retry.run(&what, attempt).await
    }

    /// One attempt of `call` with `token`, to the current node.
    async fn send(&self, call: OneCall<'_>, token: &str) -> Result<Bytes, RegistryError> {
        let OneCall {
            what,
            method,
            path,
            content_type,
            body,
            wait,
        } = call;
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                RegistryError::Unauthorized("the token is not a valid header value".into())
            })?;
        authorization.set_sensitive(true);
        let (node, base) = self.inner.nodes.current();
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("{base}{path}"))
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|error| RegistryError::invalid(format!("{what}: {error}")))?;
        // A node that another call found silent is left at once: this call
        // does not sit out its own wait there (a block's is 60 s).
        let left = self.inner.nodes.left(node);
        let sent = tokio::select! {
            sent = self.inner.http.send(what, request, self.inner.nodes.wait(wait)) => sent,
            () = left => {
                return Err(RegistryError::transient(format!(
                    "{what}: registry node {base} was left (another call found it silent); \
                     retrying on the next"
                )));
            }
        };
        if let Err(error) = &sent {
            self.inner.nodes.failed(node, error);
        }
        sent.map(|reply| reply.body)
    }
}

/// What one attempt of a registry call sends.
struct OneCall<'a> {
    /// The call's name in messages (`METHOD path`).
    what: &'a str,
    method: &'a Method,
    path: &'a str,
    content_type: &'static str,
    body: Bytes,
    wait: Wait,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a service that writes its nulls, knows a newer job type or a
    /// newer state would send: the valid jobs run, the new type is left for
    /// another agent, and only a job really lacking what it needs is
    /// malformed (cancelled by the agent).
    #[test]
    fn a_poll_reads_nulls_and_leaves_unknown_job_types_alone() {
        let read = |json: serde_json::Value| Polled::read(json);
        let with_nulls = serde_json::json!({
            "jobId": "j1", "type": "thumbnail", "agentId": "agent-1", "deviceId": "cam-1",
            "startTimeUtc": null, "endTimeUtc": null, "parameters": null,
            "state": "Scheduled", "createdUtc": "2026-12-03T10:00:00Z",
            "lockExpirationUtc": null, "taskProgress": null, "taskTotal": null,
            "someFieldOfANewerService": {"x": 1}
        });
        let Polled::Job(job) = read(with_nulls) else {
            panic!("a valid job with nulls");
        };
        assert!(job.parameters.is_empty() && job.state.is_none() && job.task_total == 0);
        // .NET writes seven digits of fraction; an offset may be +00:00.
        let dotnet_times = serde_json::json!({
            "jobId": "m1", "type": "mediarequest", "deviceId": "cam-1",
            "startTimeUtc": "2026-11-20T10:00:00.1234567Z",
            "endTimeUtc": "2026-11-20T10:05:00+00:00"
        });
        let Polled::Job(media) = read(dotnet_times) else {
            panic!("a media job with .NET's times");
        };
        let (start, end) = (media.start_time_utc.unwrap(), media.end_time_utc.unwrap());
        assert_eq!((end - start).whole_seconds(), 299);
        assert!(matches!(
            read(serde_json::json!({"jobId": "j2", "type": "export", "deviceId": "cam-1"})),
            Polled::Foreign { job_id, job_type } if job_id == "j2" && job_type == "export"
        ));
        assert!(matches!(
            read(serde_json::json!({"jobId": "j3", "type": "thumbnail"})),
            Polled::Malformed { job_id, .. } if job_id == "j3"
        ));
        assert!(matches!(
            read(serde_json::json!({"jobId": "j4", "type": 7})),
            Polled::Malformed { .. }
        ));
    }

    #[test]
    fn request_ids_are_version_4_uuids() {
        let id = uuid_v4();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|part| part.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
        assert_ne!(uuid_v4(), id);
    }
}
