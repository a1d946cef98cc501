//! The route table: every endpoint with its method, path template, who may
//! call it, its body and its answers. The router matches requests against it
//! and `/openapi.json` is generated from it, so the two cannot drift apart.

use serde_json::{Value, json};

use crate::wire::{ApiError, Code};

/// What an endpoint does (one per row of [`ROUTES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Endpoint {
    Token,
    Poll,
    Lock,
    Progress,
    Renew,
    Complete,
    Cancel,
    Release,
    Initialize,
    PutBlock,
    CompleteFile,
    AdminPostJobs,
    AdminJobs,
    AdminJobFiles,
    AdminFileContent,
    AdminDevices,
    AdminFaults,
    AdminSetFaults,
    AdminStats,
    OpenApi,
}

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Anyone (token endpoint, OpenAPI).
    Anyone,
    /// An agent with a bearer token from `/connect/token`.
    Agent,
    /// The administrator, with the admin token.
    Admin,
}

/// One row of the table.
#[derive(Debug)]
pub struct Route {
    pub method: &'static str,
    pub template: &'static str,
    pub endpoint: Endpoint,
    pub caller: Caller,
    pub summary: &'static str,
    pub body: Option<&'static str>,
    pub answers: &'static [(u16, &'static str)],
}

macro_rules! route {
    ($method:literal, $path:literal, $endpoint:ident, $caller:ident, $summary:literal, $body:expr, [$(($code:literal, $what:literal)),* $(,)?]) => {
        Route {
            method: $method,
            template: $path,
            endpoint: Endpoint::$endpoint,
            caller: Caller::$caller,
            summary: $summary,
            body: $body,
            answers: &[$(($code, $what)),*],
        }
    };
}

/// Every route. Paths are written in full so a reader sees the URL.
pub static ROUTES: &[Route] = &[
    route!(
        "POST",
        "/connect/token",
        Token,
        Anyone,
        "OAuth2 token: jwt-bearer assertion (RS512) or client_credentials",
        Some("form: client_id, grant_type, assertion | client_secret"),
        [
            (200, "{access_token, token_type, expires_in}"),
            (400, "invalid_request, invalid_grant"),
            (401, "invalid_client")
        ]
    ),
    route!(
        "GET",
        "/agentservice/api/v1/agents/{agentId}/jobs",
        Poll,
        Agent,
        "Available jobs of this agent, oldest first; query type=a,b and max=N",
        None,
        [
            (200, "[Job]"),
            (401, "no or bad token"),
            (403, "another agent's jobs")
        ]
    ),
    route!(
        "POST",
        "/agentservice/api/v1/jobs/{jobId}/lock",
        Lock,
        Agent,
        "Lock a job (idempotent per requestId)",
        Some("{agentId, lockDurationSeconds, requestId}"),
        [
            (200, "{lockToken, lockExpirationUtc}"),
            (403, "posted for another agent"),
            (404, "unknown job"),
            (409, "held by someone"),
            (410, "completed or cancelled")
        ]
    ),
    route!(
        "PUT",
        "/agentservice/api/v1/jobs/{jobId}/progress",
        Progress,
        Agent,
        "Report taskProgress / taskTotal",
        Some("{lockToken, taskProgress, taskTotal}"),
        [
            (204, "recorded"),
            (400, "out of range"),
            (409, "lock not held")
        ]
    ),
    route!(
        "POST",
        "/agentservice/api/v1/jobs/{jobId}/renew",
        Renew,
        Agent,
        "Extend the lock",
        Some("{lockToken, lockDurationSeconds}"),
        [(200, "{lockExpirationUtc}"), (409, "lock lost")]
    ),
    route!(
        "POST",
        "/agentservice/api/v1/jobs/{jobId}/complete",
        Complete,
        Agent,
        "Complete as Completed, PartiallyCompleted or Failed",
        Some("{lockToken, state, message?}"),
        [
            (204, "completed"),
            (400, "bad state or an uncommitted file"),
            (409, "lock lost")
        ]
    ),
    route!(
        "POST",
        "/agentservice/api/v1/jobs/{jobId}/cancel",
        Cancel,
        Agent,
        "Cancel: never offered again",
        Some("{lockToken, reason}"),
        [(204, "cancelled"), (400, "no reason"), (409, "lock lost")]
    ),
    route!(
        "POST",
        "/agentservice/api/v1/jobs/{jobId}/release",
        Release,
        Agent,
        "Release: available again",
        Some("{lockToken}"),
        [(204, "released"), (409, "lock lost")]
    ),
    route!(
        "POST",
        "/agentservice/api/v1/jobs/{jobId}/files/{kind}",
        Initialize,
        Agent,
        "InitializeMediaUpload / InitializeThumbnailUpload / InitializeDiscoveryUpload (kind = media, thumbnail, discovery)",
        Some("{lockToken, fileName, contentType, deviceId?, startTimeUtc?, endTimeUtc?}"),
        [
            (200, "{fileId, jsonWebKey}"),
            (400, "kind does not match the job"),
            (409, "lock not held")
        ]
    ),
    route!(
        "PUT",
        "/agentservice/api/v1/files/{fileId}/blocks/{blockId}",
        PutBlock,
        Agent,
        "Upload (or replace) an encrypted block",
        Some("application/octet-stream, at most 4 MiB + 28 bytes"),
        [
            (201, "stored"),
            (400, "bad block id"),
            (404, "unknown file"),
            (409, "lock gone"),
            (413, "too large")
        ]
    ),
    route!(
        "POST",
        "/agentservice/api/v1/files/{fileId}/complete",
        CompleteFile,
        Agent,
        "Commit the ordered block list with its EncryptionData; every block is decrypted and checked",
        Some("{lockToken, blockIds, encryptionData, contentLength}"),
        [
            (204, "committed"),
            (
                400,
                "missing block, bad metadata, a block that does not decrypt, wrong length"
            ),
            (409, "lock lost or committed differently")
        ]
    ),
    route!(
        "POST",
        "/admin/api/v1/jobs",
        AdminPostJobs,
        Admin,
        "Post one job or an array of jobs",
        Some("NewJob | [NewJob]"),
        [(201, "[Job]"), (400, "invalid job")]
    ),
    route!(
        "GET",
        "/admin/api/v1/jobs",
        AdminJobs,
        Admin,
        "List jobs with state, progress and files; query state=, agent=",
        None,
        [(200, "[Job with files]")]
    ),
    route!(
        "GET",
        "/admin/api/v1/jobs/{jobId}/files",
        AdminJobFiles,
        Admin,
        "A job's files",
        None,
        [(200, "[File]"), (404, "unknown job")]
    ),
    route!(
        "GET",
        "/admin/api/v1/files/{fileId}/content",
        AdminFileContent,
        Admin,
        "A committed file, decrypted",
        None,
        [
            (200, "the plaintext, with its content type"),
            (404, "unknown or uncommitted file")
        ]
    ),
    route!(
        "GET",
        "/admin/api/v1/devices",
        AdminDevices,
        Admin,
        "Devices learned from discovery results, with their latest thumbnail",
        None,
        [(200, "[Device]")]
    ),
    route!(
        "GET",
        "/admin/api/v1/faults",
        AdminFaults,
        Admin,
        "The fault injection rates and what was injected so far",
        None,
        [(
            200,
            "{rates: {fail, drop, lose}, counts: {requests, refused, dropped, lost}}"
        )]
    ),
    route!(
        "PUT",
        "/admin/api/v1/faults",
        AdminSetFaults,
        Admin,
        "Sets the shares of agent-service and token calls refused (5xx, 429), dropped before the call, or whose answer is lost after it (all 0: no faults)",
        Some("{fail, drop, lose}, each 0 to 1"),
        [(200, "the same as GET"), (400, "shares out of range")]
    ),
    route!(
        "GET",
        "/admin/api/v1/stats",
        AdminStats,
        Admin,
        "What the registry counted across restarts: double completes, refused and late commits, expired locks; and the faults injected since it started",
        None,
        [(
            200,
            "{doubleCompletes, refusedCommits, lateCommits, expiredLocks, faults}"
        )]
    ),
    route!(
        "GET",
        "/openapi.json",
        OpenApi,
        Anyone,
        "This description",
        None,
        [(200, "OpenAPI 3.0 document")]
    ),
];

/// Finds the route of `method` and `path`; returns it and the path parameters
/// (percent-decoded).
pub fn find(method: &str, path: &str) -> Result<(&'static Route, Vec<String>), ApiError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut method_mismatch = false;
    for route in ROUTES {
        let template: Vec<&str> = route.template.split('/').collect();
        if template.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let matched = template.iter().zip(&segments).all(|(expected, actual)| {
            if expected.starts_with('{') {
                match urlencoding::decode(actual) {
                    Ok(value) if !value.is_empty() => {
                        params.push(value.into_owned());
                        true
                    }
                    _ => false,
                }
            } else {
                expected == actual
            }
        });
        if !matched {
            continue;
        }
        if route.method != method {
            method_mismatch = true;
            continue;
        }
        return Ok((route, params));
    }
    if method_mismatch {
        Err(ApiError::new(
            Code::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        ))
    } else {
        Err(ApiError::new(Code::NotFound, format!("no route {path}")))
    }
}

/// The OpenAPI 3.0 document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let parameters: Vec<Value> = route
            .template
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut responses = serde_json::Map::new();
        for (code, what) in route.answers {
            responses.insert(code.to_string(), json!({ "description": what }));
        }
        let security = match route.caller {
            Caller::Anyone => json!([]),
            Caller::Agent => json!([{ "agentToken": [] }]),
            Caller::Admin => json!([{ "adminToken": [] }]),
        };
        let mut operation = json!({
            "summary": route.summary,
            "operationId": format!("{:?}", route.endpoint),
            "parameters": parameters,
            "responses": responses,
            "security": security,
        });
        if let Some(body) = route.body {
            operation["requestBody"] = json!({ "description": body, "content": { "application/json": { "schema": { "type": "object" } } } });
        }
        let entry = paths
            .entry(route.template.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "corral on-premise registry", "version": env!("CARGO_PKG_VERSION"),
                  "description": "The Clearance Registry Agent protocol (PROTOCOL.md) and the registry's admin API." },
        "paths": paths,
        "components": { "securitySchemes": {
            "agentToken": { "type": "http", "scheme": "bearer", "description": "from /connect/token" },
            "adminToken": { "type": "http", "scheme": "bearer", "description": "the data folder's admin-token file" }
        } }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_find_their_route_and_parameters() {
        let (route, params) =
            find("PUT", "/agentservice/api/v1/files/f1/blocks/AAAAAAAAAAA%3D").unwrap();
        assert_eq!(route.endpoint, Endpoint::PutBlock);
        assert_eq!(params, ["f1", "AAAAAAAAAAA="]);
        assert_eq!(
            find("GET", "/agentservice/api/v1/jobs/j1/lock")
                .unwrap_err()
                .code,
            Code::MethodNotAllowed
        );
        assert_eq!(find("GET", "/nope").unwrap_err().code, Code::NotFound);
        let doc = openapi();
        assert!(
            doc["paths"]["/agentservice/api/v1/jobs/{jobId}/lock"]["post"]["responses"]["410"]
                .is_object()
        );
    }
}
