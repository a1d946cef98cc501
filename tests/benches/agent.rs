//! `cargo bench -p corral-tests --bench agent`
//!
//! Thumbnail jobs per second end to end on this machine: the registry, camera-
//! sim and the agent in one process, every job polled, locked, run, its JPEG
//! encrypted, uploaded, verified by the registry and the job completed. Three
//! ways, in one run:
//! - the agent (scheduler, lease keepers, the http-vms guest in the sandbox);
//! - a plain loop of 8 workers (lock → work → complete) running the guest;
//! - the same loop running the same work in native Rust, no wasm.
//!
//! The registry wraps keys with A256KW here: generating an RSA key per file
//! (its default) costs tens of milliseconds and would measure the registry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use corral::client::JobUploads;
use corral::guest::{Guest, JobEnv, JobOutcome};
use corral::protocol::{CompletionState, FileKind, Job};
use corral::sandbox::progress;
use corral::sink::{OutputSink, OutputSpec};
use corral::upload::{UploadConfig, UploadSink};
use corral_camera_sim::SimConfig;
use corral_envelope::keys::WrapAlgorithm;
use corral_registry::RegistryConfig;
use corral_tests::world::World;
use http_body_util::{BodyExt, Empty};

const JOBS: usize = 300;
const WORKERS: usize = 8;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(run());
}

async fn run() {
    let config = RegistryConfig {
        key_algorithm: WrapAlgorithm::A256Kw,
        ..RegistryConfig::default()
    };
    let world = World::start(config, SimConfig::with_devices(8)).await;
    let guest = world
        .runtime
        .load(&world.guests_dir.join("http-vms.wasm"))
        .expect("guest");
    // Warm up: connections, tokens, code paths.
    loop_run(&world, 20, Work::Wasm(guest.clone())).await;
    loop_run(&world, 20, Work::Native).await;

    let agent_time = agent_run(&world).await;
    let wasm_time = loop_run(&world, JOBS, Work::Wasm(guest)).await;
    let native_time = loop_run(&world, JOBS, Work::Native).await;
    let rate = |time: Duration| JOBS as f64 / time.as_secs_f64();
    println!();
    println!(
        "thumbnail jobs end to end, {JOBS} jobs, registry + camera-sim + agent in one process, 2 cores"
    );
    println!("| setup | time | jobs/s |");
    println!("|---|---|---|");
    println!(
        "| agent: scheduler, leases, http-vms in the sandbox (max_jobs {WORKERS}) | {:.2} s | {:.0} |",
        agent_time.as_secs_f64(),
        rate(agent_time)
    );
    println!(
        "| {WORKERS} workers: lock, http-vms in the sandbox, complete | {:.2} s | {:.0} |",
        wasm_time.as_secs_f64(),
        rate(wasm_time)
    );
    println!(
        "| {WORKERS} workers: lock, the same work in native Rust, complete | {:.2} s | {:.0} |",
        native_time.as_secs_f64(),
        rate(native_time)
    );
    println!(
        "sandbox overhead (wasm time / native time): {:.2}x",
        wasm_time.as_secs_f64() / native_time.as_secs_f64()
    );
}

async fn agent_run(world: &World) -> Duration {
    let ids = world.post_thumbnails(JOBS).await;
    let started = Instant::now();
    let mut config = world.config();
    config.max_jobs = WORKERS;
    config.poll_interval = Duration::from_millis(100);
    let agent = world.agent(config);
    world.wait_final(&ids, Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    agent.stop().await;
    elapsed
}

#[derive(Clone)]
enum Work {
    Wasm(Guest),
    Native,
}

/// `WORKERS` tasks take the posted jobs: lock, work, complete.
async fn loop_run(world: &World, count: usize, work: Work) -> Duration {
    let ids = world.post_thumbnails(count).await;
    let client = world.client();
    let queue = Arc::new(tokio::sync::Mutex::new(ids.clone()));
    let devices: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), format!("cam-{:04}", i % 8 + 1)))
        .collect();
    let devices = Arc::new(devices);
    let camera = world.sim.base_url();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("operator:sim-secret")
    );
    let started = Instant::now();
    let workers = (0..WORKERS).map(|_| {
        let (client, queue, work, camera, auth) = (
            client.clone(),
            queue.clone(),
            work.clone(),
            camera.clone(),
            auth.clone(),
        );
        let world_jobs = devices.clone();
        tokio::spawn(async move {
            let http =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Empty<Bytes>>();
            loop {
                let Some(id) = queue.lock().await.pop() else {
                    break;
                };
                let job = thumbnail_job(&world_jobs, &id);
                let lock = client
                    .lock(&id, Duration::from_secs(60))
                    .await
                    .expect("lock");
                let uploads = JobUploads::new(
                    client.clone(),
                    &id,
                    &lock.lock_token,
                    FileKind::Thumbnail,
                    job.device_id.clone(),
                    None,
                );
                let sink: Arc<dyn OutputSink> =
                    Arc::new(UploadSink::new(Arc::new(uploads), UploadConfig::default()));
                match &work {
                    Work::Wasm(guest) => {
                        let env = JobEnv {
                            sink,
                            progress: progress::channel().0,
                        };
                        let report = guest.run(&job, env).await;
                        assert_eq!(
                            report.outcome,
                            JobOutcome::Completed,
                            "{:?}",
                            report.log_tail
                        );
                    }
                    Work::Native => {
                        let device = job.device_id.as_deref().expect("a device");
                        let uri = format!("{camera}/vms/v2/cameras/{device}/snapshot.jpg");
                        let request = hyper::Request::get(uri)
                            .header("authorization", &auth)
                            .body(Empty::new())
                            .expect("request");
                        let response = http.request(request).await.expect("snapshot");
                        assert_eq!(response.status(), 200);
                        let jpeg = response
                            .into_body()
                            .collect()
                            .await
                            .expect("body")
                            .to_bytes();
                        let spec = OutputSpec {
                            name: format!("{device}.jpg"),
                            content_type: "image/jpeg".into(),
                        };
                        let mut file = sink.create(&spec).await.expect("initialize");
                        let length = jpeg.len() as u64;
                        file.write(jpeg).await.expect("write");
                        file.commit(length, "").await.expect("commit");
                    }
                }
                client
                    .complete(&id, &lock.lock_token, CompletionState::Completed, None)
                    .await
                    .expect("complete");
            }
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker.expect("worker");
    }
    let elapsed = started.elapsed();
    world.wait_final(&ids, Duration::from_secs(10)).await;
    elapsed
}

/// The job as a poll would have returned it.
fn thumbnail_job(devices: &[(String, String)], id: &str) -> Job {
    let device = devices
        .iter()
        .find(|(job, _)| job == id)
        .map(|(_, device)| device.clone());
    let json = serde_json::json!({ "jobId": id, "type": "thumbnail", "deviceId": device });
    serde_json::from_value(json).expect("a valid job")
}
