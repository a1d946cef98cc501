//! HTTP to the camera system over `wasi:http`.
//!
//! Only hosts granted by the integration's manifest answer; the host adds the
//! camera credentials the manifest names, so none are needed here.
//!
//! ```no_run
//! # fn main() -> Result<(), corral_guest::http::HttpError> {
//! let devices: serde_json::Value = corral_guest::http::get("http://10.0.0.5/api/devices")?
//!     .ok()?
//!     .json()?;
//! # Ok(()) }
//! ```

use std::fmt;

use crate::JobError;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::streams::{InputStream, StreamError};

/// Why a request failed.
#[derive(Debug)]
pub enum HttpError {
    /// The URL could not be parsed.
    BadUrl(String),
    /// The host refused the request: the manifest does not grant this destination.
    Denied(String),
    /// The request failed on the way (connection refused, timeout, reset, ...).
    Transport(String),
    /// The server answered with a status other than 2xx (see [`Response::ok`]).
    Status { status: u16, url: String },
    /// The body was not what was expected (not JSON, cut short, ...).
    Body(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadUrl(why) => write!(f, "bad URL: {why}"),
            HttpError::Denied(why) => write!(f, "request denied by the sandbox: {why}"),
            HttpError::Transport(why) => write!(f, "request failed: {why}"),
            HttpError::Status { status, url } => write!(f, "{url} answered HTTP {status}"),
            HttpError::Body(why) => write!(f, "bad response body: {why}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// A denied request fails the job; a camera system that cannot be reached makes
/// it `unavailable` (retried later); a 404 means the job asks for something that
/// does not exist.
impl From<HttpError> for JobError {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Transport(_) => JobError::Unavailable(error.to_string()),
            HttpError::Status { status: 404, .. } => JobError::Unsupported(error.to_string()),
            HttpError::Status { status, .. } if status == 503 || status == 429 => {
                JobError::Unavailable(error.to_string())
            }
            _ => JobError::Failed(error.to_string()),
        }
    }
}

/// A request being built (GET unless [`Request::method`] says otherwise; no body).
pub struct Request {
    url: String,
    method: String,
    headers: Vec<(String, Vec<u8>)>,
}

/// Starts a GET request to `url` (`http://host:port/path?query`).
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::get(url).send()
}

impl Request {
    /// A GET request to `url`.
    pub fn get(url: &str) -> Request {
        Request {
            url: url.to_string(),
            method: "GET".into(),
            headers: Vec::new(),
        }
    }

    /// Sets the method (`"HEAD"`, `"POST"`, ...). The host allows only the
    /// methods the manifest's grant lists (`GET` and `HEAD` unless it lists others).
    pub fn method(mut self, method: &str) -> Request {
        self.method = method.to_ascii_uppercase();
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }

    /// Sends the request and waits for the response head.
    pub fn send(self) -> Result<Response, HttpError> {
        let url = ParsedUrl::parse(&self.url)?;
        let headers = Fields::from_list(&self.headers)
            .map_err(|error| HttpError::BadUrl(format!("bad header: {error:?}")))?;
        let request = OutgoingRequest::new(headers);
        let invalid = |what: &str| HttpError::BadUrl(format!("{what} of {}", self.url));
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            other => Method::Other(other.to_string()),
        };
        request
            .set_method(&method)
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&url.scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|()| invalid("authority"))?;
        request
            .set_path_with_query(Some(&url.path_with_query))
            .map_err(|()| invalid("path"))?;
        let pending = outgoing_handler::handle(request, None).map_err(request_error)?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(request_error(code)),
            Some(Err(())) | None => {
                return Err(HttpError::Transport("response already taken".into()));
            }
        };
        Ok(Response {
            url: self.url,
            inner: response,
        })
    }
}

fn request_error(code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
            HttpError::Denied(format!("{code:?}"))
        }
        ErrorCode::InternalError(Some(message)) => HttpError::Transport(message),
        other => HttpError::Transport(format!("{other:?}")),
    }
}

/// The answer to a request: status, headers and a body to read or splice.
pub struct Response {
    url: String,
    inner: IncomingResponse,
}

impl Response {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.inner.status()
    }

    /// The first value of header `name`, if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.inner
            .headers()
            .get(&name.to_ascii_lowercase())
            .into_iter()
            .next()
            .and_then(|value| String::from_utf8(value).ok())
    }

    /// The `Content-Length` of the body, when the server sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    /// This response if its status is 2xx, else [`HttpError::Status`].
    pub fn ok(self) -> Result<Response, HttpError> {
        match self.status() {
            200..=299 => Ok(self),
            status => Err(HttpError::Status {
                status,
                url: self.url,
            }),
        }
    }

    /// Reads the whole body into memory. Fine for small answers; splice big ones.
    pub fn bytes(self) -> Result<Vec<u8>, HttpError> {
        let (_body, input) = self.into_body_stream().map_err(body_error)?;
        let mut bytes = Vec::new();
        loop {
            match input.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => return Ok(bytes),
                Err(StreamError::LastOperationFailed(error)) => {
                    return Err(HttpError::Body(error.to_debug_string()));
                }
            }
        }
    }

    /// Reads the body as JSON into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, HttpError> {
        let url = self.url.clone();
        let bytes = self.bytes()?;
        serde_json::from_slice(&bytes).map_err(|error| {
            HttpError::Body(format!("{url} did not answer the expected JSON: {error}"))
        })
    }

    /// The body as a `wasi:io` input stream. Keep the returned body alive while
    /// the stream is read, and drop the stream first.
    pub fn into_body_stream(self) -> std::io::Result<(IncomingBody, InputStream)> {
        let body = self
            .inner
            .consume()
            .map_err(|()| std::io::Error::other("response body already taken"))?;
        let stream = body
            .stream()
            .map_err(|()| std::io::Error::other("response body stream already taken"))?;
        Ok((body, stream))
    }
}

fn body_error(error: std::io::Error) -> HttpError {
    HttpError::Body(error.to_string())
}

struct ParsedUrl {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl ParsedUrl {
    fn parse(url: &str) -> Result<ParsedUrl, HttpError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| HttpError::BadUrl(format!("{url} has no scheme")))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => Scheme::Other(other.to_string()),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(HttpError::BadUrl(format!("{url} has no host")));
        }
        let path_with_query = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(ParsedUrl {
            scheme,
            authority: authority.to_string(),
            path_with_query,
        })
    }
}
