//! The chaos run at full size (see `corral_tests::chaos`):
//!
//! ```text
//! cargo run --release -p corral-tests --example chaos -- --jobs 1000
//! ```
//!
//! Options: `--jobs N` (default 1000), `--chaos-secs S` (default 240: the
//! chaos stops then, or once every job is final), `--kill-every-secs S`
//! (default 2), `--bitrate BPS` (camera-sim's, default 4000000),
//! `--faults fail=0.2,drop=0.05,lose=0.05`. Prints the figures;
//! exits 1 if a job was lost or doubled, or a recording is wrong.

use std::process::ExitCode;
use std::time::Duration;

use corral_tests::chaos::{self, ChaosConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut config = ChaosConfig {
        jobs: 1000,
        chaos: Duration::from_secs(240),
        kill_every: Duration::from_secs(2),
        bitrate_bps: 4_000_000,
        devices: 8,
        max_jobs: 8,
        settle: Duration::from_secs(300),
        ..ChaosConfig::ci()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        let secs = |value: &str| value.parse().map(Duration::from_secs_f64);
        let parsed = match flag.as_str() {
            "--jobs" => value.parse().map(|jobs| config.jobs = jobs).is_ok(),
            "--chaos-secs" => secs(&value).map(|chaos| config.chaos = chaos).is_ok(),
            "--kill-every-secs" => secs(&value).map(|every| config.kill_every = every).is_ok(),
            "--bitrate" => value.parse().map(|bps| config.bitrate_bps = bps).is_ok(),
            "--faults" => {
                config.faults = value;
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!(
                "usage: chaos [--jobs N] [--chaos-secs S] [--kill-every-secs S] [--bitrate BPS] [--faults fail=0.2,drop=0.05,lose=0.05]"
            );
            return ExitCode::from(2);
        }
    }
    println!("chaos run: {config:?}");
    let report = chaos::run(config).await;
    println!("{report}");
    if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
