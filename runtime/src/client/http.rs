//! HTTP(S) to the registry and its token service: rustls with the system's
//! roots (plus an optional extra CA for on-premise registries), a connect
//! timeout and a wait for each call's answer ([`Wait`]), pooled connections;
//! answers sorted into [`RegistryError`]s.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::RegistryError;
use crate::protocol::ErrorBody;

/// Largest answer body read (answers are small JSON documents).
const MAX_ANSWER: usize = 16 << 20;

/// How long a call waits for its whole answer before it counts as a node
/// that does not answer (and, with several nodes, moves to the next).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A call with a small body (token, poll, lock, renew, progress,
    /// Initialize, job endings) when there is another node to move to
    /// (`Nodes::wait`): 10 s. A node that accepts connections but stops
    /// answering (a hung process) is left well before a third of a default
    /// 60 s lease, when renewals begin, runs out.
    Brief,
    /// A 4 MiB block, or a file's commit, which the registry answers only
    /// after it has read and checked every block: 60 s.
    Bulk,
}

impl Wait {
    /// The wait itself.
    pub const fn duration(self) -> Duration {
        match self {
            Wait::Brief => Duration::from_secs(10),
            Wait::Bulk => Duration::from_secs(60),
        }
    }
}

/// A pooled HTTP(S) client.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    connector: HttpsConnector<HttpConnector>,
}

fn pooled(
    connector: HttpsConnector<HttpConnector>,
) -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: Bytes,
}

impl HttpClient {
    /// A client trusting the system's roots and, if given, the PEM
    /// certificates in `extra_ca`.
    pub fn new(extra_ca: Option<&Path>) -> Result<HttpClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = extra_ca {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|error| format!("cannot read CA file {}: {error}", path.display()))?;
            for cert in certs {
                let cert = cert
                    .map_err(|error| format!("CA file {} is not PEM: {error}", path.display()))?;
                roots.add(cert).map_err(|error| {
                    format!(
                        "CA file {} holds a bad certificate: {error}",
                        path.display()
                    )
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS set-up failed: {error}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HttpClient {
            client: pooled(connector.clone()),
            connector,
        })
    }

    /// The same settings over a pool of its own: connections made from
    /// another runtime are driven by that runtime (the lease thread's).
    pub fn own_pool(&self) -> HttpClient {
        HttpClient {
            client: pooled(self.connector.clone()),
            connector: self.connector.clone(),
        }
    }

    /// Sends `request`; a 2xx comes back as a [`Reply`], anything else as the
    /// [`RegistryError`] that says what to do next; no whole answer within
    /// `wait` is a node that does not answer. `what` names the call in
    /// messages (never the token).
    pub async fn send(
        &self,
        what: &str,
        request: Request<Full<Bytes>>,
        wait: Wait,
    ) -> Result<Reply, RegistryError> {
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                if error.is_connect() {
                    RegistryError::Unreachable(format!("{what}: {}", source_text(&error)))
                } else {
                    RegistryError::transient(format!("{what}: {}", source_text(&error)))
                }
            })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|error| {
                    RegistryError::transient(format!("{what}: answer cut short: {error}"))
                })?
                .to_bytes();
            Ok::<_, RegistryError>((status, retry_after, body))
        };
        let (status, retry_after, body) = tokio::time::timeout(wait.duration(), exchange)
            .await
            .map_err(|_| {
            RegistryError::transient(format!("{what}: {NO_ANSWER} {:?}", wait.duration()))
        })??;
        if status.is_success() {
            return Ok(Reply { status, body });
        }
        Err(classify(what, status, retry_after, &body))
    }
}

/// What a timed-out call's message says (a node that stops answering).
pub const NO_ANSWER: &str = "no answer within";

/// The error for a non-2xx answer.
fn classify(
    what: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> RegistryError {
    let error: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let detail = match (error.error.is_empty(), error.message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(": {}", error.error),
        (true, false) => format!(": {}", error.message),
        (false, false) => format!(": {} ({})", error.message, error.error),
    };
    let message = format!("{what} answered {}{detail}", status.as_u16());
    match status {
        StatusCode::UNAUTHORIZED => RegistryError::Unauthorized(message),
        StatusCode::CONFLICT => RegistryError::LockLost(message),
        StatusCode::GONE => RegistryError::Gone(message),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => RegistryError::Transient {
            message,
            retry_after,
        },
        status if status.is_server_error() => RegistryError::Transient {
            message,
            retry_after,
        },
        status => RegistryError::Rejected {
            status: status.as_u16(),
            code: error.error,
            message,
        },
    }
}

/// The innermost cause of a hyper error, which says what actually happened.
fn source_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text
}
