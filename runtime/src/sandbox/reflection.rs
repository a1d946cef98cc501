//! Defence in depth against a camera that reflects the credentials the host
//! added (a `TRACE`, a page echoing request headers): the answer to a request
//! that carried a credential is searched, headers and every body byte as it
//! passes (the bytes a guest splices included), for the exact value sent. A hit
//! cuts the body before the guest sees the bytes and fails the job.
//!
//! The search holds back the last `needle − 1` bytes of each chunk until the
//! next one has been searched, so a value split across two chunks is caught
//! before any of it reaches the guest. A SIMD substring search (`memchr`'s
//! `memmem`, one pass per form of the value) over each chunk.
//!
//! What it cannot see, and why the rules in front of it matter more: a value
//! the camera transforms (re-encoded, compressed, sliced by `Range` requests).
//! The host asks for `Accept-Encoding: identity` on requests it adds
//! credentials to, never adds them to `TRACE`, and adds them only where the
//! operator bound the secret.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};
use memchr::memmem::Finder;
use wasmtime_wasi_http::WasiBody;

/// The values a credential must never come back as.
#[derive(Clone)]
pub struct Needles {
    finders: Arc<Vec<Finder<'static>>>,
    longest: usize,
}

/// Shortest form searched on its own; shorter ones are searched only as the
/// whole header value (a short string turns up by chance in a recording).
const MIN_ALONE: usize = 12;
/// Shortest password searched for on its own (one in 2^64 that 8 given bytes
/// turn up at a given place of a recording by chance).
const MIN_SECRET: usize = 8;

impl Needles {
    /// The forms of `header_value` (`Basic <base64>`) a reflection would show:
    /// the base64 token without its `=` padding (a page may drop it; the
    /// padded token holds it), or the whole value when the token is too short
    /// to be told from chance; the password alone, as a page that decodes
    /// the header would show it, when it is [`MIN_SECRET`] bytes or longer;
    /// and the decoded `user:password` when the token is short.
    pub fn for_header(header_value: &str, decoded: &str) -> Option<Needles> {
        let token = header_value
            .split_once(' ')
            .map_or(header_value, |(_, token)| token);
        let token = token.trim_end_matches('=');
        let mut patterns: Vec<&str> = Vec::new();
        if let Some((_, password)) = decoded.split_once(':')
            && password.len() >= MIN_SECRET
        {
            patterns.push(password);
        }
        patterns.push(if token.len() >= MIN_ALONE {
            token
        } else {
            header_value
        });
        // The decoded `user:password` only when the token is too short to be
        // searched alone: each form costs a pass over every byte.
        if token.len() < MIN_ALONE && decoded.len() >= MIN_ALONE {
            patterns.push(decoded);
        }
        let longest = patterns.iter().map(|p| p.len()).max()?;
        let finders = patterns
            .iter()
            .map(|pattern| Finder::new(pattern.as_bytes()).into_owned())
            .collect();
        Some(Needles {
            finders: Arc::new(finders),
            longest,
        })
    }

    /// Whether `bytes` hold one of the values.
    pub fn found_in(&self, bytes: &[u8]) -> bool {
        self.finders
            .iter()
            .any(|finder| finder.find(bytes).is_some())
    }

    /// Whether any header value holds one of the values.
    pub fn found_in_headers(&self, headers: &HeaderMap) -> bool {
        headers.iter().any(|(name, value)| {
            self.found_in(name.as_str().as_bytes()) || self.found_in(value.as_bytes())
        })
    }
}

/// A response body searched for [`Needles`] as it streams.
pub struct GuardedBody {
    inner: WasiBody,
    needles: Needles,
    /// The tail of the last chunk, searched but not yet handed on.
    held: Bytes,
    /// A chunk to hand on after `held`.
    pending: Option<Bytes>,
    /// Trailers to hand on once the held tail has gone.
    trailers: Option<Frame<Bytes>>,
    on_reflection: Option<Box<dyn FnOnce() + Send>>,
    tripped: bool,
}

impl GuardedBody {
    /// Guards `inner`; `on_reflection` runs once, on the first hit.
    pub fn new(
        inner: WasiBody,
        needles: Needles,
        on_reflection: impl FnOnce() + Send + 'static,
    ) -> GuardedBody {
        GuardedBody {
            inner,
            needles,
            held: Bytes::new(),
            pending: None,
            trailers: None,
            on_reflection: Some(Box::new(on_reflection)),
            tripped: false,
        }
    }

    fn trip(&mut self) -> wasmtime_wasi_http::Error {
        self.tripped = true;
        self.held = Bytes::new();
        self.pending = None;
        if let Some(report) = self.on_reflection.take() {
            report();
        }
        wasmtime_wasi_http::Error::InternalError(Some(
            "the camera reflected the credentials the host added; the answer was cut".into(),
        ))
    }

    /// Searches `data` (and the seam with the held tail); on success returns
    /// what may be handed on now and keeps the new tail.
    fn admit(&mut self, data: Bytes) -> Result<(Bytes, Option<Bytes>), ()> {
        let keep = self.needles.longest.saturating_sub(1);
        let seam_end = keep.min(data.len());
        if !self.held.is_empty() {
            let mut seam = BytesMut::with_capacity(self.held.len() + seam_end);
            seam.extend_from_slice(&self.held);
            seam.extend_from_slice(&data[..seam_end]);
            if self.needles.found_in(&seam) {
                return Err(());
            }
        }
        if self.needles.found_in(&data) {
            return Err(());
        }
        let held = std::mem::take(&mut self.held);
        if data.len() >= keep {
            let split = data.len() - keep;
            self.held = data.slice(split..);
            if held.is_empty() {
                return Ok((data.slice(..split), None));
            }
            // One frame, not two: a tiny frame of its own would cost the guest
            // a host call of its own.
            let mut now = BytesMut::with_capacity(held.len() + split);
            now.extend_from_slice(&held);
            now.extend_from_slice(&data[..split]);
            return Ok((now.freeze(), None));
        }
        // A chunk shorter than the hold-back: keep the last `keep` bytes of both.
        let mut joined = BytesMut::with_capacity(held.len() + data.len());
        joined.extend_from_slice(&held);
        joined.extend_from_slice(&data);
        let joined = joined.freeze();
        let split = joined.len().saturating_sub(keep);
        self.held = joined.slice(split..);
        Ok((joined.slice(..split), None))
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if this.tripped {
                return Poll::Ready(None);
            }
            if let Some(next) = this.pending.take() {
                return Poll::Ready(Some(Ok(Frame::data(next))));
            }
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(trailers)));
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    if this.held.is_empty() {
                        return Poll::Ready(None);
                    }
                    let last = std::mem::take(&mut this.held);
                    return Poll::Ready(Some(Ok(Frame::data(last))));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let Some(trailers) = frame.trailers_ref()
                        && this.needles.found_in_headers(trailers)
                    {
                        return Poll::Ready(Some(Err(this.trip())));
                    }
                    // The held tail goes first: the trailers end the body.
                    if !this.held.is_empty() {
                        this.trailers = Some(frame);
                        let last = std::mem::take(&mut this.held);
                        return Poll::Ready(Some(Ok(Frame::data(last))));
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
            };
            match this.admit(data) {
                Err(()) => return Poll::Ready(Some(Err(this.trip()))),
                Ok((now, later)) => {
                    this.pending = later;
                    if !now.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(now))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.tripped
            || (self.held.is_empty()
                && self.pending.is_none()
                && self.trailers.is_none()
                && self.inner.is_end_stream())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn body(chunks: Vec<&'static [u8]>) -> WasiBody {
        let frames = chunks.into_iter().map(|chunk| {
            Ok::<_, wasmtime_wasi_http::Error>(Frame::data(Bytes::from_static(chunk)))
        });
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    async fn read(chunks: Vec<&'static [u8]>) -> (Result<Vec<u8>, String>, bool) {
        let needles =
            Needles::for_header("Basic b3BlcmF0b3I6c2ltLXNlY3JldA==", "operator:sim-secret")
                .unwrap();
        let hit = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = hit.clone();
        let mut guarded = GuardedBody::new(body(chunks), needles, move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst)
        });
        let mut seen = Vec::new();
        let result = loop {
            match guarded.frame().await {
                None => break Ok(seen),
                Some(Ok(frame)) => seen.extend_from_slice(&frame.into_data().unwrap_or_default()),
                Some(Err(error)) => {
                    break Err(format!(
                        "{error} after {} bytes: {:?}",
                        seen.len(),
                        String::from_utf8_lossy(&seen)
                    ));
                }
            }
        };
        (result, hit.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[tokio::test]
    async fn the_password_alone_and_the_token_without_padding_are_found() {
        let (result, hit) = read(vec![b"user operator, password sim-secret"]).await;
        assert!(result.is_err() && hit, "the decoded password");
        let (result, hit) = read(vec![b"token b3BlcmF0b3I6c2ltLXNlY3JldA seen"]).await;
        assert!(result.is_err() && hit, "the token without its padding");
    }

    #[tokio::test]
    async fn the_held_tail_passes_before_the_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-done", http::HeaderValue::from_static("1"));
        let frames = vec![
            Ok::<_, wasmtime_wasi_http::Error>(Frame::data(Bytes::from_static(
                b"a body longer than the hold-back of the token",
            ))),
            Ok(Frame::trailers(trailers)),
        ];
        let inner = StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
        let needles =
            Needles::for_header("Basic b3BlcmF0b3I6c2ltLXNlY3JldA==", "operator:sim-secret")
                .unwrap();
        let mut guarded = GuardedBody::new(inner, needles, || {});
        let mut seen = Vec::new();
        let mut saw_trailers = false;
        while let Some(frame) = guarded.frame().await {
            let frame = frame.unwrap();
            assert!(!saw_trailers, "nothing comes after the trailers");
            match frame.into_data() {
                Ok(data) => seen.extend_from_slice(&data),
                Err(frame) => saw_trailers = frame.is_trailers(),
            }
        }
        assert!(saw_trailers);
        assert_eq!(seen, b"a body longer than the hold-back of the token");
    }

    #[tokio::test]
    async fn clean_bodies_pass_whole() {
        let (result, hit) = read(vec![b"hello ", b"w", b"orld", b"", b"Basic xyz"]).await;
        assert_eq!(result.unwrap(), b"hello worldBasic xyz");
        assert!(!hit);
    }

    #[tokio::test]
    async fn a_reflected_value_is_cut_before_any_of_it_passes() {
        let (result, hit) = read(vec![
            b"TRACE / HTTP/1.1\r\nAuthorization: Basic b3BlcmF0b3I6c2lt",
            b"LXNlY3JldA==\r\n\r\n",
        ])
        .await;
        let error = result.unwrap_err();
        assert!(hit);
        assert!(error.contains("reflected"), "{error}");
        assert!(
            !error.contains("b3BlcmF0b3I6c2lt"),
            "part of the token passed: {error}"
        );
        let (result, hit) = read(vec![b"echo b3BlcmF0b3I6c2ltLXNlY3JldA== seen"]).await;
        assert!(result.is_err() && hit);
        let (result, _) = read(vec![
            b"b",
            b"3",
            b"B",
            b"l",
            b"cmF0b3I6c2ltLXNl",
            b"Y3JldA==",
        ])
        .await;
        assert!(result.is_err());
    }
}
