//! PROTOCOL.md, client side: every path and JSON name of the registry's Agent
//! protocol lives here and nowhere else in the agent. If the real service turns
//! out to differ, this module alone changes.

use std::collections::BTreeMap;
use std::fmt;

use corral_envelope::EncryptionData;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The three job types, spelled as the registry spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobType {
    /// Export a recording.
    #[serde(rename = "mediarequest")]
    MediaRequest,
    /// List devices.
    #[serde(rename = "discovery")]
    Discovery,
    /// Store a snapshot.
    #[serde(rename = "thumbnail")]
    Thumbnail,
}

impl JobType {
    /// All job types.
    pub const ALL: [JobType; 3] = [
        JobType::MediaRequest,
        JobType::Discovery,
        JobType::Thumbnail,
    ];

    /// The registry's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::MediaRequest => "mediarequest",
            JobType::Discovery => "discovery",
            JobType::Thumbnail => "thumbnail",
        }
    }

    /// Parses the registry's spelling.
    pub fn parse(text: &str) -> Option<JobType> {
        JobType::ALL.into_iter().find(|job| job.as_str() == text)
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's state in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for an agent.
    Available,
    /// Held by an agent.
    Locked,
    /// Done.
    Completed,
    /// Done in part.
    PartiallyCompleted,
    /// Done, unsuccessfully.
    Failed,
    /// Will never be done.
    Cancelled,
}

/// A job, as the registry serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Opaque id.
    pub job_id: String,
    /// What to do.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The agent it is posted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The device; absent for discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Start of the range (media requests).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_option"
    )]
    pub start_time_utc: Option<OffsetDateTime>,
    /// End of the range (media requests).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_option"
    )]
    pub end_time_utc: Option<OffsetDateTime>,
    /// Free-form parameters (`null` reads as none: a service that writes
    /// its nulls sends that).
    #[serde(default, deserialize_with = "null_as_default")]
    pub parameters: BTreeMap<String, String>,
    /// State in the registry (`None` when absent, or a state this agent
    /// does not know: it only informs).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_state"
    )]
    pub state: Option<JobState>,
    /// Progress done.
    #[serde(default, deserialize_with = "null_as_default")]
    pub task_progress: u64,
    /// Progress total.
    #[serde(default, deserialize_with = "null_as_default")]
    pub task_total: u64,
}

/// `T`'s default for a JSON `null`.
fn null_as_default<'de, D, T>(into: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(into)?.unwrap_or_default())
}

/// A job state, `None` for one this agent does not know.
fn known_state<'de, D: serde::Deserializer<'de>>(into: D) -> Result<Option<JobState>, D::Error> {
    let Some(text) = Option::<String>::deserialize(into)? else {
        return Ok(None);
    };
    Ok(serde_json::from_value(serde_json::Value::String(text)).ok())
}

/// One device of a discovery result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredDevice {
    /// The camera system's id for it.
    pub device_id: String,
    /// Its name.
    pub name: String,
    /// Its maker.
    pub manufacturer: String,
    /// Its model.
    pub model: String,
    /// WGS 84 latitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// WGS 84 longitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// `thumbnail`, `media`.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// The discovery result file (`application/json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryResult {
    /// The devices found.
    pub devices: Vec<DiscoveredDevice>,
}

impl DiscoveryResult {
    /// The name the runtime gives the discovery file.
    pub const FILE_NAME: &'static str = "discovery.json";
    /// Its content type.
    pub const CONTENT_TYPE: &'static str = "application/json";

    /// The file's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a discovery result always serializes")
    }
}

/// Why a job cannot be run as posted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job_id} ({job_type}) is malformed: {reason}")]
pub struct MalformedJob {
    /// The job's id.
    pub job_id: String,
    /// Its type.
    pub job_type: JobType,
    /// What is wrong.
    pub reason: String,
}

impl Job {
    /// Parses a job from PROTOCOL.md's JSON, then [validates](Job::validate) it.
    pub fn from_json(json: &[u8]) -> Result<Job, String> {
        let job: Job = serde_json::from_slice(json).map_err(|error| error.to_string())?;
        job.validate().map_err(|error| error.to_string())?;
        Ok(job)
    }

    /// Checks that the job carries what its type needs.
    pub fn validate(&self) -> Result<(), MalformedJob> {
        let malformed = |reason: &str| MalformedJob {
            job_id: self.job_id.clone(),
            job_type: self.job_type,
            reason: reason.to_string(),
        };
        if self.job_id.is_empty() {
            return Err(malformed("jobId is empty"));
        }
        match self.job_type {
            JobType::Discovery => Ok(()),
            JobType::Thumbnail if self.device_id.is_none() => Err(malformed("deviceId is missing")),
            JobType::Thumbnail => Ok(()),
            JobType::MediaRequest => {
                match (&self.device_id, self.start_time_utc, self.end_time_utc) {
                    (None, _, _) => Err(malformed("deviceId is missing")),
                    (_, None, _) | (_, _, None) => {
                        Err(malformed("startTimeUtc and endTimeUtc are required"))
                    }
                    (_, Some(start), Some(end)) if end <= start => {
                        Err(malformed("endTimeUtc is not after startTimeUtc"))
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Formats `time` as RFC 3339 in UTC.
pub fn format_rfc3339(time: OffsetDateTime) -> String {
    time.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| time.unix_timestamp().to_string())
}

mod rfc3339_option {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(
        value: &Option<OffsetDateTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(time) => serializer.serialize_str(&super::format_rfc3339(*time)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => OffsetDateTime::parse(&text, &Rfc3339)
                .map(Some)
                .map_err(|error| {
                    serde::de::Error::custom(format!("`{text}` is not RFC 3339: {error}"))
                }),
        }
    }
}

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
    /// Human text (OAuth2 answers call it `error_description`).
    #[serde(default, alias = "error_description")]
    pub message: String,
}

/// `GET /agents/{agentId}/jobs[?type=a,b&max=N]`.
pub fn jobs_path(agent_id: &str, types: &[JobType], max: Option<usize>) -> String {
    let mut path = format!("{API_PREFIX}/agents/{}/jobs", segment(agent_id));
    let mut query = Vec::new();
    if !types.is_empty() {
        let names: Vec<&str> = types.iter().map(|job| job.as_str()).collect();
        query.push(format!("type={}", names.join(",")));
    }
    if let Some(max) = max {
        query.push(format!("max={max}"));
    }
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    path
}

/// The calls made on one job: `POST /jobs/{jobId}/{call}` (progress is a PUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobCall {
    /// `POST .../lock`.
    Lock,
    /// `PUT .../progress`.
    Progress,
    /// `POST .../renew`.
    Renew,
    /// `POST .../complete`.
    Complete,
    /// `POST .../cancel`.
    Cancel,
    /// `POST .../release`.
    Release,
}

impl JobCall {
    /// The last path segment.
    pub fn segment(self) -> &'static str {
        match self {
            JobCall::Lock => "lock",
            JobCall::Progress => "progress",
            JobCall::Renew => "renew",
            JobCall::Complete => "complete",
            JobCall::Cancel => "cancel",
            JobCall::Release => "release",
        }
    }

    /// The HTTP method.
    pub fn method(self) -> http::Method {
        match self {
            JobCall::Progress => http::Method::PUT,
            _ => http::Method::POST,
        }
    }
}

/// The path of `call` on `job_id`.
pub fn job_call_path(job_id: &str, call: JobCall) -> String {
    format!("{API_PREFIX}/jobs/{}/{}", segment(job_id), call.segment())
}

/// Body of `lock`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRequest {
    /// This agent.
    pub agent_id: String,
    /// Lease asked for.
    pub lock_duration_seconds: u64,
    /// Drawn per attempt, kept across retries of that attempt.
    pub request_id: String,
}

/// Answer of `lock`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockGranted {
    /// The token later calls carry.
    pub lock_token: String,
    /// When the lease ends unless renewed.
    #[serde(with = "rfc3339")]
    pub lock_expiration_utc: OffsetDateTime,
}

/// Body of `progress`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressRequest {
    /// The lock token.
    pub lock_token: String,
    /// Units done.
    pub task_progress: u64,
    /// Units in all.
    pub task_total: u64,
}

/// Body of `renew`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewRequest {
    /// The lock token.
    pub lock_token: String,
    /// New lease asked for.
    pub lock_duration_seconds: u64,
}

/// Answer of `renew`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Renewed {
    /// The new end of the lease.
    #[serde(with = "rfc3339")]
    pub lock_expiration_utc: OffsetDateTime,
}

/// The final states `complete` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompletionState {
    /// All done.
    Completed,
    /// Partly done.
    PartiallyCompleted,
    /// Not done.
    Failed,
}

/// Body of `complete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteRequest {
    /// The lock token.
    pub lock_token: String,
    /// The final state.
    pub state: CompletionState,
    /// Why, for `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Body of `cancel`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelRequest {
    /// The lock token.
    pub lock_token: String,
    /// Why the job can never be done (required, not empty).
    pub reason: String,
}

/// Body of `release`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest {
    /// The lock token.
    pub lock_token: String,
}

/// The token endpoint's path under a security token service base address.
pub const TOKEN_PATH: &str = "/token";
/// RFC 7523's grant type.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The simple grant type.
pub const CLIENT_CREDENTIALS_GRANT: &str = "client_credentials";

/// An OAuth2 token answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenAnswer {
    /// The bearer token.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until it expires. RFC 6749 only recommends it, and some
    /// services send it as a string (`"3599"`): both are read, and an answer
    /// without it is taken to last [`DEFAULT_TOKEN_LIFETIME_SECS`] (a 401
    /// before then renews it anyway).
    #[serde(
        default = "default_token_lifetime",
        deserialize_with = "seconds_number_or_string"
    )]
    pub expires_in: u64,
}

/// The lifetime assumed for a token whose answer gives none.
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 300;

fn default_token_lifetime() -> u64 {
    DEFAULT_TOKEN_LIFETIME_SECS
}

/// Whole seconds written as a JSON number (a fraction is dropped) or as a
/// string holding one.
fn seconds_number_or_string<'de, D: serde::Deserializer<'de>>(into: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Whole(u64),
        Fraction(f64),
        Text(String),
    }
    let invalid = || serde::de::Error::custom("expires_in is not a number of seconds");
    match Seconds::deserialize(into)? {
        Seconds::Whole(seconds) => Ok(seconds),
        Seconds::Fraction(seconds) if seconds >= 0.0 && seconds.is_finite() => Ok(seconds as u64),
        Seconds::Text(text) => text.trim().parse().map_err(|_| invalid()),
        Seconds::Fraction(_) => Err(invalid()),
    }
}

/// An OAuth2 error answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OAuthError {
    /// `invalid_client`, `invalid_grant`, `server_error`, ...
    #[serde(default)]
    pub error: String,
    /// Human text.
    #[serde(default)]
    pub error_description: String,
}

mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(
        value: &OffsetDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_rfc3339(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map_err(|error| serde::de::Error::custom(format!("`{text}` is not RFC 3339: {error}")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_lifetime_is_read_as_a_number_a_string_or_missing() {
        let read =
            |json: &str| serde_json::from_str::<super::TokenAnswer>(json).map(|t| t.expires_in);
        let answer =
            |expires: &str| format!(r#"{{"access_token":"t","token_type":"Bearer"{expires}}}"#);
        assert_eq!(read(&answer(r#","expires_in":3600"#)).unwrap(), 3600);
        assert_eq!(read(&answer(r#","expires_in":"3599""#)).unwrap(), 3599);
        assert_eq!(read(&answer(r#","expires_in":59.9"#)).unwrap(), 59);
        assert_eq!(
            read(&answer("")).unwrap(),
            super::DEFAULT_TOKEN_LIFETIME_SECS
        );
        assert!(read(&answer(r#","expires_in":"soon""#)).is_err());
        assert!(read(&answer(r#","expires_in":-5"#)).is_err());
    }

    use super::*;

    #[test]
    fn a_protocol_job_parses() {
        let job = Job::from_json(
            br#"{"jobId":"8f0c","type":"mediarequest","agentId":"agent-1","deviceId":"cam-0042",
                "startTimeUtc":"2026-11-20T10:00:00Z","endTimeUtc":"2026-11-20T10:05:00Z",
                "parameters":{"k":"v"},"state":"Available","createdUtc":"2026-11-20T09:00:00Z",
                "lockExpirationUtc":null,"taskProgress":0,"taskTotal":0}"#,
        )
        .unwrap();
        assert_eq!(job.job_type, JobType::MediaRequest);
        let range = job.end_time_utc.unwrap() - job.start_time_utc.unwrap();
        assert_eq!(range.whole_seconds(), 300);
        assert_eq!(job.parameters["k"], "v");
    }

    #[test]
    fn malformed_jobs_say_what_is_wrong() {
        let cases = [
            (r#"{"jobId":"1","type":"video"}"#, "unknown variant `video`"),
            (r#"{"jobId":"1","type":"thumbnail"}"#, "deviceId is missing"),
            (
                r#"{"jobId":"1","type":"mediarequest","deviceId":"c","startTimeUtc":"2026-11-20T10:00:00Z"}"#,
                "startTimeUtc and endTimeUtc are required",
            ),
            (
                r#"{"jobId":"1","type":"mediarequest","deviceId":"c","startTimeUtc":"2026-11-20T10:00:00Z","endTimeUtc":"2026-11-20T09:00:00Z"}"#,
                "not after",
            ),
            (
                r#"{"jobId":"1","type":"mediarequest","deviceId":"c","startTimeUtc":"yesterday","endTimeUtc":"2026-11-20T09:00:00Z"}"#,
                "not RFC 3339",
            ),
        ];
        for (json, expected) in cases {
            let error = Job::from_json(json.as_bytes()).unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn job_paths_match_protocol_md() {
        assert_eq!(
            jobs_path(
                "agent-1",
                &[JobType::MediaRequest, JobType::Thumbnail],
                Some(5)
            ),
            "/agentservice/api/v1/agents/agent-1/jobs?type=mediarequest,thumbnail&max=5"
        );
        assert_eq!(
            jobs_path("a", &[], None),
            "/agentservice/api/v1/agents/a/jobs"
        );
        assert_eq!(
            job_call_path("j 1", JobCall::Renew),
            "/agentservice/api/v1/jobs/j%201/renew"
        );
        assert_eq!(JobCall::Progress.method(), http::Method::PUT);
        let lock = serde_json::to_string(&LockRequest {
            agent_id: "a".into(),
            lock_duration_seconds: 60,
            request_id: "r".into(),
        })
        .unwrap();
        assert_eq!(
            lock,
            r#"{"agentId":"a","lockDurationSeconds":60,"requestId":"r"}"#
        );
        let progress = serde_json::to_string(&ProgressRequest {
            lock_token: "t".into(),
            task_progress: 1,
            task_total: 2,
        })
        .unwrap();
        assert_eq!(
            progress,
            r#"{"lockToken":"t","taskProgress":1,"taskTotal":2}"#
        );
    }

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
