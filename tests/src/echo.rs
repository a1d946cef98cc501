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
