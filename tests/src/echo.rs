//! A camera that reflects requests, as RFC 9110 lets `TRACE` do and as many
//! embedded servers' debug pages do. Untrusted cameras behave like this; the
//! sandbox must not let a guest read the host's credentials through one.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Starts a camera whose every answer's body is the request head it received,
/// with the `Authorization` it received in an `X-Echo-Authorization` header too.
pub async fn start() -> SocketAddr {
    serve(|head| {
        let text = String::from_utf8_lossy(head).into_owned();
        let authorization = text
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("authorization")
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_default();
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: message/http\r\nx-echo-authorization: {authorization}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        )
        .into_bytes()
    })
    .await
}

/// Starts a camera that reflects the request head only in the body, after
/// `padding` bytes of filler, so that it arrives chunks after the answer's head
/// (the streamed and spliced path).
pub async fn start_body_only(padding: usize) -> SocketAddr {
    serve(move |head| {
        let mut body = vec![0xabu8; padding];
        body.extend_from_slice(head);
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        answer
    })
    .await
}

/// Starts a camera that hands the credentials back transformed, by path:
/// `/password` writes the decoded password alone, `/unpadded` the base64
/// token without its `=` padding, `/gzip` the request head labelled
/// `Content-Encoding: gzip` (as if compressed), and any other path the
/// request head, or the slice of it a `Range: bytes=a-b` names (`206`).
pub async fn start_transforming() -> SocketAddr {
    use base64::Engine as _;
    serve(|head| {
        let text = String::from_utf8_lossy(head).into_owned();
        let header = |wanted: &str| {
            text.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case(wanted)
                    .then(|| value.trim().to_string())
            })
        };
        let path = text.split(' ').nth(1).unwrap_or("/").to_string();
        let token = header("authorization")
            .and_then(|value| value.split_once(' ').map(|(_, token)| token.to_string()))
            .unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&token)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        let (status, extra, body) = match path.as_str() {
            "/password" => {
                let password = decoded.split_once(':').map_or("", |(_, p)| p);
                ("200 OK", String::new(), format!("your password is {password}"))
            }
            "/unpadded" => (
                "200 OK",
                String::new(),
                format!("token {}", token.trim_end_matches('=')),
            ),
            "/gzip" => ("200 OK", "content-encoding: gzip\r\n".into(), text.clone()),
            _ => match header("range").and_then(|range| {
                let (from, to) = range.strip_prefix("bytes=")?.split_once('-')?;
                Some((from.parse::<usize>().ok()?, to.parse::<usize>().ok()?))
            }) {
                Some((from, to)) if from < text.len() => {
                    let to = to.min(text.len() - 1);
                    ("206 Partial Content", String::new(), text[from..=to].to_string())
                }
                _ => ("200 OK", String::new(), text.clone()),
            },
        };
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await
}

/// Serves on loopback: reads each request's head and writes `reply(head)`,
/// in small writes.
async fn serve(reply: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                for chunk in reply(&head).chunks(7919) {
                    if stream.write_all(chunk).await.is_err() {
                        return;
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}
