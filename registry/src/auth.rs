//! Service principals and bearer tokens: `/connect/token` checks a JWT-bearer
//! assertion (RFC 7523, RS512) against the principal's public key (signature,
//! `iss`/`sub`, `aud`, `exp`, `nbf`, a `jti` never seen before) or a client
//! secret, and hands out an opaque token that the agent API then requires.

use std::time::{Duration, SystemTime};

use crate::params;
use crate::store::Tx;
use josekit::jwk::Jwk;
use josekit::jws::RS512;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::now_ms;
use crate::wire::{ApiError, ApiResult, Code};

/// The tenant the on-premise registry writes into connection files.
pub const TENANT: &str = "on-premise";
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(60);
/// The grant types.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLIENT_CREDENTIALS: &str = "client_credentials";

/// Compares a secret given by a caller with the one expected, in time
/// independent of where they differ (the admin token, CSRF tokens).
pub fn same_secret(given: &str, expected: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), expected.as_bytes()).is_ok()
}

/// A random opaque value (tokens, lock tokens, secrets).
pub fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A Clearance connection file, as the registry writes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionFile {
    /// `["{url}/connect"]`.
    pub security_token_service_base_addresses: Vec<String>,
    /// `["{url}"]`.
    pub api_base_addresses: Vec<String>,
    /// The agent id.
    pub service_principal_id: String,
    /// [`TENANT`].
    pub tenant_id: String,
    /// The private RSA JWK.
    pub service_principal_key: serde_json::Value,
}

/// Registers agent `agent_id` (a new key; any earlier key of it is replaced)
/// and returns its connection file and a client secret for `client_credentials`.
pub fn add_agent(tx: &Tx<'_>, agent_id: &str, url: &str) -> ApiResult<(ConnectionFile, String)> {
    add_agent_at(tx, agent_id, &[url.to_string()])
}

/// Like [`add_agent`], for a registry served by several nodes: the
/// connection file lists every one of `urls`, in order, and the agent uses
/// the first that answers.
pub fn add_agent_at(
    tx: &Tx<'_>,
    agent_id: &str,
    urls: &[String],
) -> ApiResult<(ConnectionFile, String)> {
    if agent_id.trim().is_empty() || agent_id.contains(['/', '@', ' ']) {
        return Err(ApiError::new(
            Code::BadRequest,
            format!("agent id `{agent_id}` must be non-empty without '/', '@' or spaces"),
        ));
    }
    let urls: Vec<&str> = urls.iter().map(|url| url.trim_end_matches('/')).collect();
    if urls.is_empty() {
        return Err(ApiError::new(
            Code::BadRequest,
            "an agent needs the URL of at least one registry node",
        ));
    }
    if let Some(url) = urls
        .iter()
        .find(|url| !(url.starts_with("http://") || url.starts_with("https://")))
    {
        return Err(ApiError::new(
            Code::BadRequest,
            format!("`{url}` is not an http(s) URL"),
        ));
    }
    let failed = |error: josekit::JoseError| {
        ApiError::new(Code::Internal, format!("cannot make a key: {error}"))
    };
    let mut private = Jwk::generate_rsa_key(2048).map_err(failed)?;
    private.set_key_id(format!("{agent_id}-{}", &random_token()[..8]));
    private.set_algorithm("RS512");
    private.set_key_use("sig");
    let mut public = private.to_public_key().map_err(failed)?;
    if let Some(kid) = private.key_id() {
        public.set_key_id(kid);
    }
    let client_id = format!("{agent_id}@{TENANT}");
    let secret = random_token();
    tx.execute(
        "INSERT INTO principals (client_id, agent_id, public_jwk, secret_sha256, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (client_id) DO UPDATE SET public_jwk = excluded.public_jwk, secret_sha256 = excluded.secret_sha256",
        params![client_id, agent_id, public.to_string(), sha256_hex(&secret), now_ms()],
    )?;
    let key: serde_json::Value = serde_json::from_str(&private.to_string())
        .map_err(|error| ApiError::new(Code::Internal, error.to_string()))?;
    Ok((
        ConnectionFile {
            security_token_service_base_addresses: urls
                .iter()
                .map(|url| format!("{url}/connect"))
                .collect(),
            api_base_addresses: urls.iter().map(|url| url.to_string()).collect(),
            service_principal_id: agent_id.to_string(),
            tenant_id: TENANT.to_string(),
            service_principal_key: key,
        },
        secret,
    ))
}

/// Whether agent `agent_id` is registered (has a service principal).
pub fn agent_exists(tx: &Tx<'_>, agent_id: &str) -> ApiResult<bool> {
    Ok(tx
        .row(
            "SELECT 1 FROM principals WHERE agent_id = ?1",
            params![agent_id],
        )?
        .is_some())
}

/// The registered agent ids, sorted.
pub fn agents(tx: &Tx<'_>) -> ApiResult<Vec<String>> {
    tx.rows(
        "SELECT DISTINCT agent_id FROM principals ORDER BY agent_id",
        params![],
    )?
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// An OAuth2 error answer.
#[derive(Debug)]
pub struct OAuthError {
    /// HTTP status.
    pub status: u16,
    /// `invalid_client`, `invalid_grant`, ...
    pub error: &'static str,
    /// Why.
    pub description: String,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(&crate::wire::OAuthErrorBody {
            error: self.error,
            error_description: &self.description,
        })
        .unwrap_or_default()
    }
}

impl From<ApiError> for OAuthError {
    fn from(error: ApiError) -> Self {
        OAuthError::new(500, "server_error", error.message)
    }
}

/// Handles a token request (form fields); `audiences` are the URLs this
/// endpoint accepts as `aud`. Returns the token answer's JSON.
pub fn token(
    tx: &Tx<'_>,
    form: &[(String, String)],
    audiences: &[String],
    lifetime: Duration,
) -> Result<String, OAuthError> {
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let client_id = field("client_id")
        .ok_or_else(|| OAuthError::new(400, "invalid_request", "client_id is missing"))?;
    let principal: Option<(String, Option<String>, Option<String>)> = tx
        .row(
            "SELECT agent_id, public_jwk, secret_sha256 FROM principals WHERE client_id = ?1",
            params![client_id],
        )?
        .map(|row| Ok::<_, ApiError>((row.get(0)?, row.get(1)?, row.get(2)?)))
        .transpose()?;
    let (agent_id, public_jwk, secret) = principal.ok_or_else(|| {
        OAuthError::new(401, "invalid_client", format!("unknown client {client_id}"))
    })?;
    match field("grant_type") {
        Some(JWT_BEARER) => {
            let assertion = field("assertion")
                .ok_or_else(|| OAuthError::new(400, "invalid_request", "assertion is missing"))?;
            let public_jwk = public_jwk
                .ok_or_else(|| OAuthError::new(401, "invalid_client", "this client has no key"))?;
            check_assertion(tx, client_id, assertion, &public_jwk, audiences)?;
        }
        Some(CLIENT_CREDENTIALS) => {
            let given = field("client_secret").ok_or_else(|| {
                OAuthError::new(400, "invalid_request", "client_secret is missing")
            })?;
            if secret.as_deref() != Some(sha256_hex(given).as_str()) {
                return Err(OAuthError::new(
                    401,
                    "invalid_client",
                    "wrong client secret",
                ));
            }
        }
        other => {
            return Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported"),
            ));
        }
    }
    let token = random_token();
    let expires = now_ms() + lifetime.as_millis() as i64;
    tx.execute(
        "INSERT INTO tokens (token_sha256, client_id, agent_id, expires_ms) VALUES (?1, ?2, ?3, ?4)",
        params![sha256_hex(&token), client_id, agent_id, expires],
    )?;
    tx.execute(
        "DELETE FROM tokens WHERE expires_ms < ?1",
        params![now_ms()],
    )?;
    let answer = crate::wire::TokenAnswer {
        access_token: token,
        token_type: "Bearer".to_string(),
        expires_in: lifetime.as_secs().max(1),
    };
    Ok(serde_json::to_string(&answer).unwrap_or_default())
}

fn check_assertion(
    tx: &Tx<'_>,
    client_id: &str,
    assertion: &str,
    public_jwk: &str,
    audiences: &[String],
) -> Result<(), OAuthError> {
    let invalid = |why: String| OAuthError::new(400, "invalid_grant", why);
    let jwk = Jwk::from_bytes(public_jwk.as_bytes())
        .map_err(|error| OAuthError::new(500, "server_error", error.to_string()))?;
    let verifier = RS512
        .verifier_from_jwk(&jwk)
        .map_err(|error| OAuthError::new(500, "server_error", error.to_string()))?;
    let (payload, header) =
        josekit::jwt::decode_with_verifier(assertion, &verifier).map_err(|error| {
            invalid(format!(
                "the assertion's signature does not verify with this client's key: {error}"
            ))
        })?;
    if header.key_id() != jwk.key_id() {
        return Err(invalid(format!(
            "the assertion names key {:?}, not this client's",
            header.key_id()
        )));
    }
    if payload.issuer() != Some(client_id) || payload.subject() != Some(client_id) {
        return Err(invalid("iss and sub must both be the client id".into()));
    }
    let audience_ok = payload.audience().is_some_and(|list| {
        list.iter()
            .any(|aud| audiences.iter().any(|accepted| accepted == aud))
    });
    if !audience_ok {
        return Err(invalid(format!(
            "aud {:?} is not this token endpoint",
            payload.audience()
        )));
    }
    let now = SystemTime::now();
    match payload.expires_at() {
        Some(exp) if exp + LEEWAY > now => {}
        _ => return Err(invalid("the assertion has expired (or has no exp)".into())),
    }
    if payload.not_before().is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err(invalid("the assertion is not valid yet (nbf)".into()));
    }
    let jti = payload
        .jwt_id()
        .ok_or_else(|| invalid("the assertion has no jti".into()))?;
    let expires_ms = payload
        .expires_at()
        .and_then(|exp| exp.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(now_ms(), |since| since.as_millis() as i64);
    let inserted = tx.execute(
        "INSERT INTO used_jtis (jti, expires_ms) VALUES (?1, ?2) ON CONFLICT (jti) DO NOTHING",
        params![
            format!("{client_id}/{jti}"),
            expires_ms + LEEWAY.as_millis() as i64
        ],
    )?;
    if inserted == 0 {
        return Err(invalid(format!("jti {jti} was already used")));
    }
    tx.execute(
        "DELETE FROM used_jtis WHERE expires_ms < ?1",
        params![now_ms()],
    )?;
    Ok(())
}

/// The agent a bearer token belongs to, if it is valid.
pub fn authenticate(tx: &Tx<'_>, token: &str) -> ApiResult<String> {
    let agent: Option<String> = tx
        .row(
            "SELECT agent_id FROM tokens WHERE token_sha256 = ?1 AND expires_ms > ?2",
            params![sha256_hex(token), now_ms()],
        )?
        .map(|row| row.get(0))
        .transpose()?;
    agent.ok_or_else(|| ApiError::new(Code::Unauthorized, "the bearer token is unknown or expired"))
}
