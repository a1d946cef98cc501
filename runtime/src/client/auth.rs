//! Bearer tokens: a JWT-bearer assertion (RFC 7523) signed RS512 with the
//! service principal's key, or client credentials, exchanged at the token
//! endpoint; cached, renewed before expiry and once more after a 401.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::Full;
use josekit::jws::{JwsHeader, RS512};
use josekit::jwt::{self, JwtPayload};
use tokio::sync::Mutex;

use super::connection::ConnectionFile;
use super::http::{HttpClient, Wait};
use super::nodes::Nodes;
use super::{RegistryError, uuid_v4};
use crate::protocol::{CLIENT_CREDENTIALS_GRANT, JWT_BEARER_GRANT, OAuthError, TokenAnswer};

/// How long an assertion is valid.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// How this agent proves who it is.
#[derive(Clone)]
pub enum Credentials {
    /// A JWT-bearer assertion signed with the connection file's key.
    JwtBearer {
        /// `{ServicePrincipalId}@{TenantId}`.
        client_id: String,
        /// The key's `kid`.
        kid: String,
        /// The private JWK.
        key_json: Arc<str>,
    },
    /// `client_credentials` with a secret.
    ClientSecret {
        /// The client id.
        client_id: String,
        /// The secret.
        secret: Arc<str>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::JwtBearer { client_id, kid, .. } => {
                write!(f, "JwtBearer({client_id}, kid {kid})")
            }
            Credentials::ClientSecret { client_id, .. } => write!(f, "ClientSecret({client_id})"),
        }
    }
}

impl Credentials {
    /// The credentials of a connection file.
    pub fn from_connection_file(file: &ConnectionFile) -> Credentials {
        Credentials::JwtBearer {
            client_id: file.client_id.clone(),
            kid: file.kid.clone(),
            key_json: Arc::from(file.key_json.as_str()),
        }
    }
}

struct Cached {
    token: Arc<str>,
    renew_at: Instant,
}

/// Gets and caches bearer tokens.
pub struct TokenSource {
    http: HttpClient,
    endpoints: Nodes,
    credentials: Credentials,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    /// A source exchanging `credentials` at `endpoint` (`{sts}/token`).
    pub fn new(http: HttpClient, endpoint: &str, credentials: Credentials) -> TokenSource {
        TokenSource::with_endpoints(http, &[endpoint.to_string()], credentials)
    }

    /// A source exchanging `credentials` at the first of `endpoints` that
    /// answers (one per registry node; see [`Nodes`]).
    pub fn with_endpoints(
        http: HttpClient,
        endpoints: &[String],
        credentials: Credentials,
    ) -> TokenSource {
        TokenSource {
            http,
            endpoints: Nodes::new(endpoints),
            credentials,
            cached: Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a new one when it is near expiry.
    pub async fn token(&self) -> Result<Arc<str>, RegistryError> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref()
            && Instant::now() < current.renew_at
        {
            return Ok(current.token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        // Renew when a fifth of the lifetime is left (at least 5 s early).
        let early = (lifetime / 5).max(Duration::from_secs(5)).min(lifetime);
        *cached = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime - early,
        });
        Ok(token)
    }

    /// Forgets `token` (after a 401), unless a newer one is already cached.
    pub async fn invalidate(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|current| &*current.token == token)
        {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<(Arc<str>, Duration), RegistryError> {
        let (index, endpoint) = self.endpoints.current();
        let fetched = self.fetch_from(endpoint).await;
        if let Err(error) = &fetched {
            self.endpoints.failed(index, error);
        }
        fetched
    }

    async fn fetch_from(&self, endpoint: &str) -> Result<(Arc<str>, Duration), RegistryError> {
        let form = match &self.credentials {
            Credentials::JwtBearer {
                client_id,
                kid,
                key_json,
            } => {
                let assertion = assertion(endpoint, client_id, kid, key_json)?;
                vec![
                    ("client_id", client_id.as_str().to_string()),
                    ("grant_type", JWT_BEARER_GRANT.to_string()),
                    ("assertion", assertion),
                ]
            }
            Credentials::ClientSecret { client_id, secret } => vec![
                ("client_id", client_id.clone()),
                ("client_secret", secret.to_string()),
                ("grant_type", CLIENT_CREDENTIALS_GRANT.to_string()),
            ],
        };
        let body: Vec<String> = form
            .iter()
            .map(|(name, value)| format!("{name}={}", urlencoding::encode(value)))
            .collect();
        let request = Request::builder()
            .method(Method::POST)
            .uri(endpoint)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body.join("&"))))
            .map_err(|error| {
                RegistryError::invalid(format!("token endpoint {endpoint}: {error}"))
            })?;
        let what = format!("token request to {endpoint}");
        let reply = match self
            .http
            .send(&what, request, self.endpoints.wait(Wait::Brief))
            .await
        {
            Ok(reply) => reply,
            Err(RegistryError::Rejected { message, .. } | RegistryError::Unauthorized(message)) => {
                return Err(RegistryError::Unauthorized(message));
            }
            Err(other) => return Err(other),
        };
        let answer: TokenAnswer = serde_json::from_slice(&reply.body).map_err(|_| {
            let error: OAuthError = serde_json::from_slice(&reply.body).unwrap_or_default();
            RegistryError::Unauthorized(format!("{what}: no token in the answer {}", error.error))
        })?;
        if !answer.token_type.eq_ignore_ascii_case("bearer") {
            return Err(RegistryError::Unauthorized(format!(
                "{what}: token type `{}` is not Bearer",
                answer.token_type
            )));
        }
        Ok((
            Arc::from(answer.access_token.as_str()),
            Duration::from_secs(answer.expires_in.max(1)),
        ))
    }
}

/// A JWT-bearer assertion for `endpoint` (its audience).
fn assertion(
    endpoint: &str,
    client_id: &str,
    kid: &str,
    key_json: &str,
) -> Result<String, RegistryError> {
    // Sign RS512 whatever `alg`/`use` the key was issued with.
    let mut key: serde_json::Map<String, serde_json::Value> = serde_json::from_str(key_json)
        .map_err(|_| RegistryError::invalid("the private key is not JSON"))?;
    for member in ["alg", "use", "key_ops"] {
        key.remove(member);
    }
    let jwk = josekit::jwk::Jwk::from_map(key).map_err(|error| {
        RegistryError::invalid(format!("the private key is not a JWK: {error}"))
    })?;
    let signer = RS512.signer_from_jwk(&jwk).map_err(|error| {
        RegistryError::invalid(format!("the private key cannot sign RS512: {error}"))
    })?;
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id(kid);
    let now = SystemTime::now();
    let mut payload = JwtPayload::new();
    payload.set_issuer(client_id);
    payload.set_subject(client_id);
    payload.set_audience(vec![endpoint.to_string()]);
    payload.set_issued_at(&now);
    payload.set_not_before(&(now - Duration::from_secs(30)));
    payload.set_expires_at(&(now + ASSERTION_LIFETIME));
    payload.set_jwt_id(uuid_v4());
    jwt::encode_with_signer(&payload, &header, &signer)
        .map_err(|error| RegistryError::invalid(format!("signing the assertion failed: {error}")))
}
