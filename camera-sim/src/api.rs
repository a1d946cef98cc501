//! The simulated system's own HTTP API: routes, JSON shapes, ranges, bodies.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use serde::Serialize;

use crate::faults::{FaultSettings, Faults};
use crate::{SimConfig, recording, snapshot};

/// Response body type of every route.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Size of the chunks a recording is streamed in.
const CHUNK: usize = 256 * 1024;
/// Largest fault-settings document accepted.
const MAX_FAULTS_JSON: usize = 16 * 1024;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CameraList<'a> {
    cameras: Vec<Camera<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Camera<'a> {
    camera_id: &'a str,
    display_name: &'a str,
    vendor: &'a str,
    model_name: &'a str,
    location: Location,
}

#[derive(Serialize)]
struct Location {
    lat: f64,
    lon: f64,
}

/// Answers one request.
pub async fn handle(
    config: &SimConfig,
    faults: &Faults,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    if !crate::auth::is_authorized(
        request.headers().get(header::AUTHORIZATION),
        &config.username,
        &config.password,
    ) {
        let mut response = text(StatusCode::UNAUTHORIZED, "credentials required");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"camera-sim\""),
        );
        return response;
    }
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let ["vms", "v2", "faults"] = segments.as_slice() {
        return faults_route(faults, request).await;
    }
    let delay = faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = faults.take_failure() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return text(status, "simulated failure");
    }
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    let query = Query(request.uri().query().unwrap_or(""));
    match segments.as_slice() {
        ["vms", "v2", "cameras"] => cameras(config),
        ["vms", "v2", "cameras", id, "snapshot.jpg"] => match config.device(id) {
            None => text(StatusCode::NOT_FOUND, "no such camera"),
            Some(_) if faults.get().html_snapshots => {
                bytes_response(StatusCode::OK, "image/jpeg", Bytes::from_static(LOGIN_PAGE))
            }
            Some(device) => {
                let at = query.millis("at").unwrap_or_else(now_millis);
                let jpeg = snapshot::snapshot_cached(&device.id, at);
                bytes_response(StatusCode::OK, "image/jpeg", jpeg)
            }
        },
        ["vms", "v2", "cameras", id, "archive"] => match config.device(id) {
            None => text(StatusCode::NOT_FOUND, "no such camera"),
            Some(device) => {
                let (Some(from), Some(to)) = (query.millis("from"), query.millis("to")) else {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "from and to (unix ms) are required",
                    );
                };
                if to <= from {
                    return text(StatusCode::BAD_REQUEST, "to must be after from");
                }
                let range = request.headers().get(header::RANGE).cloned();
                archive(config, faults, &device.id, from, to, range.as_ref())
            }
        },
        _ => text(StatusCode::NOT_FOUND, "no such route"),
    }
}

/// What a camera behind a captive login answers instead of an image.
const LOGIN_PAGE: &[u8] =
    b"<!DOCTYPE html><html><head><title>Login</title></head><body><form method=\"post\" action=\"/login\"><input name=\"user\"><input name=\"password\" type=\"password\"></form></body></html>\n";

fn cameras(config: &SimConfig) -> Response<Body> {
    let list = CameraList {
        cameras: config
            .devices
            .iter()
            .map(|device| Camera {
                camera_id: &device.id,
                display_name: &device.name,
                vendor: &device.make,
                model_name: &device.model,
                location: Location {
                    lat: device.latitude,
                    lon: device.longitude,
                },
            })
            .collect(),
    };
    let json = serde_json::to_vec(&list).expect("the camera list always serializes");
    bytes_response(StatusCode::OK, "application/json", Bytes::from(json))
}

fn archive(
    config: &SimConfig,
    faults: &Faults,
    device_id: &str,
    from: i64,
    to: i64,
    range_header: Option<&HeaderValue>,
) -> Response<Body> {
    let stream = recording::byte_range(config.bitrate_bps, from, to);
    let total = stream.end - stream.start;
    let (status, start, end) = match range_header {
        None => (StatusCode::OK, 0, total),
        Some(value) => match parse_range(value, total) {
            Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
            None => {
                let mut response = text(StatusCode::RANGE_NOT_SATISFIABLE, "bad range");
                response.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{total}")).expect("ascii"),
                );
                return response;
            }
        },
    };
    let settings = faults.get();
    let body = RecordingBody {
        seed: recording::seed(device_id),
        offset: stream.start + start,
        remaining: end - start,
        sent: 0,
        settings,
        pause: None,
    };
    let mut response = Response::new(body.boxed());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{total}", end - 1);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).expect("ascii"),
        );
    }
    response
}

/// Parses a single `bytes=` range into `[start, end)` within `total` bytes.
fn parse_range(value: &HeaderValue, total: u64) -> Option<(u64, u64)> {
    let spec = value.to_str().ok()?.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (total.saturating_sub(n), total)
        }
        (first, "") => (first.parse().ok()?, total),
        (first, last) => (
            first.parse().ok()?,
            last.parse::<u64>().ok()?.saturating_add(1).min(total),
        ),
    };
    (start < end && start < total).then_some((start, end))
}

/// A recording streamed in chunks, generated as it is sent.
struct RecordingBody {
    seed: u64,
    offset: u64,
    remaining: u64,
    sent: u64,
    settings: FaultSettings,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for RecordingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if let Some(pause) = self.pause.as_mut() {
            std::task::ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        if let Some(cut) = self.settings.cut_after_bytes
            && self.sent >= cut
        {
            return Poll::Ready(Some(Err(std::io::Error::other("simulated cut"))));
        }
        let mut len = (self.remaining as usize).min(CHUNK);
        if let Some(cut) = self.settings.cut_after_bytes {
            len = len.min((cut - self.sent).max(1) as usize);
        }
        let mut chunk = vec![0; len];
        recording::fill(self.seed, self.offset, &mut chunk);
        self.offset += len as u64;
        self.sent += len as u64;
        self.remaining -= len as u64;
        if self.settings.chunk_delay_ms > 0 {
            let delay = Duration::from_millis(self.settings.chunk_delay_ms);
            self.pause = Some(Box::pin(tokio::time::sleep(delay)));
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

async fn faults_route(faults: &Faults, request: Request<hyper::body::Incoming>) -> Response<Body> {
    if request.method() == Method::PUT {
        let limited = http_body_util::Limited::new(request.into_body(), MAX_FAULTS_JSON);
        let body = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => return text(StatusCode::BAD_REQUEST, &format!("bad body: {error}")),
        };
        match serde_json::from_slice::<FaultSettings>(&body) {
            Ok(settings) => faults.set(settings),
            Err(error) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("bad faults JSON: {error}"),
                );
            }
        }
    }
    let json = serde_json::to_vec(&faults.get()).expect("fault settings always serialize");
    bytes_response(StatusCode::OK, "application/json", Bytes::from(json))
}

struct Query<'a>(&'a str);

impl Query<'_> {
    fn millis(&self, name: &str) -> Option<i64> {
        self.0
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| value.parse().ok())
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let length = body.len();
    let mut response = Response::new(
        http_body_util::Full::new(body)
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    bytes_response(status, "text/plain", Bytes::from(format!("{message}\n")))
}

#[cfg(test)]
mod tests {
    use super::parse_range;
    use http::HeaderValue;

    #[test]
    fn ranges_parse_like_rfc_9110() {
        let r = |s: &'static str| parse_range(&HeaderValue::from_static(s), 1000);
        assert_eq!(r("bytes=0-99"), Some((0, 100)));
        assert_eq!(r("bytes=900-"), Some((900, 1000)));
        assert_eq!(r("bytes=-100"), Some((900, 1000)));
        assert_eq!(r("bytes=990-2000"), Some((990, 1000)));
        assert_eq!(r("bytes=1000-"), None);
        assert_eq!(r("bytes=0-1,5-6"), None);
        assert_eq!(r("items=0-1"), None);
    }
}
