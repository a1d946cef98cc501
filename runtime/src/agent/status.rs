//! The local status port (off by default): `/healthz` (503 while the registry
//! cannot be reached; degraded guests listed), Prometheus `/metrics`,
//! `/guests` (the loaded guests: file, name, version, SHA-256, loaded at, jobs
//! run, degraded or paused; and the refused ones) and `POST /reload` (rescan the guests folder now).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::catalog::Catalog;
use super::metrics::Metrics;

/// What the status port shows.
#[derive(Clone)]
pub struct StatusView {
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The guests.
    pub catalog: Catalog,
    /// Wakes the guests folder watcher.
    pub reload: Arc<tokio::sync::Notify>,
}

/// `/healthz`: 503 with the reason while the registry cannot be reached;
/// otherwise 200, `ok`, followed by a line per degraded guest (the agent
/// itself works: restarting it would not help those guests).
fn health(view: &StatusView) -> (StatusCode, String) {
    let degraded = view
        .catalog
        .degraded()
        .into_iter()
        .map(|(guest, why)| format!("degraded: guest {guest}: {why}\n"))
        .collect::<String>();
    match view.metrics.registry.problem() {
        Some(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unavailable: {problem}\n{degraded}"),
        ),
        None => (StatusCode::OK, format!("ok\n{degraded}")),
    }
}

/// Binds the status port; serving runs in a task that ends with the process.
pub async fn start(addr: SocketAddr, view: StatusView) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let view = view.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let view = view.clone();
                    async move {
                        let (status, body) = match (request.method().as_str(), request.uri().path())
                        {
                            (_, "/healthz") => health(&view),
                            (_, "/metrics") => (StatusCode::OK, view.metrics.render()),
                            ("GET", "/guests") => {
                                (StatusCode::OK, view.catalog.describe().to_string())
                            }
                            ("POST", "/reload") => {
                                view.reload.notify_one();
                                (
                                    StatusCode::ACCEPTED,
                                    "rescanning the guests folder\n".to_string(),
                                )
                            }
                            _ => (
                                StatusCode::NOT_FOUND,
                                "try /healthz, /metrics, /guests or POST /reload\n".to_string(),
                            ),
                        };
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}
