//! The operator console: HTML pages served by the registry itself at `/`
//! and under `/console/`, for people rather than programs. An operator signs
//! in with the admin token ([`auth`]) and then sees the jobs, live
//! ([`jobs`]), a job's files and history, the devices learned from discovery
//! with their latest thumbnails ([`devices`]), the agents ([`agents`]), and
//! posts jobs. Files download decrypted ([`download`]).
//!
//! The model: every page is rendered on the server with every value that
//! came from an agent or a camera escaped ([`html`]); the one script
//! (`assets/console.js`) only refreshes the jobs table from a JSON endpoint,
//! writing text with `textContent`. Nothing is fetched from elsewhere (the
//! stylesheet and the script are compiled in), and a Content-Security-Policy
//! allows nothing but this origin, so an escaping slip still runs no script.
//! The console reads the registry's state through the same store and admin
//! functions as the admin API.

pub mod agents;
pub mod auth;
pub mod devices;
pub mod download;
pub mod html;
pub mod jobs;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::Registry;
use crate::wire::ApiError;

/// The console's own paths begin with this.
pub const PREFIX: &str = "/console";

/// What every console handler sees: the registry and the signed-in sessions.
#[derive(Clone)]
pub struct Console {
    registry: Arc<Registry>,
    sessions: Arc<auth::Sessions>,
}

impl Console {
    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The console's routes, state applied. Build it once per server: the
/// sessions live in it.
pub fn router(registry: Arc<Registry>) -> Router {
    let console = Console {
        registry,
        sessions: Arc::new(auth::Sessions::default()),
    };
    Router::new()
        .route("/", get(auth::home))
        .route("/console", get(auth::home))
        .route(
            "/console/sign-in",
            get(auth::sign_in_page).post(auth::sign_in),
        )
        .route("/console/sign-out", post(auth::sign_out))
        .route("/console/jobs", get(jobs::jobs_page).post(jobs::post_job))
        .route("/console/jobs/{job_id}", get(jobs::job_page))
        .route("/console/api/jobs", get(jobs::jobs_data))
        .route("/console/devices", get(devices::devices_page))
        .route("/console/agents", get(agents::agents_page))
        .route("/console/files/{file_id}", get(download::file))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/console.js", get(script))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

/// What a page may load and do: this origin only, no inline script or
/// style, no framing; answers are never cached (they show live state).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn not_found() -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, "the console has no such page")
}

/// Why the console did not do what was asked.
#[derive(Debug)]
pub enum Refusal {
    /// A page asked for without a session: go to the sign-in page.
    SignIn,
    /// A status and a message for the operator (plain text, so nothing in
    /// it is ever read as markup).
    Status(StatusCode, String),
}

impl Refusal {
    /// A refusal with `status` and why.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal::Status(status, message.into())
    }
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        let status =
            StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("console: {}", error.message);
        }
        Refusal::Status(status, error.message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn => Redirect::to(auth::SIGN_IN).into_response(),
            Refusal::Status(status, message) => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{message}\n"),
            )
                .into_response(),
        }
    }
}
