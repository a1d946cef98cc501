//! The axum side of the wire: extractors for the callers (agent bearer token,
//! admin token), path ids, queries and bodies with their size limits, and the
//! answers ([`ApiError`] as `{error, message}`, OAuth2 errors).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use crate::Registry;
use crate::auth::{self, OAuthError};
use crate::files;
use crate::wire::{ApiError, Code, bad};

/// Largest JSON (or form) body.
pub const MAX_JSON: usize = 1 << 20;

/// Path parameters that are not ids the registry made: an agent id is checked
/// against the token, a block id is base64.
const NOT_PLAIN_IDS: [&str; 2] = ["agentId", "blockId"];

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if self.code == Code::Internal {
            tracing::error!("registry error: {}", self.message);
        }
        json_answer(status, self.body())
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        json_answer(status, self.body())
    }
}

/// An answer of `status` with a JSON body already serialized.
pub fn json_answer(status: StatusCode, body: String) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim())
}

/// An agent, authenticated by its bearer token from `/connect/token`; holds its id.
pub struct AgentCaller(pub String);

impl FromRequestParts<Arc<Registry>> for AgentCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        registry: &Arc<Registry>,
    ) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::new(Code::Unauthorized, "a bearer token is required"))?
            .to_string();
        let agent = registry
            .store
            .transaction(move |tx| auth::authenticate(tx, &token))
            .await?;
        Ok(AgentCaller(agent))
    }
}

/// The administrator, with the data folder's admin token.
pub struct AdminCaller;

impl FromRequestParts<Arc<Registry>> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        registry: &Arc<Registry>,
    ) -> Result<Self, ApiError> {
        if !bearer(parts).is_some_and(|token| auth::same_secret(token, registry.admin_token())) {
            return Err(ApiError::new(
                Code::Unauthorized,
                "the admin token is required",
            ));
        }
        Ok(AdminCaller)
    }
}

/// The path parameters in order, percent-decoded; ids the registry made are
/// checked to be plain.
pub struct Ids(pub Vec<String>);

impl Ids {
    /// The only parameter.
    pub fn one(self) -> String {
        self.0.into_iter().next().unwrap_or_default()
    }

    /// The first two parameters.
    pub fn two(self) -> (String, String) {
        let mut values = self.0.into_iter();
        (
            values.next().unwrap_or_default(),
            values.next().unwrap_or_default(),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| bad(format!("bad path: {}", rejection.body_text())))?;
        for (name, value) in &params {
            if !NOT_PLAIN_IDS.contains(&name.as_str()) {
                files::check_id("id", value)?;
            }
        }
        Ok(Ids(params.into_iter().map(|(_, value)| value).collect()))
    }
}

/// A query string parsed as `T`.
pub struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| bad(format!("bad query: {}", rejection.body_text())))?;
        Ok(QueryOf(value))
    }
}

/// A JSON body (Content-Type application/json, at most [`MAX_JSON`] bytes).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if !content_type
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/json")
        {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                format!("a JSON body needs Content-Type application/json, not `{content_type}`"),
            ));
        }
        let bytes = limited(request.into_body(), MAX_JSON).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| bad(format!("the JSON body is not valid: {error}")))
    }
}

/// A form body (`key=value&...`, at most [`MAX_JSON`] bytes), decoded.
pub struct FormBody(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for FormBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = limited(request.into_body(), MAX_JSON).await?;
        let decode = |text: &str| {
            urlencoding::decode(&text.replace('+', " "))
                .map(|text| text.into_owned())
                .unwrap_or_default()
        };
        Ok(FormBody(
            String::from_utf8_lossy(&bytes)
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(key, value)| (decode(key), decode(value)))
                .collect(),
        ))
    }
}

/// An encrypted block as the frames it came in (no copy), at most
/// [`corral_envelope::MAX_BLOCK_LEN`] bytes.
pub struct Block(pub Vec<Bytes>);

impl<S: Send + Sync> FromRequest<S> for Block {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let limit = corral_envelope::MAX_BLOCK_LEN;
        let mut body = request.into_body();
        let mut frames = Vec::new();
        let mut length = 0;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|error| bad(format!("the body could not be read: {error}")))?;
            if let Ok(data) = frame.into_data() {
                length += data.len();
                if length > limit {
                    return Err(too_large(limit));
                }
                frames.push(data);
            }
        }
        Ok(Block(frames))
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(Code::TooLarge, format!("the body is over {limit} bytes"))
}

/// Reads a body of at most `limit` bytes.
async fn limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                too_large(limit)
            } else {
                bad(format!("the body could not be read: {error}"))
            }
        })
}
