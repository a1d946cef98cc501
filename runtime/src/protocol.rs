//! The registry's job record, as PROTOCOL.md spells it. Every JSON name of the
//! job lives here and nowhere else in the agent.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The three job types, spelled as the registry spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Free-form parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// State in the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Progress done.
    #[serde(default)]
    pub task_progress: u64,
    /// Progress total.
    #[serde(default)]
    pub task_total: u64,
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

#[cfg(test)]
mod tests {
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
}
