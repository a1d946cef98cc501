//! The agent's own path for a recording, without the registry: camera-sim
//! (in this process) → http-vms's splice → the output stream, into a sink
//! that drops the bytes, and into the upload pipeline (4 MiB regions,
//! AES-256-GCM, 4 blocks in flight) to a loopback server that discards them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::guest::{JobEnv, JobOutcome};
use corral::sandbox::progress;
use corral::sink::{NullSink, OutputSink};
use corral::upload::{UploadConfig, UploadSink};
use corral_camera_sim::SimConfig;
use corral_envelope::keys::WrapAlgorithm;

use super::{Figure, mb_per_sec};
use crate::blockstore::{BlockStore, Keep};
use crate::{Harness, media_job};

/// One sink's run.
#[derive(Debug, Clone)]
pub struct Spliced {
    /// Into what.
    pub sink: &'static str,
    /// Bytes moved.
    pub bytes: u64,
    /// How long.
    pub time: Duration,
    /// The guest's own CPU time.
    pub guest_time: Duration,
}

/// A recording of 1 GiB (2,147 s at 4 Mbit/s) into each sink.
pub async fn measure() -> Vec<Spliced> {
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
    let mut runs = Vec::new();
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
        runs.push(Spliced {
            sink: name,
            bytes: report.files[0].length,
            time: started.elapsed(),
            guest_time: report.guest_time,
        });
    }
    runs
}

/// The goals table's rows for `runs`: the upload pipeline's is the goal.
pub fn figures(runs: &[Spliced]) -> Vec<Figure> {
    runs.iter()
        .map(|run| {
            let what = format!(
                "the agent's own path: camera-sim → guest splice → {}",
                run.sink
            );
            let rate = mb_per_sec(run.bytes, run.time);
            if run.sink.starts_with("upload") {
                let bytes_per_sec = run.bytes as f64 / run.time.as_secs_f64();
                Figure::checked(&what, rate, "≥ 1 GB/s", bytes_per_sec >= 1e9)
            } else {
                Figure::shown(&what, rate)
            }
        })
        .collect()
}
