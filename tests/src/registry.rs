//! The on-premise registry on loopback, in a temporary data folder, with an
//! agent registered and a client holding its connection file.

use std::path::PathBuf;
use std::time::Duration;

use corral::client::RegistryClient;
use corral::client::connection::ConnectionFile;
use corral::client::retry::RetryPolicy;
use corral_registry::{JobJson, NewJob, Registry, RegistryConfig, RunningRegistry, admin, auth};

use crate::backend::Backend;

/// A running registry and what a test needs around it.
pub struct TestRegistry {
    /// The server.
    pub running: RunningRegistry,
    /// Its data folder.
    pub dir: tempfile::TempDir,
    /// Where its state is.
    pub backend: Backend,
}

/// A retry policy fast enough for tests.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(2),
        cap: Duration::from_millis(20),
        deadline: Duration::from_secs(30),
    }
}

impl TestRegistry {
    /// Starts a registry with `config` in a fresh folder (SQLite).
    pub async fn start(config: RegistryConfig) -> TestRegistry {
        TestRegistry::start_on(&Backend::SQLITE, config).await
    }

    /// Starts a registry with `config` in a fresh folder, state on `backend`.
    pub async fn start_on(backend: &Backend, config: RegistryConfig) -> TestRegistry {
        let dir = tempfile::tempdir().expect("temporary folder");
        let running = Registry::with_store(backend.open(dir.path()), config)
            .expect("registry opens")
            .start(crate::loopback())
            .await
            .expect("registry starts");
        TestRegistry {
            running,
            dir,
            backend: backend.clone(),
        }
    }

    /// Another node of this registry: the same state and data folder,
    /// serving on a port of its own (PostgreSQL only: SQLite stays one node).
    pub async fn another_node(&self, config: RegistryConfig) -> RunningRegistry {
        Registry::with_store(self.backend.open(self.dir.path()), config)
            .expect("the second node opens")
            .start(crate::loopback())
            .await
            .expect("the second node starts")
    }

    /// Registers `agent_id` with a connection file listing every one of
    /// `urls` (nodes, in order); returns the file's path.
    pub async fn add_agent_at(&self, agent_id: &str, urls: &[String]) -> PathBuf {
        let (agent, list) = (agent_id.to_string(), urls.to_vec());
        let (file, _) = self
            .running
            .registry()
            .store()
            .transaction(move |tx| auth::add_agent_at(tx, &agent, &list))
            .await
            .expect("agent added");
        let path = self.dir.path().join(format!("{agent_id}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
        path
    }

    /// Registers `agent_id`; returns the path of its connection file and its
    /// client secret.
    pub async fn add_agent(&self, agent_id: &str) -> (PathBuf, String) {
        let (agent, url) = (agent_id.to_string(), self.running.base_url());
        let (file, secret) = self
            .running
            .registry()
            .store()
            .transaction(move |tx| auth::add_agent(tx, &agent, &url))
            .await
            .expect("agent added");
        let path = self.dir.path().join(format!("{agent_id}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
        (path, secret)
    }

    /// A client of `agent_id` from its connection file.
    pub async fn client(&self, agent_id: &str) -> RegistryClient {
        let (path, _) = self.add_agent(agent_id).await;
        let file = ConnectionFile::load(&path).expect("a valid connection file");
        RegistryClient::from_connection_file(&file, agent_id, None, None, fast_retry())
            .expect("client")
    }

    /// A bearer token for `agent_id` (client credentials), for raw requests.
    pub async fn token(&self, agent_id: &str) -> String {
        let (_, secret) = self.add_agent(agent_id).await;
        let body = format!(
            "grant_type=client_credentials&client_id={agent_id}%40on-premise&client_secret={secret}"
        );
        let (status, answer) = raw(
            &self.running.base_url(),
            "POST",
            "/connect/token",
            None,
            "application/x-www-form-urlencoded",
            body.into_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let json: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        json["access_token"].as_str().unwrap().to_string()
    }

    /// A committed file, decrypted from what the registry stored.
    pub async fn plaintext(&self, file_id: &str) -> Vec<u8> {
        let store = self.running.registry().store().clone();
        let id = file_id.to_string();
        let row = store
            .transaction(move |tx| corral_registry::files::committed(tx, &id))
            .await
            .expect("a committed file");
        corral_registry::files::decrypt(&store, &row).expect("it decrypts")
    }

    /// The one committed file of `job`, decrypted.
    pub async fn job_plaintext(&self, job: &JobJson) -> Vec<u8> {
        let committed: Vec<_> = job
            .files
            .iter()
            .flatten()
            .filter(|file| file.committed)
            .collect();
        assert_eq!(
            committed.len(),
            1,
            "one committed file for {}: {:?}",
            job.job_id,
            job.files
        );
        self.plaintext(&committed[0].file_id).await
    }

    /// Posts jobs as the admin would.
    pub async fn post(&self, jobs: Vec<NewJob>) -> Vec<JobJson> {
        self.running
            .registry()
            .store()
            .transaction(move |tx| admin::post_jobs(tx, &jobs))
            .await
            .expect("jobs posted")
    }

    /// One job as the registry sees it now.
    pub async fn job(&self, job_id: &str) -> JobJson {
        let id = job_id.to_string();
        self.running
            .registry()
            .store()
            .transaction(move |tx| corral_registry::jobs::get(tx, &id))
            .await
            .expect("the job exists")
    }
}

/// Makes `attempts` lock attempts at once on `job_ids` (in turn), through
/// each of `clients` in turn; returns how many were granted per job. A
/// refusal other than the 409 of a job locked by someone else panics.
pub async fn lock_race(
    clients: &[RegistryClient],
    job_ids: &[String],
    attempts: usize,
) -> std::collections::HashMap<String, usize> {
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..attempts {
        let (client, job_id) = (
            clients[i % clients.len()].clone(),
            job_ids[i % job_ids.len()].clone(),
        );
        racing.spawn(async move {
            let lease = Duration::from_secs(60);
            (job_id.clone(), client.lock(&job_id, lease).await)
        });
    }
    let mut granted = std::collections::HashMap::new();
    while let Some(attempt) = racing.join_next().await {
        let (job_id, result) = attempt.expect("a lock attempt");
        match result {
            Ok(_) => *granted.entry(job_id).or_insert(0) += 1,
            Err(corral::client::RegistryError::LockLost(_)) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    granted
}

/// A job of `job_type` for `agent` (media jobs get a 10-second range).
pub fn new_job(job_type: &str, agent: &str, device: Option<&str>) -> NewJob {
    let media = job_type == "mediarequest";
    NewJob {
        job_type: job_type.to_string(),
        agent_id: agent.to_string(),
        device_id: device.map(str::to_string),
        start_time_utc: media.then(|| "2026-11-20T10:00:00Z".to_string()),
        end_time_utc: media.then(|| "2026-11-20T10:00:10Z".to_string()),
        parameters: Default::default(),
    }
}

/// One raw HTTP request: (status, body). For testing what the typed client
/// never sends.
pub async fn raw(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("content-type", content_type)];
    headers.extend(
        authorization
            .as_deref()
            .map(|value| ("authorization", value)),
    );
    let (status, _, body) = raw_with(base, method, path, &headers, body).await;
    (status, body)
}

/// One raw HTTP request with `headers` (besides `host`): (status, the
/// answer's headers, body).
pub async fn raw_with(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    use http_body_util::{BodyExt, Full};
    let addr = base.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(
            request
                .body(Full::new(bytes::Bytes::from(body)))
                .expect("request"),
        )
        .await
        .expect("answer");
    let status = response.status().as_u16();
    let answer_headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes().to_vec())
        .unwrap_or_default();
    (status, answer_headers, body)
}
