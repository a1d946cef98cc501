//! `corral demo`: everything on one machine, with real jobs.
//!
//! Starts camera-sim on loopback, loads the bundled http-vms guest pointed at
//! it, and runs a discovery job, a thumbnail job for every device found and a
//! few media requests, side by side. Then it checks every file against what the
//! camera served (recordings byte for byte by SHA-256, thumbnails as JPEG) and
//! prints a table. Exits non-zero if anything is wrong.
//!
//! (Jobs are run directly by the sandbox here; the registry and the agent loop
//! join the demo as they are built.)

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use corral::bundled::{self, CAMERA_SIM_SECRET};
use corral::engine::{Runtime, RuntimeConfig};
use corral::guest::{Guest, JobEnv, JobOutcome, JobReport};
use corral::protocol::{Job, JobType};
use corral::sandbox::progress::{self, Progress};
use corral::secrets::Secrets;
use corral::sink::{DirSink, OutputSink};
use corral_camera_sim::{CameraSim, SimConfig, recording};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::human_bytes;

/// Arguments of `corral demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Number of simulated cameras.
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// Number of media requests (one per camera, round robin).
    #[arg(long, default_value_t = 2)]
    media_jobs: usize,
    /// Length of each recording, in seconds (at 4 Mbit/s).
    #[arg(long, default_value_t = 60)]
    media_seconds: u32,
    /// Keep the output files in this folder (default: a temporary folder,
    /// removed at the end).
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// One row of the final table.
struct Row {
    job: Job,
    report: JobReport,
    check: Result<(), String>,
}

/// Runs the demo.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let sim = CameraSim::start(
        SimConfig::with_devices(args.devices),
        "127.0.0.1:0".parse().expect("literal address"),
    )
    .await?;
    println!(
        "camera-sim      {} ({} cameras)",
        sim.base_url(),
        args.devices
    );
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let manifest = bundled::http_vms_manifest(&sim.base_url())?;
    let guest = runtime
        .load_bytes(bundled::HTTP_VMS, manifest)
        .context("loading the bundled http-vms guest")?;
    println!(
        "guest           http-vms {} (sha256 {}…)",
        guest.manifest().version,
        &guest.sha256()[..12]
    );
    let out_dir = match &args.keep {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("corral-demo-{}", std::process::id())),
    };
    let sink: Arc<dyn OutputSink> = Arc::new(DirSink::new(&out_dir)?);
    let mut secrets = Secrets::default();
    let config = sim.config();
    secrets.insert(
        CAMERA_SIM_SECRET,
        &format!("{}:{}", config.username, config.password),
    )?;
    let secrets = Arc::new(secrets);
    let runner = Runner {
        guest,
        sink,
        secrets,
    };

    let discovery = new_job("discovery-1", JobType::Discovery, None, None);
    let row = runner.run(discovery, |_| Ok(())).await;
    let devices = match &row.report.outcome {
        JobOutcome::Discovered(devices) => devices.clone(),
        other => anyhow::bail!("discovery did not succeed: {other:?}"),
    };
    println!("discovered      {} devices", devices.len());
    let mut rows = vec![row];

    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let end = now - Duration::from_secs(60);
    let start = end - Duration::from_secs(u64::from(args.media_seconds));
    let mut jobs = Vec::new();
    for device in &devices {
        let id = format!("thumbnail-{}", device.device_id);
        jobs.push(new_job(
            &id,
            JobType::Thumbnail,
            Some(&device.device_id),
            None,
        ));
    }
    for (i, device) in devices.iter().cycle().take(args.media_jobs).enumerate() {
        let id = format!("media-{}", i + 1);
        jobs.push(new_job(
            &id,
            JobType::MediaRequest,
            Some(&device.device_id),
            Some((start, end)),
        ));
    }
    let bitrate = config.bitrate_bps;
    let checks = jobs.into_iter().map(|job| {
        let runner = &runner;
        async move {
            runner
                .run(job, move |row_job| check_file(row_job, bitrate))
                .await
        }
    });
    rows.extend(futures::future::join_all(checks).await);

    print_table(&rows);
    let failures = rows.iter().filter(|row| row.check.is_err()).count();
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&out_dir);
    } else {
        println!("files kept in   {}", out_dir.display());
    }
    println!(
        "{} jobs, {} failed, in {:.1} s",
        rows.len(),
        failures,
        started.elapsed().as_secs_f64()
    );
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

struct Runner {
    guest: Guest,
    sink: Arc<dyn OutputSink>,
    secrets: Arc<Secrets>,
}

impl Runner {
    async fn run(
        &self,
        job: Job,
        check: impl FnOnce(&(Job, &JobReport)) -> Result<(), String>,
    ) -> Row {
        let (progress_tx, progress_rx) = progress::channel();
        let reporter = tokio::spawn(report_progress(job.job_id.clone(), progress_rx));
        let env = JobEnv {
            sink: self.sink.clone(),
            secrets: self.secrets.clone(),
            progress: progress_tx,
        };
        let mut report = self.guest.run(&job, env).await;
        reporter.abort();
        if let Err(error) = report.store_discovery(self.sink.as_ref()).await {
            report.outcome =
                JobOutcome::Failed(format!("cannot store the discovery file: {error}"));
        }
        let check = match &report.outcome {
            JobOutcome::Completed | JobOutcome::Discovered(_) => check(&(job.clone(), &report)),
            other => Err(format!("{other:?}")),
        };
        Row { job, report, check }
    }
}

/// Prints a job's progress once a second while it changes.
async fn report_progress(job_id: String, mut progress: watch::Receiver<Progress>) {
    while progress.changed().await.is_ok() {
        let Progress { done, total } = *progress.borrow_and_update();
        if total > 0 && done < total {
            println!(
                "  {job_id:<24} {:>5.1}%",
                done as f64 * 100.0 / total as f64
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Checks a job's file against what camera-sim serves.
fn check_file((job, report): &(Job, &JobReport), bitrate: u64) -> Result<(), String> {
    if job.job_type == JobType::Discovery {
        return Ok(());
    }
    let [file] = report.files.as_slice() else {
        return Err(format!("expected one file, got {}", report.files.len()));
    };
    let bytes = std::fs::read(&file.location)
        .map_err(|error| format!("cannot read {}: {error}", file.location))?;
    match job.job_type {
        JobType::Thumbnail => {
            let is_jpeg = bytes.starts_with(&[0xff, 0xd8, 0xff]) && bytes.ends_with(&[0xff, 0xd9]);
            is_jpeg
                .then_some(())
                .ok_or_else(|| "not a JPEG".to_string())
        }
        JobType::MediaRequest => {
            let millis = |time: Option<OffsetDateTime>| {
                time.map_or(0, |time| (time.unix_timestamp_nanos() / 1_000_000) as i64)
            };
            let device = job.device_id.as_deref().unwrap_or_default();
            let expected = recording::recording(
                device,
                bitrate,
                millis(job.start_time_utc),
                millis(job.end_time_utc),
            );
            let same = Sha256::digest(&expected) == Sha256::digest(&bytes);
            same.then_some(()).ok_or_else(|| {
                format!(
                    "{} bytes differ from the camera's {}",
                    bytes.len(),
                    expected.len()
                )
            })
        }
        JobType::Discovery => Ok(()),
    }
}

fn new_job(
    id: &str,
    job_type: JobType,
    device: Option<&str>,
    range: Option<(OffsetDateTime, OffsetDateTime)>,
) -> Job {
    Job {
        job_id: id.to_string(),
        job_type,
        agent_id: Some("demo".into()),
        device_id: device.map(str::to_string),
        start_time_utc: range.map(|(start, _)| start),
        end_time_utc: range.map(|(_, end)| end),
        parameters: Default::default(),
        state: None,
        task_progress: 0,
        task_total: 0,
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<24} {:<13} {:<20} {:>10} {:>9}  check",
        "job", "type", "outcome", "bytes", "time"
    );
    for row in rows {
        let outcome = match &row.report.outcome {
            JobOutcome::Completed => "completed".to_string(),
            JobOutcome::PartiallyCompleted => "partially".to_string(),
            JobOutcome::Discovered(devices) => format!("{} devices", devices.len()),
            JobOutcome::Unavailable(_) => "unavailable".to_string(),
            JobOutcome::Unsupported(_) => "unsupported".to_string(),
            JobOutcome::Failed(_) => "failed".to_string(),
        };
        let bytes: u64 = row.report.files.iter().map(|file| file.length).sum();
        let check = match &row.check {
            Ok(()) => "ok".to_string(),
            Err(why) => format!("WRONG: {why}"),
        };
        println!(
            "{:<24} {:<13} {:<20} {:>10} {:>7.0}ms  {}",
            row.job.job_id,
            row.job.job_type.as_str(),
            outcome,
            human_bytes(bytes),
            row.report.elapsed.as_secs_f64() * 1000.0,
            check
        );
    }
    println!();
}
