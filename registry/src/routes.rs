//! The route table: every endpoint with its handler, whose `#[utoipa::path]`
//! gives its method, path, caller, bodies and answers. The router and
//! `/openapi.json` are both built from [`table`], so the two cannot drift apart.

use std::sync::{Arc, LazyLock};

use axum::response::Response;
use http::StatusCode;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::web::json_answer;
use crate::wire::{ErrorBody, OAuthErrorBody};
use crate::{Registry, admin_api, agent_api};

/// What an endpoint does (one per row of [`table`]).
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

impl Endpoint {
    /// Whether injected faults may hit it: agent-service calls and the token
    /// endpoint, never the admin API (a chaos run must be able to switch them
    /// off) nor this description.
    pub fn takes_faults(self) -> bool {
        !matches!(
            self,
            Endpoint::AdminPostJobs
                | Endpoint::AdminJobs
                | Endpoint::AdminJobFiles
                | Endpoint::AdminFileContent
                | Endpoint::AdminDevices
                | Endpoint::AdminFaults
                | Endpoint::AdminSetFaults
                | Endpoint::AdminStats
                | Endpoint::OpenApi
        )
    }
}

/// Registry state every handler gets.
pub type State = Arc<Registry>;

/// Every endpoint and its handler. Paths are in the handlers' annotations.
pub fn table() -> Vec<(Endpoint, UtoipaMethodRouter<State>)> {
    use admin_api as admin;
    use agent_api as agent;
    vec![
        (Endpoint::Token, routes!(agent::token)),
        (Endpoint::Poll, routes!(agent::poll)),
        (Endpoint::Lock, routes!(agent::lock)),
        (Endpoint::Progress, routes!(agent::progress)),
        (Endpoint::Renew, routes!(agent::renew)),
        (Endpoint::Complete, routes!(agent::complete)),
        (Endpoint::Cancel, routes!(agent::cancel)),
        (Endpoint::Release, routes!(agent::release)),
        (Endpoint::Initialize, routes!(agent::initialize)),
        (Endpoint::PutBlock, routes!(agent::put_block)),
        (Endpoint::CompleteFile, routes!(agent::complete_file)),
        (Endpoint::AdminPostJobs, routes!(admin::post_jobs)),
        (Endpoint::AdminJobs, routes!(admin::list_jobs)),
        (Endpoint::AdminJobFiles, routes!(admin::job_files)),
        (Endpoint::AdminFileContent, routes!(admin::file_content)),
        (Endpoint::AdminDevices, routes!(admin::devices)),
        (Endpoint::AdminFaults, routes!(admin::faults)),
        (Endpoint::AdminSetFaults, routes!(admin::set_faults)),
        (Endpoint::AdminStats, routes!(admin::stats)),
        (Endpoint::OpenApi, routes!(openapi_json)),
    ]
}

/// The document's frame: info, security schemes, the error answers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "corral on-premise registry",
        description = "The Clearance Registry Agent protocol (PROTOCOL.md) and the registry's admin API."
    ),
    components(schemas(ErrorBody, OAuthErrorBody))
)]
struct Document;

/// Adds the security schemes, and to every operation a `default` answer: the
/// `{error, message}` body (the OAuth2 body on the token endpoint) for the
/// refusals every call can get (401, 404, 405, 413, 415, 429, 5xx ...).
struct Frame;

impl Modify for Frame {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(description.to_string());
            SecurityScheme::Http(scheme)
        };
        components.add_security_scheme("agentToken", bearer("from /connect/token"));
        components.add_security_scheme("adminToken", bearer("the data folder's admin-token file"));
        for (path, item) in openapi.paths.paths.iter_mut() {
            let body = if path == "/connect/token" {
                OAuthErrorBody::name()
            } else {
                ErrorBody::name()
            };
            let answer = ResponseBuilder::new()
                .description("a refusal")
                .content(
                    "application/json",
                    utoipa::openapi::content::Content::new(Some(RefOr::Ref(
                        utoipa::openapi::Ref::from_schema_name(body),
                    ))),
                )
                .build();
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .entry("default".to_string())
                    .or_insert_with(|| RefOr::T(answer.clone()));
            }
        }
    }
}

/// The OpenAPI document of [`table`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut router = OpenApiRouter::<State>::with_openapi(Document::openapi());
    for (_, routes) in table() {
        router = router.routes(routes);
    }
    let mut document = router.into_openapi();
    Frame.modify(&mut document);
    document
}

/// [`openapi`] serialized once.
static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| openapi().to_json().unwrap_or_default());

/// This description (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", operation_id = "OpenApi", tag = "meta",
    responses((status = 200, description = "this OpenAPI document", content_type = "application/json")),
    security(()))]
async fn openapi_json() -> Response {
    json_answer(StatusCode::OK, OPENAPI_JSON.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_route_with_its_bodies_and_callers() {
        let document: serde_json::Value =
            serde_json::from_str(&openapi().to_json().unwrap()).unwrap();
        let lock = &document["paths"]["/agentservice/api/v1/jobs/{jobId}/lock"]["post"];
        assert_eq!(lock["operationId"], "Lock");
        assert!(lock["responses"]["410"].is_object());
        assert!(lock["responses"]["default"].is_object());
        assert_eq!(lock["security"][0]["agentToken"], serde_json::json!([]));
        let schemas = &document["components"]["schemas"];
        assert!(schemas["LockBody"]["properties"]["lockDurationSeconds"].is_object());
        assert!(schemas["JobJson"]["properties"]["type"].is_object());
        assert_eq!(
            table().len(),
            document["paths"]
                .as_object()
                .unwrap()
                .values()
                .map(|item| item.as_object().unwrap().len())
                .sum::<usize>()
        );
    }
}
