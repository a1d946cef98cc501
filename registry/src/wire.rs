//! PROTOCOL.md, server side: every JSON name the registry reads or writes, and
//! its error codes. The routes and their paths are in [`crate::routes`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// Job types as the protocol spells them.
pub const JOB_TYPES: [&str; 3] = ["mediarequest", "discovery", "thumbnail"];

/// A job as the agent API and the admin API show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobJson {
    /// Opaque id.
    pub job_id: String,
    /// `mediarequest`, `discovery` or `thumbnail`.
    #[serde(rename = "type")]
    pub job_type: String,
    /// The agent it is posted for.
    pub agent_id: String,
    /// The device (absent for discovery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Start of the range (media).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time_utc: Option<String>,
    /// End of the range (media).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time_utc: Option<String>,
    /// Free-form parameters.
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, Value>,
    /// Available, Locked, Completed, PartiallyCompleted, Failed, Cancelled.
    pub state: String,
    /// When it was posted.
    pub created_utc: String,
    /// End of the current lock.
    pub lock_expiration_utc: Option<String>,
    /// Progress done.
    pub task_progress: u64,
    /// Progress total.
    pub task_total: u64,
    /// The completion or cancellation message, if any (not in the agent API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The job's files (admin API and `corral registry jobs --json` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileJson>>,
}

/// A file as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileJson {
    /// Its id.
    pub file_id: String,
    /// `media`, `thumbnail` or `discovery`.
    pub kind: String,
    /// Its name.
    pub file_name: String,
    /// Its MIME type.
    pub content_type: String,
    /// Whether it was committed.
    pub committed: bool,
    /// Plaintext length, once committed.
    pub length: Option<u64>,
    /// SHA-256 of the plaintext, once committed.
    pub sha256: Option<String>,
}

/// A job to post (admin API, `corral registry post-job`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewJob {
    /// The job type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// The agent it is for.
    pub agent_id: String,
    /// The device.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Start of the range.
    #[serde(default)]
    pub start_time_utc: Option<String>,
    /// End of the range.
    #[serde(default)]
    pub end_time_utc: Option<String>,
    /// Parameters (strings).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, Value>,
}

/// Body of lock.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockBody {
    pub agent_id: String,
    pub lock_duration_seconds: u64,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Body of progress.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressBody {
    pub lock_token: String,
    pub task_progress: i64,
    pub task_total: i64,
}

/// Body of renew.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenewBody {
    pub lock_token: String,
    pub lock_duration_seconds: u64,
}

/// Body of complete.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompleteBody {
    pub lock_token: String,
    pub state: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// Body of cancel.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelBody {
    pub lock_token: String,
    #[serde(default)]
    pub reason: String,
}

/// Body of release.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseBody {
    pub lock_token: String,
}

/// Body of the Initialize calls.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeBody {
    pub lock_token: String,
    pub file_name: String,
    pub content_type: String,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub start_time_utc: Option<String>,
    #[serde(default)]
    pub end_time_utc: Option<String>,
}

/// Body of complete file.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompleteFileBody {
    pub lock_token: String,
    pub block_ids: Vec<String>,
    /// The EncryptionData object (PROTOCOL.md).
    #[schema(value_type = Object)]
    pub encryption_data: Value,
    pub content_length: u64,
}

/// The error codes the registry answers with, in `{"error","message"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 400: malformed or invalid input.
    BadRequest,
    /// 401: no or bad token.
    Unauthorized,
    /// 403: the job is posted for another agent.
    Forbidden,
    /// 404: unknown job, file or route.
    NotFound,
    /// 405: wrong method for the route.
    MethodNotAllowed,
    /// 409: someone else holds the lock, or it is lost.
    Conflict,
    /// 410: the job is no longer available.
    Gone,
    /// 413: the body is too large.
    TooLarge,
    /// 415: a JSON body with another content type.
    UnsupportedMediaType,
    /// 429: slow down.
    TooManyRequests,
    /// 500: a bug or a storage failure.
    Internal,
    /// 503: try again later.
    Unavailable,
}

impl Code {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Code::BadRequest => 400,
            Code::Unauthorized => 401,
            Code::Forbidden => 403,
            Code::NotFound => 404,
            Code::MethodNotAllowed => 405,
            Code::Conflict => 409,
            Code::Gone => 410,
            Code::TooLarge => 413,
            Code::UnsupportedMediaType => 415,
            Code::TooManyRequests => 429,
            Code::Internal => 500,
            Code::Unavailable => 503,
        }
    }

    /// The `error` string.
    pub fn name(self) -> &'static str {
        match self {
            Code::BadRequest => "BAD_REQUEST",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::Conflict => "CONFLICT",
            Code::Gone => "GONE",
            Code::TooLarge => "TOO_LARGE",
            Code::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Code::TooManyRequests => "TOO_MANY_REQUESTS",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
        }
    }
}

/// An error answer: a code and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The code.
    pub code: Code,
    /// What and why.
    pub message: String,
}

impl ApiError {
    /// An error of `code`.
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(&ErrorBody {
            error: self.code.name(),
            message: &self.message,
        })
        .unwrap_or_default()
    }
}

/// Shorthand for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// 400.
pub fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(Code::BadRequest, message)
}

/// 409.
pub fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(Code::Conflict, message)
}

/// 404.
pub fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(Code::NotFound, message)
}

/// The body of every error answer but the token endpoint's.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    /// The code: BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, METHOD_NOT_ALLOWED,
    /// CONFLICT, GONE, TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, TOO_MANY_REQUESTS, INTERNAL
    /// or UNAVAILABLE.
    pub error: &'a str,
    /// What and why.
    pub message: &'a str,
}

/// Answer of lock.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockAnswer {
    /// The token that proves the lock.
    pub lock_token: String,
    /// When the lock ends (RFC 3339, UTC).
    pub lock_expiration_utc: String,
}

/// Answer of renew.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenewAnswer {
    /// When the lock now ends (RFC 3339, UTC).
    pub lock_expiration_utc: String,
}

/// Answer of the Initialize calls.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeAnswer {
    /// The new file's id.
    pub file_id: String,
    /// The public key (JWK) that wraps the file's content key.
    #[schema(value_type = Object)]
    pub json_web_key: Value,
}

/// The token endpoint's form (application/x-www-form-urlencoded).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenForm {
    /// The service principal.
    pub client_id: String,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` or `client_credentials`.
    pub grant_type: String,
    /// The RS512 JWT (jwt-bearer).
    pub assertion: Option<String>,
    /// The secret (client_credentials).
    pub client_secret: Option<String>,
}

/// The token endpoint's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenAnswer {
    /// The bearer token for the agent service.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// The token endpoint's error body (OAuth2).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody<'a> {
    /// invalid_request, invalid_client, invalid_grant, unsupported_grant_type,
    /// server_error or temporarily_unavailable.
    pub error: &'a str,
    /// Why.
    pub error_description: &'a str,
}

/// Query of poll.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Job types to offer, comma-separated (mediarequest, discovery, thumbnail).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub types: Option<String>,
    /// At most this many jobs (100 if absent).
    pub max: Option<usize>,
}

/// Query of the admin job list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs in this state.
    pub state: Option<String>,
    /// Only jobs of this agent.
    pub agent: Option<String>,
}
