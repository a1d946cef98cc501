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
        let mut value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|error| bad(format!("the JSON body is not valid: {error}")))?;
        names_as_declared::<T>(&mut value);
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|error| bad(format!("the JSON body is not valid: {error}")))
    }
}

/// PROTOCOL.md: the server matches names case-insensitively on input (an
/// ASP.NET Core service does; a client may send `LockToken` or `locktoken`).
/// Renames each top-level key of `value` that matches one of `T`'s field
/// names but for case to that name; nested objects (the `EncryptionData`)
/// are kept as sent.
fn names_as_declared<T: DeserializeOwned>(value: &mut serde_json::Value) {
    let serde_json::Value::Object(object) = value else {
        return;
    };
    let fields = field_names::<T>();
    let renames: Vec<(String, &str)> = object
        .keys()
        .filter(|key| !fields.contains(&key.as_str()))
        .filter_map(|key| {
            let field = fields
                .iter()
                .find(|field| field.eq_ignore_ascii_case(key))?;
            Some((key.clone(), *field))
        })
        .collect();
    for (key, field) in renames {
        if let Some(taken) = object.remove(&key) {
            object.entry(field).or_insert(taken);
        }
    }
}

/// The field names `T`'s `Deserialize` asks for (serde passes them to
/// `deserialize_struct`): read by a deserializer that only listens.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Listener<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Heard;
    impl std::fmt::Display for Heard {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names heard")
        }
    }
    impl std::error::Error for Heard {}
    impl serde::de::Error for Heard {
        fn custom<M: std::fmt::Display>(_: M) -> Heard {
            Heard
        }
    }
    impl<'de> serde::Deserializer<'de> for Listener<'_> {
        type Error = Heard;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Heard> {
            Err(Heard)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Heard> {
            *self.0 = fields;
            Err(Heard)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Listener(&mut fields));
    fields
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_match_whatever_their_case() {
        let mut body = serde_json::json!({
            "LockToken": "t", "TASKPROGRESS": 1, "taskTotal": 2, "Other": 3
        });
        names_as_declared::<crate::wire::ProgressBody>(&mut body);
        let read: crate::wire::ProgressBody = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(
            (
                read.lock_token.as_str(),
                read.task_progress,
                read.task_total
            ),
            ("t", 1, 2)
        );
        assert_eq!(body["Other"], 3, "a key of no field is left as sent");
    }
}
