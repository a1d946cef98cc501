//! Sending requests to the registry and sorting the answers.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::wire::ErrorBody;
use crate::upload::TransportError;

/// Largest answer body read (answers are small JSON documents).
const MAX_ANSWER: usize = 1 << 20;

/// A connection-pooling HTTP client bound to one registry and one token.
#[derive(Clone)]
pub struct RegistryHttp {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: HeaderValue,
    timeout: Duration,
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: Bytes,
}

impl RegistryHttp {
    /// A client for the registry at `base` (`http://host:port`, no trailing
    /// slash) sending `Authorization: Bearer <token>`.
    pub fn new(base: &str, token: &str) -> Result<RegistryHttp, String> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        connector.set_nodelay(true);
        let mut token = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the registry token is not a valid header value".to_string())?;
        token.set_sensitive(true);
        Ok(RegistryHttp {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            base: base.trim_end_matches('/').to_string(),
            token,
            timeout: Duration::from_secs(60),
        })
    }

    /// Sends one request; 2xx comes back as an [`Answer`], everything else as
    /// the [`TransportError`] that says what to do about it.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<Answer, TransportError> {
        let what = format!("{method} {path}");
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|error| TransportError::Rejected(format!("{what}: bad URL: {error}")))?;
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, self.token.clone())
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|error| TransportError::Rejected(format!("{what}: {error}")))?;
        let exchange =
            async {
                let response = self.client.request(request).await.map_err(|error| {
                    TransportError::Transient {
                        message: format!("{what}: {error}"),
                        retry_after: None,
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
                    .map_err(|error| TransportError::Transient {
                        message: format!("{what}: answer cut short: {error}"),
                        retry_after: None,
                    })?
                    .to_bytes();
                Ok::<_, TransportError>((status, retry_after, body))
            };
        let (status, retry_after, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| TransportError::Transient {
                message: format!("{what}: no answer within {:?}", self.timeout),
                retry_after: None,
            })??;
        if status.is_success() {
            return Ok(Answer { status, body });
        }
        let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let message = format!(
            "{what}: HTTP {} {} {}",
            status.as_u16(),
            error.error,
            error.message
        );
        Err(match status {
            StatusCode::CONFLICT => TransportError::LockLost(message),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                TransportError::Transient {
                    message,
                    retry_after,
                }
            }
            status if status.is_server_error() => TransportError::Transient {
                message,
                retry_after,
            },
            _ => TransportError::Rejected(message),
        })
    }
}
