//! `corral demo`: everything on one machine, with real jobs.
//!
//! In one process: camera-sim on loopback, the on-premise registry in a
//! temporary folder, and an agent with the bundled http-vms guest. The demo
//! posts a discovery job, then a thumbnail job for every device found and a
//! few media requests; it shows their progress, ends with a table of jobs,
//! states, files and bytes, and checks that every file decrypts to what the
//! camera served. It exits non-zero if anything is wrong. It prints the
//! registry's operator console (`/`) and how to sign in; with `--keep` it
//! keeps everything serving after its checks, until Ctrl-C.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use corral::agent::Agent;
use corral::agent::catalog::Catalog;
use corral::agent::config::AgentConfig;
use corral::bundled;
use corral::client::RegistryClient;
use corral::client::connection::ConnectionFile;
use corral::client::retry::RetryPolicy;
use corral::engine::{Runtime, RuntimeConfig};
use corral_camera_sim::{CameraSim, SimConfig, recording};
use corral_registry::{JobJson, NewJob, Registry, RegistryConfig, Store, admin, auth, files, jobs};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::human_bytes;

/// Arguments of `corral demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Number of simulated cameras.
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// Number of media requests (cameras taken round robin).
    #[arg(long, default_value_t = 3)]
    media_jobs: usize,
    /// Length of each recording, in seconds (camera-sim records 4 Mbit/s).
    #[arg(long, default_value_t = 60)]
    media_seconds: u32,
    /// Keep the registry's data and the files in this folder (default: a
    /// temporary folder, removed at the end).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// After the checks, keep camera-sim, the registry (and its console)
    /// and the agent serving until Ctrl-C.
    #[arg(long)]
    keep: bool,
}

const AGENT_ID: &str = "demo-agent";

/// Runs the demo.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let temporary = tempfile_dir(args.data.as_deref())?;
    let dir = temporary.path().to_path_buf();

    let sim = CameraSim::start(
        SimConfig::with_devices(args.devices),
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let registry = Registry::open(&dir.join("registry"), RegistryConfig::default())
        .map_err(anyhow::Error::msg)?
        .start("127.0.0.1:0".parse()?)
        .await
        .map_err(anyhow::Error::msg)?;
    let store = registry.registry().store().clone();
    println!(
        "camera-sim   {} ({} cameras, HTTP Basic)",
        sim.base_url(),
        args.devices
    );
    println!(
        "registry     {} (data in {})",
        registry.base_url(),
        dir.join("registry").display()
    );
    println!(
        "console      {}/ (sign in with the admin token in {})",
        registry.base_url(),
        dir.join("registry").join("admin-token").display()
    );

    // The agent, set up as an operator would: a connection file, a guests folder.
    let url = registry.base_url();
    let (connection, _) = store
        .transaction(move |tx| auth::add_agent(tx, AGENT_ID, &url))
        .await?;
    let connection_path = dir.join(format!("{AGENT_ID}.json"));
    std::fs::write(&connection_path, serde_json::to_vec_pretty(&connection)?)?;
    let guests_dir = dir.join("guests");
    std::fs::create_dir_all(&guests_dir)?;
    std::fs::write(guests_dir.join("http-vms.wasm"), bundled::HTTP_VMS)?;
    let manifest = bundled::HTTP_VMS_MANIFEST.replace("http://127.0.0.1:8081", &sim.base_url());
    std::fs::write(guests_dir.join("http-vms.toml"), manifest)?;
    // The operator binds camera-sim's credentials to camera-sim alone.
    let camera = sim.config();
    let secrets = bundled::camera_sim_secrets(&sim.base_url(), &camera.username, &camera.password);
    let mut config = AgentConfig::new(AGENT_ID, connection_path.clone(), guests_dir.clone());
    config.poll_interval = Duration::from_millis(500);
    let runtime = Runtime::new(RuntimeConfig::default())?.with_secrets(Arc::new(secrets));
    let catalog = Catalog::load(&runtime, &guests_dir)?;
    let file = ConnectionFile::load(&connection_path)?;
    let client =
        RegistryClient::from_connection_file(&file, AGENT_ID, None, None, RetryPolicy::default())
            .map_err(anyhow::Error::msg)?;
    client.check(&[]).await.context("the agent's first token")?;
    let agent = Agent::with_parts(client, catalog, config, RetryPolicy::default());
    let stop = agent.stopper();
    let agent_task = tokio::spawn(agent.run());
    println!(
        "agent        {AGENT_ID} with guest http-vms (sha256 {}…)",
        &hex_sha(bundled::HTTP_VMS)[..12]
    );
    println!();

    // Discovery first, then what it found.
    let discovery = post(&store, vec![job("discovery", None, None)]).await?;
    let mut display = Display::new();
    wait(&store, &discovery, &mut display).await?;
    let devices = {
        let reader = store.clone();
        store
            .transaction(move |tx| admin::devices(&reader, tx))
            .await?
    };
    let now = OffsetDateTime::now_utc().replace_nanosecond(0)?;
    let end = now - Duration::from_secs(60);
    let start = end - Duration::from_secs(u64::from(args.media_seconds));
    let mut work: Vec<NewJob> = devices
        .iter()
        .filter_map(|device| device.device["deviceId"].as_str())
        .map(|id| job("thumbnail", Some(id), None))
        .collect();
    let ids: Vec<String> = devices
        .iter()
        .filter_map(|device| device.device["deviceId"].as_str().map(str::to_string))
        .collect();
    for id in ids.iter().cycle().take(args.media_jobs) {
        work.push(job("mediarequest", Some(id), Some((start, end))));
    }
    let posted = post(&store, work).await?;
    let mut all = discovery;
    all.extend(posted);
    wait(&store, &all, &mut display).await?;
    // With --keep the agent goes on serving (jobs posted from the console).
    let serving = if args.keep {
        Some(agent_task)
    } else {
        stop.drain();
        let _ = agent_task.await;
        None
    };

    let final_jobs = {
        let wanted = all.clone();
        store
            .transaction(move |tx| jobs::list(tx, None, None))
            .await?
            .into_iter()
            .filter(|job| wanted.contains(&job.job_id))
            .collect::<Vec<_>>()
    };
    let checks: Vec<Result<(), String>> = final_jobs
        .iter()
        .map(|job| check(&store, job, &sim, args.devices))
        .collect();
    print_table(&final_jobs, &checks);
    let failures = checks.iter().filter(|check| check.is_err()).count();
    let bytes: u64 = final_jobs
        .iter()
        .flat_map(|job| job.files.iter().flatten())
        .filter_map(|file| file.length)
        .sum();
    println!(
        "{} jobs, {} files, {} uploaded encrypted and verified, {} wrong, in {:.1} s",
        final_jobs.len(),
        final_jobs
            .iter()
            .map(|job| job.files.as_ref().map_or(0, Vec::len))
            .sum::<usize>(),
        human_bytes(bytes),
        failures,
        started.elapsed().as_secs_f64()
    );
    if let Some(agent_task) = serving {
        println!(
            "serving until Ctrl-C: the console at {}/ (admin token in {})",
            registry.base_url(),
            dir.join("registry").join("admin-token").display()
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        stop.drain();
        let _ = agent_task.await;
    }
    if args.data.is_some() {
        println!("kept: {}", dir.display());
    }
    drop(registry);
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A temporary folder, or the one to keep.
fn tempfile_dir(keep: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    match keep {
        Some(path) => {
            std::fs::create_dir_all(path)?;
            Ok(tempfile::Builder::new()
                .prefix("demo-")
                .disable_cleanup(true)
                .tempdir_in(path)?)
        }
        None => Ok(tempfile::Builder::new().prefix("corral-demo-").tempdir()?),
    }
}

fn hex_sha(bytes: &[u8]) -> String {
    corral::sink::hex(&Sha256::digest(bytes))
}

fn job(
    job_type: &str,
    device: Option<&str>,
    range: Option<(OffsetDateTime, OffsetDateTime)>,
) -> NewJob {
    NewJob {
        job_type: job_type.to_string(),
        agent_id: AGENT_ID.to_string(),
        device_id: device.map(str::to_string),
        start_time_utc: range.map(|(start, _)| corral::protocol::format_rfc3339(start)),
        end_time_utc: range.map(|(_, end)| corral::protocol::format_rfc3339(end)),
        parameters: Default::default(),
    }
}

async fn post(store: &Store, list: Vec<NewJob>) -> anyhow::Result<Vec<String>> {
    let posted = store
        .transaction(move |tx| admin::post_jobs(tx, &list))
        .await?;
    Ok(posted.into_iter().map(|job| job.job_id).collect())
}

/// Waits until every job of `ids` is final, showing progress; gives up after
/// two minutes.
async fn wait(store: &Store, ids: &[String], display: &mut Display) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let wanted = ids.to_vec();
        let list: Vec<JobJson> = store
            .transaction(move |tx| jobs::list(tx, None, None))
            .await?
            .into_iter()
            .filter(|job| wanted.contains(&job.job_id))
            .collect();
        display.show(&list);
        let done = list
            .iter()
            .all(|job| !matches!(job.state.as_str(), "Available" | "Locked"));
        if done {
            display.finish();
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "jobs did not finish within two minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Live progress: a bar per job on a terminal, plain lines otherwise.
struct Display {
    terminal: bool,
    drawn: usize,
    printed: std::collections::HashMap<String, String>,
}

impl Display {
    fn new() -> Display {
        Display {
            terminal: std::io::stdout().is_terminal(),
            drawn: 0,
            printed: Default::default(),
        }
    }

    fn line(job: &JobJson) -> (String, String) {
        let percent = if job.task_total > 0 {
            job.task_progress as f64 * 100.0 / job.task_total as f64
        } else if job.state == "Completed" {
            100.0
        } else {
            0.0
        };
        let filled = (percent / 5.0).round() as usize;
        let bar = format!(
            "[{}{}]",
            "#".repeat(filled),
            ".".repeat(20 - filled.min(20))
        );
        let label = format!(
            "{} {}",
            job.job_type,
            job.device_id.as_deref().unwrap_or("")
        );
        let status = format!("{:<10} {:>5.1}%", job.state, percent);
        (
            format!("{label:<26} {bar} {status}"),
            format!("{} {:.0}", job.state, percent / 25.0),
        )
    }

    fn show(&mut self, list: &[JobJson]) {
        let mut out = std::io::stdout().lock();
        if self.terminal {
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.drawn);
            }
            for job in list {
                let _ = writeln!(out, "\x1b[2K{}", Display::line(job).0);
            }
            self.drawn = list.len();
        } else {
            for job in list {
                let (line, key) = Display::line(job);
                if self.printed.get(&job.job_id) != Some(&key) {
                    let _ = writeln!(out, "{line}");
                    self.printed.insert(job.job_id.clone(), key);
                }
            }
        }
        let _ = out.flush();
    }

    fn finish(&mut self) {
        self.drawn = 0;
    }
}

/// Checks a job's files against what camera-sim serves.
fn check(store: &Store, job: &JobJson, sim: &CameraSim, devices: usize) -> Result<(), String> {
    if job.state != "Completed" {
        return Err(format!(
            "{} ({})",
            job.state,
            job.message.clone().unwrap_or_default()
        ));
    }
    let committed: Vec<_> = job
        .files
        .iter()
        .flatten()
        .filter(|file| file.committed)
        .collect();
    let [file] = committed.as_slice() else {
        return Err(format!("{} committed files, expected 1", committed.len()));
    };
    let id = file.file_id.clone();
    let row = store
        .transaction_blocking(|tx| files::committed(tx, &id))
        .map_err(|error| error.to_string())?;
    let plaintext = files::decrypt(store, &row).map_err(|error| error.to_string())?;
    match job.job_type.as_str() {
        "discovery" => {
            let json: serde_json::Value =
                serde_json::from_slice(&plaintext).map_err(|error| error.to_string())?;
            let found = json["devices"].as_array().map_or(0, Vec::len);
            (found == devices)
                .then_some(())
                .ok_or_else(|| format!("{found} devices, camera-sim has {devices}"))
        }
        "thumbnail" => {
            let jpeg =
                plaintext.starts_with(&[0xff, 0xd8, 0xff]) && plaintext.ends_with(&[0xff, 0xd9]);
            jpeg.then_some(()).ok_or_else(|| "not a JPEG".to_string())
        }
        _ => {
            let millis = |text: &Option<String>| {
                text.as_deref()
                    .and_then(|text| {
                        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .map_or(0, |time| (time.unix_timestamp_nanos() / 1_000_000) as i64)
            };
            let device = job.device_id.as_deref().unwrap_or_default();
            let expected = recording::recording(
                device,
                sim.config().bitrate_bps,
                millis(&job.start_time_utc),
                millis(&job.end_time_utc),
            );
            (Sha256::digest(&expected) == Sha256::digest(&plaintext))
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "{} bytes differ from the camera's {}",
                        plaintext.len(),
                        expected.len()
                    )
                })
        }
    }
}

fn print_table(list: &[JobJson], checks: &[Result<(), String>]) {
    println!();
    println!(
        "{:<26} {:<13} {:<10} {:<10} {:<24} {:>10}  check",
        "job", "type", "device", "state", "file", "bytes"
    );
    for (job, check) in list.iter().zip(checks) {
        let file = job.files.iter().flatten().find(|file| file.committed);
        let check = match check {
            Ok(()) => "decrypts to the camera's bytes".to_string(),
            Err(why) => format!("WRONG: {why}"),
        };
        println!(
            "{:<26} {:<13} {:<10} {:<10} {:<24} {:>10}  {}",
            job.job_id,
            job.job_type,
            job.device_id.as_deref().unwrap_or("-"),
            job.state,
            file.map_or("-", |file| file.file_name.as_str()),
            human_bytes(file.and_then(|file| file.length).unwrap_or(0)),
            check
        );
    }
    println!();
}
