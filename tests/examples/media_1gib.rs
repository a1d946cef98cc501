//! `cargo run --release -p corral-tests --example media_1gib [GiB]`
//!
//! One media job of 1 GiB end to end: the agent (this process) runs http-vms,
//! which splices camera-sim's recording into the upload pipeline; the
//! registry decrypts and checks every block before it accepts the commit.
//! camera-sim and the registry run in a child process (this program with
//! `--serve`), so the peak RSS printed is the agent's alone.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral::agent::Agent;
use corral::agent::catalog::Catalog;
use corral::agent::config::AgentConfig;
use corral::bundled;
use corral::client::RegistryClient;
use corral::client::connection::ConnectionFile;
use corral::client::retry::RetryPolicy;
use corral::engine::{Runtime, RuntimeConfig};
use corral_camera_sim::{CameraSim, SimConfig};
use corral_registry::{Registry, RegistryConfig, auth};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// The child: camera-sim and the registry; prints what the agent needs.
async fn serve(dir: &str) {
    let dir = std::path::PathBuf::from(dir);
    let sim = CameraSim::start(SimConfig::with_devices(1), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let registry = Registry::open(&dir.join("registry"), RegistryConfig::default())
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = registry.base_url();
    let (connection, _) = registry
        .registry()
        .store()
        .transaction(move |tx| auth::add_agent(tx, "agent-1", &url))
        .await
        .unwrap();
    std::fs::write(
        dir.join("agent-1.json"),
        serde_json::to_vec(&connection).unwrap(),
    )
    .unwrap();
    let line = serde_json::json!({
        "camera": sim.base_url(),
        "registry": registry.base_url(),
        "admin": registry.registry().admin_token(),
    });
    println!("{line}");
    let _ = tokio::io::AsyncReadExt::read(&mut tokio::io::stdin(), &mut [0u8; 1]).await;
}

async fn admin(
    registry: &str,
    token: &str,
    method: &str,
    path: &str,
    body: String,
) -> serde_json::Value {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("{registry}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        return serve(&args[2]).await;
    }
    let gib: u64 = args.get(1).and_then(|arg| arg.parse().ok()).unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let (camera, registry, token) = (
        info["camera"].as_str().unwrap().to_string(),
        info["registry"].as_str().unwrap().to_string(),
        info["admin"].as_str().unwrap().to_string(),
    );

    let guests = dir.path().join("guests");
    std::fs::create_dir_all(&guests).unwrap();
    std::fs::write(guests.join("http-vms.wasm"), bundled::HTTP_VMS).unwrap();
    let manifest = bundled::HTTP_VMS_MANIFEST
        .replace("http://127.0.0.1:8081", &camera)
        .replace("wall_secs = 300", "wall_secs = 3600");
    std::fs::write(guests.join("http-vms.toml"), manifest).unwrap();
    let connection = dir.path().join("agent-1.json");
    let secrets = bundled::camera_sim_secrets(&camera, "operator", "sim-secret");
    let runtime = Runtime::new(RuntimeConfig { max_instances: 8 })
        .unwrap()
        .with_secrets(std::sync::Arc::new(secrets));
    let catalog = Catalog::load(&runtime, &guests).unwrap();
    let client = RegistryClient::from_connection_file(
        &ConnectionFile::load(&connection).unwrap(),
        "agent-1",
        None,
        None,
        RetryPolicy::default(),
    )
    .unwrap();
    client.check(&[]).await.unwrap();
    let mut config = AgentConfig::new("agent-1", connection.clone(), guests.clone());
    config.poll_interval = Duration::from_millis(100);

    // camera-sim records 4 Mbit/s = 500,000 bytes a second.
    let bytes = gib << 30;
    let seconds = bytes / 500_000;
    let start = time::macros::datetime!(2026-11-20 00:00 UTC);
    let end = start + Duration::from_millis(bytes * 1000 / 500_000);
    let job = serde_json::json!({ "type": "mediarequest", "agentId": "agent-1", "deviceId": "cam-0001",
        "startTimeUtc": corral::protocol::format_rfc3339(start), "endTimeUtc": corral::protocol::format_rfc3339(end) });
    let baseline = status_kib("VmRSS:");
    let posted = admin(
        &registry,
        &token,
        "POST",
        "/admin/api/v1/jobs",
        job.to_string(),
    )
    .await;
    let job_id = posted[0]["jobId"].as_str().unwrap().to_string();
    let started = Instant::now();
    let agent = Agent::with_parts(client, catalog, config, RetryPolicy::default());
    let stop = agent.stopper();
    let task = tokio::spawn(agent.run());
    let mut streamed = None;
    let job = loop {
        let jobs = admin(
            &registry,
            &token,
            "GET",
            "/admin/api/v1/jobs",
            String::new(),
        )
        .await;
        let job = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|job| job["jobId"] == job_id.as_str())
            .unwrap()
            .clone();
        if !matches!(job["state"].as_str(), Some("Available" | "Locked")) {
            break job;
        }
        let total = job["taskTotal"].as_u64().unwrap_or(0);
        if streamed.is_none() && total > 0 && job["taskProgress"].as_u64() == Some(total) {
            streamed = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    stop.drain();
    task.await.unwrap();
    let peak = status_kib("VmHWM:");
    let length = job["files"][0]["length"].as_u64().unwrap_or(0);
    if let Some(streamed) = streamed {
        println!(
            "the guest had moved every byte after {:.2} s; the rest is the registry's commit check",
            streamed.as_secs_f64()
        );
    }
    println!(
        "media job of {seconds} s of video: {} in {} ({length} bytes) in {:.2} s = {:.0} MB/s end to end; agent peak RSS {} MiB ({} MiB above its baseline of {} MiB)",
        job["state"],
        job["files"][0]["fileName"],
        elapsed.as_secs_f64(),
        length as f64 / elapsed.as_secs_f64() / 1e6,
        peak / 1024,
        peak.saturating_sub(baseline) / 1024,
        baseline / 1024,
    );
    assert_eq!(job["state"], "Completed");
    let start_ms = (start.unix_timestamp_nanos() / 1_000_000) as i64;
    let end_ms = (end.unix_timestamp_nanos() / 1_000_000) as i64;
    let range = corral_camera_sim::recording::byte_range(4_000_000, start_ms, end_ms);
    assert_eq!(length, range.end - range.start);
    drop(child.stdin.take());
    let _ = child.wait();
}
