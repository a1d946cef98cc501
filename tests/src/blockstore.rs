//! A small loopback server speaking PROTOCOL.md's upload calls (Initialize,
//! upload block, complete file), for testing and benchmarking the upload
//! pipeline before the on-premise registry exists. It hands out real keys,
//! checks every commit with the envelope's decryptor, and keeps the ciphertext
//! and metadata so an outside reader can decrypt them. Faults: a share of block
//! uploads (spread evenly, so every run sees them) answered 503 (with
//! `Retry-After: 0`) or cut, and a lost lock (409).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use corral_envelope::decrypt::Decryptor;
use corral_envelope::keys::{WrapAlgorithm, generate};
use corral_envelope::{EncryptionData, KeyUnwrapper, MAX_BLOCK_LEN};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server does with blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Keep blocks, verify and keep committed files.
    Everything,
    /// Count bytes only (benchmarks).
    Nothing,
}

/// A committed file.
#[derive(Debug, Clone)]
pub struct CommittedFile {
    /// The name given at Initialize.
    pub name: String,
    /// The blocks in commit order, concatenated (what the real service stores).
    pub ciphertext: Vec<u8>,
    /// The commit's metadata.
    pub encryption_data: EncryptionData,
    /// The private JWK of the file's key (JSON).
    pub private_jwk: String,
    /// The plaintext our decryptor recovered.
    pub plaintext: Vec<u8>,
}

struct OpenFile {
    name: String,
    private_jwk: String,
    blocks: HashMap<String, Bytes>,
}

/// Counters and switches.
#[derive(Default)]
pub struct Stats {
    /// Block bytes received.
    pub block_bytes: AtomicU64,
    /// Block uploads answered with a fault.
    pub faults: AtomicU64,
    /// Commits accepted.
    pub commits: AtomicU64,
}

struct State {
    algorithm: WrapAlgorithm,
    keep: Keep,
    fault_per_mille: AtomicU64,
    puts: AtomicU64,
    lock_lost: AtomicBool,
    next_id: AtomicU64,
    open: Mutex<HashMap<String, OpenFile>>,
    committed: Mutex<HashMap<String, CommittedFile>>,
    stats: Stats,
}

/// The running server; stops when dropped.
pub struct BlockStore {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl BlockStore {
    /// Starts a server handing out `algorithm` keys.
    pub async fn start(algorithm: WrapAlgorithm, keep: Keep) -> BlockStore {
        let listener = TcpListener::bind(crate::loopback())
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(State {
            algorithm,
            keep,
            fault_per_mille: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            lock_lost: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            open: Mutex::default(),
            committed: Mutex::default(),
            stats: Stats::default(),
        });
        let task = tokio::spawn(serve(listener, state.clone()));
        BlockStore { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A registry client of this server (tokens by client credentials).
    pub fn client(&self) -> corral::client::RegistryClient {
        client_for(&self.base_url())
    }

    /// Uploads for a media job through this server.
    pub fn uploads(&self) -> corral::client::JobUploads {
        uploads_for(&self.base_url())
    }
}

/// A registry client of the block store at `base_url` (tokens by client credentials).
pub fn client_for(base_url: &str) -> corral::client::RegistryClient {
    {
        use corral::client::auth::{Credentials, TokenSource};
        use corral::client::http::HttpClient;
        let http = HttpClient::new(None).expect("HTTP client");
        let credentials = Credentials::ClientSecret {
            client_id: "test".into(),
            secret: "secret".into(),
        };
        let tokens = TokenSource::new(
            http.clone(),
            &format!("{base_url}/connect/token"),
            credentials,
        );
        let retry = corral::client::retry::RetryPolicy {
            base: std::time::Duration::from_millis(5),
            cap: std::time::Duration::from_millis(50),
            deadline: std::time::Duration::from_secs(60),
        };
        corral::client::RegistryClient::new(http, base_url, "agent-test", tokens, retry)
    }
}

/// Uploads for a media job through the block store at `base_url`.
pub fn uploads_for(base_url: &str) -> corral::client::JobUploads {
    corral::client::JobUploads::new(
        client_for(base_url),
        "job-1",
        "lock-1",
        corral::protocol::FileKind::Media,
        None,
        None,
    )
}

impl BlockStore {
    /// Answers this share (0.0 to 1.0) of block uploads with a 503 or a cut.
    pub fn set_fault_rate(&self, rate: f64) {
        self.state
            .fault_per_mille
            .store((rate * 1000.0) as u64, Ordering::Relaxed);
    }

    /// Answers every block upload and commit with 409 from now on.
    pub fn lose_lock(&self) {
        self.state.lock_lost.store(true, Ordering::Relaxed);
    }

    /// The file committed under `file_id`.
    pub fn committed(&self, file_id: &str) -> Option<CommittedFile> {
        self.state.committed.lock().unwrap().get(file_id).cloned()
    }

    /// Number of committed files.
    pub fn committed_count(&self) -> usize {
        self.state.committed.lock().unwrap().len()
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }
}

impl Drop for BlockStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { handle(&state, request).await }
            });
            let _ = http1::Builder::new()
                .max_buf_size(MAX_BLOCK_LEN + 64 * 1024)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

fn answer(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    Ok(response)
}

fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    answer(status, body)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Initialize {
    file_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complete {
    block_ids: Vec<String>,
    encryption_data: EncryptionData,
    content_length: u64,
}

async fn handle(state: &State, request: Request<Incoming>) -> Answer {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    if path == "/connect/token" {
        // Any client_credentials pair gets a short-lived token.
        let body = serde_json::json!({ "access_token": "blockstore-token", "token_type": "Bearer", "expires_in": 300 });
        return answer(StatusCode::OK, body.to_string());
    }
    let Some(rest) = path.strip_prefix("/agentservice/api/v1/") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route");
    };
    let segments: Vec<String> = rest.split('/').map(percent_decode).collect();
    if state.keep == Keep::Nothing && method == hyper::Method::PUT {
        // Count the block as it streams by, holding none of it.
        let mut body = request.into_body();
        let mut length = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            length += frame.data_ref().map_or(0, |data| data.len() as u64);
        }
        state.stats.block_bytes.fetch_add(length, Ordering::Relaxed);
        return answer(StatusCode::CREATED, "");
    }
    let body = match Limited::new(request.into_body(), MAX_BLOCK_LEN + 1)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE", "body too large"),
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["jobs", _job, "files", _kind]) => {
            let Ok(init) = serde_json::from_slice::<Initialize>(&body) else {
                return error(StatusCode::BAD_REQUEST, "BAD_JSON", "bad Initialize body");
            };
            let id = format!("file-{}", state.next_id.fetch_add(1, Ordering::Relaxed));
            let (public, private) =
                generate(&format!("kek-{id}"), state.algorithm).expect("key generation");
            state.open.lock().unwrap().insert(
                id.clone(),
                OpenFile {
                    name: init.file_name,
                    private_jwk: private,
                    blocks: HashMap::new(),
                },
            );
            let jwk: serde_json::Value = serde_json::from_str(&public).expect("a JWK is JSON");
            answer(
                StatusCode::OK,
                serde_json::json!({ "fileId": id, "jsonWebKey": jwk }).to_string(),
            )
        }
        ("PUT", ["files", file_id, "blocks", block_id]) => {
            if state.lock_lost.load(Ordering::Relaxed) {
                return error(StatusCode::CONFLICT, "LOCK_LOST", "the lock is gone");
            }
            // Faults spread evenly over the uploads (at 30%: the 3rd, 6th, 9th,
            // 13th, ...), alternating a 503 and a cut connection.
            let rate = state.fault_per_mille.load(Ordering::Relaxed);
            let n = state.puts.fetch_add(1, Ordering::Relaxed);
            if rate > 0 && (n + 1) * rate / 1000 != n * rate / 1000 {
                let fault = state.stats.faults.fetch_add(1, Ordering::Relaxed);
                if fault.is_multiple_of(2) {
                    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "BUSY", "try again")?;
                    response
                        .headers_mut()
                        .insert("retry-after", "0".parse().expect("header"));
                    return Ok(response);
                }
                return Err(std::io::Error::other("simulated cut"));
            }
            state
                .stats
                .block_bytes
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            let mut open = state.open.lock().unwrap();
            let Some(file) = open.get_mut(*file_id) else {
                return error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown file");
            };
            if state.keep == Keep::Everything {
                file.blocks.insert(block_id.to_string(), body);
            }
            answer(StatusCode::CREATED, "")
        }
        ("POST", ["files", file_id, "complete"]) => {
            if state.lock_lost.load(Ordering::Relaxed) {
                return error(StatusCode::CONFLICT, "LOCK_LOST", "the lock is gone");
            }
            let Ok(complete) = serde_json::from_slice::<Complete>(&body) else {
                return error(StatusCode::BAD_REQUEST, "BAD_JSON", "bad complete body");
            };
            commit(state, file_id, complete)
        }
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route"),
    }
}

fn commit(state: &State, file_id: &str, complete: Complete) -> Answer {
    let Some(file) = state.open.lock().unwrap().remove(file_id) else {
        if state.committed.lock().unwrap().contains_key(file_id) {
            return answer(StatusCode::NO_CONTENT, "");
        }
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown file");
    };
    if state.keep == Keep::Nothing {
        state.stats.commits.fetch_add(1, Ordering::Relaxed);
        return answer(StatusCode::NO_CONTENT, "");
    }
    let mut blocks = Vec::new();
    for id in &complete.block_ids {
        match file.blocks.get(id) {
            Some(block) => blocks.push(block.to_vec()),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "MISSING_BLOCK",
                    &format!("block {id} was never uploaded"),
                );
            }
        }
    }
    let ciphertext = blocks.concat();
    let unwrapper = KeyUnwrapper::from_jwk_json(file.private_jwk.as_bytes()).expect("our own key");
    let plaintext = Decryptor::new(
        &complete.encryption_data,
        &unwrapper,
        complete.content_length,
    )
    .and_then(|decryptor| decryptor.decrypt_all(blocks));
    let plaintext = match plaintext {
        Ok(plaintext) => plaintext,
        Err(why) => return error(StatusCode::BAD_REQUEST, "BAD_FILE", &why.to_string()),
    };
    state.committed.lock().unwrap().insert(
        file_id.to_string(),
        CommittedFile {
            name: file.name,
            ciphertext,
            encryption_data: complete.encryption_data,
            private_jwk: file.private_jwk,
            plaintext,
        },
    );
    state.stats.commits.fetch_add(1, Ordering::Relaxed);
    answer(StatusCode::NO_CONTENT, "")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(value) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
