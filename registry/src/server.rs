//! The HTTP server: the axum app built from the route table ([`app`]), the
//! fault gate in front of every endpoint that takes faults, and the
//! connections (HTTP/1, TCP_NODELAY, room for a 4 MiB block), which close
//! without an answer when a fault drops or loses one. No input makes it panic:
//! every handler returns a `Result`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::header::RETRY_AFTER;
use http::{Method, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower_service::Service;
use utoipa_axum::router::OpenApiRouter;

use crate::Registry;
use crate::auth::OAuthError;
use crate::faults::Fault;
use crate::routes::{self, Endpoint};
use crate::wire::{ApiError, Code};

/// Accepts connections until the task is dropped.
pub async fn serve(registry: Arc<Registry>, listener: TcpListener) {
    let app = app(registry);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let service = Severing(app.clone());
        connections.spawn(async move {
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

/// The whole registry app with its state: every route of the table behind its
/// fault gate, `/openapi.json`, the console, and `{error, message}` answers for unknown
/// routes and methods. Served by [`serve`], which also closes connections
/// whose answer a fault dropped or lost.
pub fn app(registry: Arc<Registry>) -> Router {
    let mut router = OpenApiRouter::new();
    for (endpoint, (schemas, paths, method_router)) in routes::table() {
        let method_router = if endpoint.takes_faults() {
            method_router.layer(middleware::from_fn_with_state(
                Gate {
                    registry: registry.clone(),
                    endpoint,
                },
                fault_gate,
            ))
        } else {
            method_router
        };
        router = router.routes((schemas, paths, method_router));
    }
    let (router, _) = router.split_for_parts();
    // The operator console (pages for people, `/` and `/console/…`) never
    // gets injected faults.
    router
        .with_state(registry.clone())
        .merge(crate::console::router(registry))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::new(Code::NotFound, format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// What a fault gate needs: the switches and the endpoint they are rolled for.
#[derive(Clone)]
struct Gate {
    registry: Arc<Registry>,
    endpoint: Endpoint,
}

/// Marks an answer whose connection must close without it.
#[derive(Clone, Copy)]
struct Severed(&'static str);

/// Rolls the faults for one call: refuses it, drops it before any work, or
/// loses its answer after the work is done.
async fn fault_gate(
    axum::extract::State(gate): axum::extract::State<Gate>,
    request: Request,
    next: Next,
) -> Response {
    match gate.registry.faults().roll(gate.endpoint) {
        None => next.run(request).await,
        Some(Fault::Refuse {
            status,
            retry_after,
        }) => injected_refusal(gate.endpoint, status, retry_after),
        Some(Fault::Drop) => {
            // Nothing was done; the connection closes without an answer.
            let mut answer = StatusCode::SERVICE_UNAVAILABLE.into_response();
            answer
                .extensions_mut()
                .insert(Severed("injected fault: connection dropped"));
            answer
        }
        Some(Fault::Lose) => {
            // The work is done; the answer is lost, as on a dropped connection.
            let mut answer = next.run(request).await;
            answer
                .extensions_mut()
                .insert(Severed("injected fault: answer lost"));
            answer
        }
    }
}

/// An injected 5xx or 429, in the form the endpoint answers errors in.
fn injected_refusal(endpoint: Endpoint, status: u16, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut answer = if endpoint == Endpoint::Token {
        let error = if status == StatusCode::TOO_MANY_REQUESTS {
            "temporarily_unavailable"
        } else {
            "server_error"
        };
        OAuthError {
            status: status.as_u16(),
            error,
            description: "injected fault".to_string(),
        }
        .into_response()
    } else {
        let code = match status {
            StatusCode::TOO_MANY_REQUESTS => Code::TooManyRequests,
            StatusCode::INTERNAL_SERVER_ERROR => Code::Internal,
            _ => Code::Unavailable,
        };
        let mut answer = ApiError::new(code, "injected fault").into_response();
        // The code's status may differ from the injected one (502).
        *answer.status_mut() = status;
        answer
    };
    if let Some(seconds) = retry_after
        && let Ok(value) = seconds.to_string().parse()
    {
        answer.headers_mut().insert(RETRY_AFTER, value);
    }
    answer
}

/// The app as a connection's service: an answer marked [`Severed`] becomes an
/// error, so hyper closes the connection without sending anything.
#[derive(Clone)]
struct Severing(Router);

impl hyper::service::Service<http::Request<Incoming>> for Severing {
    type Response = Response;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, std::io::Error>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let mut router = self.0.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let (method, path) = tracing::enabled!(tracing::Level::DEBUG)
                .then(|| (request.method().clone(), request.uri().path().to_string()))
                .unzip();
            let Ok(answer) = router.call(request).await;
            if let Some(Severed(why)) = answer.extensions().get::<Severed>() {
                return Err(std::io::Error::other(*why));
            }
            if let (Some(method), Some(path)) = (method, path) {
                tracing::debug!(
                    "{method} {path} {} {:?}",
                    answer.status().as_u16(),
                    started.elapsed()
                );
            }
            Ok(answer)
        })
    }
}
