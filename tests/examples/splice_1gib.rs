//! `cargo run --release -p corral-tests --example splice_1gib`
//!
//! Where a 1 GiB media job spends its time: camera-sim → http-vms (splice) →
//! the output stream, into a sink that drops the bytes; then the same into the
//! upload pipeline (loopback server that discards).

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::guest::{JobEnv, JobOutcome};
use corral::sandbox::progress;
use corral::sink::{NullSink, OutputSink};
use corral::upload::{UploadConfig, UploadSink};
use corral_camera_sim::SimConfig;
use corral_envelope::keys::WrapAlgorithm;
use corral_tests::blockstore::{BlockStore, Keep};
use corral_tests::{Harness, media_job};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let harness = Harness::start(SimConfig::with_devices(1)).await;
    let job = media_job(
        "m",
        "cam-0001",
        time::macros::datetime!(2026-11-20 00:00 UTC),
        Duration::from_secs(2147),
    );
    let store = BlockStore::start(WrapAlgorithm::A256Kw, Keep::Nothing).await;
    let upload = UploadSink::new(Arc::new(store.uploads()), UploadConfig::default());
    let sinks: [(&str, Arc<dyn OutputSink>); 2] = [
        ("null sink", Arc::new(NullSink)),
        ("upload pipeline → discard", Arc::new(upload)),
    ];
    for (name, sink) in sinks {
        let started = Instant::now();
        let env = JobEnv {
            sink,
            progress: progress::channel().0,
        };
        let report = harness.guest.run(&job, env).await;
        assert_eq!(
            report.outcome,
            JobOutcome::Completed,
            "{:?}",
            report.log_tail
        );
        let elapsed = started.elapsed();
        let bytes = report.files[0].length;
        println!(
            "camera-sim → guest splice → {name}: {:.0} MB/s ({:.2} s, guest CPU {:?})",
            bytes as f64 / elapsed.as_secs_f64() / 1e6,
            elapsed.as_secs_f64(),
            report.guest_time
        );
    }
}
