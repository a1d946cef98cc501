//! `cargo bench -p corral --bench instantiate`
//!
//! - `instantiate`: from the pre-instantiated http-vms component to a ready
//!   instance in a fresh store with its limits (what every job pays); also
//!   printed as median and p99 over 10,000 runs.
//! - `thumbnail_job`: one small job end to end: instantiate, the guest asks
//!   camera-sim (loopback) for a snapshot and splices it into an output file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::bundled;
use corral::engine::{Runtime, RuntimeConfig};
use corral::guest::{Guest, JobEnv, JobOutcome};
use corral::protocol::Job;
use corral::sandbox::progress;
use corral::sink::NullSink;
use corral_camera_sim::{CameraSim, SimConfig};
use criterion::{Criterion, criterion_group, criterion_main};

fn env() -> JobEnv {
    JobEnv {
        sink: Arc::new(NullSink),
        progress: progress::channel().0,
    }
}

fn thumbnail_job() -> Job {
    serde_json::from_str(r#"{"jobId":"bench","type":"thumbnail","deviceId":"cam-0001"}"#)
        .expect("a valid job")
}

fn percentiles(guest: &Guest, tokio: &tokio::runtime::Runtime) {
    let mut samples: Vec<Duration> = (0..10_000)
        .map(|_| {
            tokio.block_on(async {
                let env = env();
                let started = Instant::now();
                let ready = guest.instantiate("bench", env).await.expect("instantiates");
                let elapsed = started.elapsed();
                drop(ready);
                elapsed
            })
        })
        .collect();
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "instantiate over {} runs: median {:?}, p99 {:?}, max {:?}",
        samples.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

fn benches(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let sim = tokio
        .block_on(CameraSim::start(
            SimConfig::with_devices(4),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .expect("camera-sim");
    let secrets = Arc::new(bundled::camera_sim_secrets(
        &sim.base_url(),
        "operator",
        "sim-secret",
    ));
    let runtime = Runtime::new(RuntimeConfig::default())
        .expect("engine")
        .with_secrets(secrets);
    let manifest = bundled::http_vms_manifest(&sim.base_url()).expect("manifest");
    let guest = runtime
        .load_bytes(bundled::HTTP_VMS, manifest)
        .expect("guest");

    percentiles(&guest, &tokio);
    c.bench_function("instantiate", |b| {
        b.to_async(&tokio).iter(|| async {
            let ready = guest
                .instantiate("bench", env())
                .await
                .expect("instantiates");
            drop(ready);
        });
    });
    let job = thumbnail_job();
    c.bench_function("thumbnail_job", |b| {
        b.to_async(&tokio).iter(|| async {
            let report = guest.run(&job, env()).await;
            assert_eq!(report.outcome, JobOutcome::Completed);
        });
    });
    drop(sim);
}

criterion_group!(instantiate, benches);
criterion_main!(instantiate);
