//! The chaos run: three `corral agent` processes sharing one identity,
//! `corral camera-sim` and `corral registry serve`, all real processes on
//! loopback. While they run, one agent is killed with `kill -9` and restarted
//! every few seconds, the registry is killed with `kill -9` once and restarted
//! on the same data, and the registry injects faults into every call (20%
//! refused with a 5xx or 429, 5% dropped before the call, 5% answers lost
//! after it). Then the chaos stops and the agents finish.
//!
//! What must hold: every job ends Completed exactly once; every recording
//! decrypts to camera-sim's bytes; the registry counted no double complete
//! and no refused commit. [`run`] returns the figures; the CI test and the
//! full-size example (`cargo run --release -p corral-tests --example chaos`)
//! both call it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_camera_sim::recording;
use corral_registry::{FaultCounts, NewJob, Store};

use crate::processes::{Admin, Process, corral_binary, free_port, start};

/// The size and shape of a chaos run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Jobs posted (a tenth discovery, half thumbnails, the rest recordings
    /// of 8 to 45 s).
    pub jobs: usize,
    /// How long the chaos lasts (it also stops once every job is final).
    pub chaos: Duration,
    /// One agent is killed and restarted this often.
    pub kill_every: Duration,
    /// The registry's `--faults` during the chaos.
    pub faults: String,
    /// The registry's lock cap, in seconds.
    pub max_lock_secs: u64,
    /// camera-sim's recording bitrate.
    pub bitrate_bps: u64,
    /// Cameras.
    pub devices: usize,
    /// Jobs each agent runs at once.
    pub max_jobs: usize,
    /// How long the agents get to finish once the chaos stops.
    pub settle: Duration,
}

impl ChaosConfig {
    /// The size CI runs (well under three minutes in a debug build).
    pub fn ci() -> ChaosConfig {
        ChaosConfig {
            jobs: 60,
            chaos: Duration::from_secs(60),
            kill_every: Duration::from_secs(2),
            faults: "fail=0.2,drop=0.05,lose=0.05".into(),
            max_lock_secs: 5,
            bitrate_bps: 1_000_000,
            devices: 4,
            max_jobs: 4,
            settle: Duration::from_secs(90),
        }
    }
}

/// What a chaos run did and found.
#[derive(Debug, Clone, Default)]
pub struct ChaosReport {
    /// Jobs posted.
    pub jobs: usize,
    /// Of which recordings, each checked byte for byte.
    pub recordings: usize,
    /// Agents killed with `kill -9` (each restarted).
    pub agent_kills: usize,
    /// Registry kills (each restarted on the same data).
    pub registry_kills: usize,
    /// Faults the registry injected (summed over its lives; the last second
    /// before its kill may be missing).
    pub faults: FaultCounts,
    /// Locks granted on jobs whose previous lock had expired.
    pub expired_locks: u64,
    /// Jobs not Completed at the end.
    pub lost: usize,
    /// Completes of a job already final (other than an idempotent repeat).
    pub doubled: u64,
    /// Commits refused for what they held.
    pub refused_commits: u64,
    /// Commits refused because their lock had ended.
    pub late_commits: u64,
    /// From the first job posted to the last one final.
    pub wall: Duration,
    /// When the chaos stopped, from the start.
    pub chaos_stopped: Duration,
    /// What went wrong, one line each (empty when the run passed).
    pub problems: Vec<String>,
}

impl std::fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "jobs {} ({} recordings checked byte for byte)",
            self.jobs, self.recordings
        )?;
        writeln!(
            f,
            "kills: {} agents (kill -9, restarted), {} registry (kill -9, restarted on the same data)",
            self.agent_kills, self.registry_kills
        )?;
        writeln!(
            f,
            "faults injected: {} refused (5xx/429), {} dropped before the call, {} answers lost, of {} calls",
            self.faults.refused, self.faults.dropped, self.faults.lost, self.faults.requests
        )?;
        writeln!(f, "expired locks: {}", self.expired_locks)?;
        writeln!(
            f,
            "wall time: {:.1} s (chaos stopped at {:.1} s)",
            self.wall.as_secs_f64(),
            self.chaos_stopped.as_secs_f64()
        )?;
        writeln!(
            f,
            "lost {}, doubled {}, refused commits {}, late commits {}",
            self.lost, self.doubled, self.refused_commits, self.late_commits
        )?;
        for problem in &self.problems {
            writeln!(f, "PROBLEM: {problem}")?;
        }
        Ok(())
    }
}

/// One job of the mix, and what it must end with.
struct Planned {
    job: NewJob,
    /// For a recording: (device, from ms, to ms).
    recording: Option<(String, i64, i64)>,
}

/// 2026-11-20T10:00:00Z in milliseconds.
const BASE_MS: i64 = 1_795_168_800_000;

fn plan(config: &ChaosConfig, agent_id: &str) -> Vec<Planned> {
    (0..config.jobs)
        .map(|index| {
            let device = format!("cam-{:04}", index % config.devices + 1);
            let mut job = crate::registry::new_job("thumbnail", agent_id, Some(&device));
            let mut recording = None;
            match index % 10 {
                0 => job = crate::registry::new_job("discovery", agent_id, None),
                1..=5 => {}
                _ => {
                    // 8 to 45 s, spread over the range.
                    let seconds = 8 + (index as i64 * 17) % 38;
                    let from = BASE_MS + index as i64 * 60_000;
                    let to = from + seconds * 1000;
                    job = crate::registry::new_job("mediarequest", agent_id, Some(&device));
                    job.start_time_utc = Some(rfc3339(from));
                    job.end_time_utc = Some(rfc3339(to));
                    recording = Some((device, from, to));
                }
            }
            Planned { job, recording }
        })
        .collect()
}

fn rfc3339(ms: i64) -> String {
    corral_registry::store::rfc3339(ms)
}

fn counts_of(stats: &serde_json::Value) -> FaultCounts {
    serde_json::from_value(stats["faults"].clone()).unwrap_or_default()
}

fn add(total: &mut FaultCounts, more: FaultCounts) {
    total.requests += more.requests;
    total.refused += more.refused;
    total.dropped += more.dropped;
    total.lost += more.lost;
}

/// Runs the chaos and checks the result; see the module's doc.
pub async fn run(config: ChaosConfig) -> ChaosReport {
    let dir = tempfile::tempdir().expect("temporary folder");
    let root = dir.path();
    // A copy of its own: a rebuild of the binary during the run must not
    // change what the restarted processes run.
    let corral = root.join("corral");
    std::fs::copy(corral_binary(), &corral).expect("the corral binary is copied");
    let log = |name: &str| root.join(format!("{name}.log"));
    let mut report = ChaosReport {
        jobs: config.jobs,
        ..ChaosReport::default()
    };

    // camera-sim.
    let (_sim, sim_addr) = start(
        &corral,
        &[
            "camera-sim".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--devices".into(),
            config.devices.to_string(),
            "--bitrate".into(),
            config.bitrate_bps.to_string(),
        ],
        &[],
        &log("camera-sim"),
        true,
    );
    let sim_url = format!("http://{sim_addr}");

    // The registry, on a port it keeps across its restart.
    let data = root.join("registry");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let registry_args: Vec<String> = vec![
        "registry".into(),
        "serve".into(),
        "--data".into(),
        data.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--max-lock-secs".into(),
        config.max_lock_secs.to_string(),
        "--oct-keys".into(),
        "--faults".into(),
        config.faults.clone(),
    ];
    let start_registry = || start(&corral, &registry_args, &[], &log("registry"), true).0;
    let mut registry = start_registry();
    let admin = Admin::of(&url, &data);

    // One identity for three agents.
    let agent_id = "agent-1";
    let connection = root.join("agent-1.json");
    let added = Command::new(&corral)
        .args(["registry", "add-agent", "--data"])
        .arg(&data)
        .args(["--name", agent_id, "--url", &url, "--out"])
        .arg(&connection)
        .stderr(Stdio::null())
        .status()
        .expect("add-agent runs");
    assert!(added.success(), "add-agent failed");
    let manifest = corral::bundled::HTTP_VMS_MANIFEST.replace("http://127.0.0.1:8081", &sim_url);
    let configs: Vec<PathBuf> = (0..3)
        .map(|n| {
            let folder = root.join(format!("agent-{n}"));
            let guests = folder.join("guests");
            std::fs::create_dir_all(&guests).expect("guests folder");
            std::fs::write(guests.join("http-vms.wasm"), corral::bundled::HTTP_VMS)
                .expect("guest written");
            std::fs::write(guests.join("http-vms.toml"), &manifest).expect("manifest written");
            let path = folder.join("agent.toml");
            std::fs::write(
                &path,
                format!(
                    "connection_file = \"{}\"\nagent_id = \"{agent_id}\"\nguests_dir = \"guests\"\n\
                     max_jobs = {}\npoll_interval_secs = 0.5\nlock_secs = {}\nshutdown_grace_secs = 1\n\
                     [secrets.camera-sim]\norigins = [\"{sim_url}\"]\n",
                    connection.display(),
                    config.max_jobs,
                    config.max_lock_secs.max(3),
                ),
            )
            .expect("agent config written");
            path
        })
        .collect();
    let start_agent = |n: usize| {
        start(
            &corral,
            &[
                "agent".into(),
                "--config".into(),
                configs[n].display().to_string(),
            ],
            &[("CORRAL_SECRET_CAMERA_SIM", "operator:sim-secret")],
            &log(&format!("agent-{n}")),
            false,
        )
        .0
    };
    let mut agents: Vec<Process> = (0..3).map(start_agent).collect();

    // The jobs.
    let planned = plan(&config, agent_id);
    let body = serde_json::to_vec(
        &planned
            .iter()
            .map(|planned| planned.job.clone())
            .collect::<Vec<_>>(),
    )
    .expect("jobs serialize");
    let posted = admin
        .call("POST", "/admin/api/v1/jobs", body)
        .await
        .and_then(|json| json.as_array().cloned())
        .expect("jobs posted");
    let ids: Vec<String> = posted
        .iter()
        .filter_map(|job| job["jobId"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), planned.len());
    let started = Instant::now();

    // The chaos.
    let mut faults_before = FaultCounts::default();
    let mut faults_this_life = FaultCounts::default();
    let mut next_kill = started + config.kill_every;
    let registry_kill_at = started + config.chaos / 2;
    let mut registry_killed = false;
    let all_final = |jobs: &[serde_json::Value]| {
        jobs.len() >= ids.len()
            && jobs
                .iter()
                .all(|job| !matches!(job["state"].as_str(), Some("Available" | "Locked")))
    };
    while started.elapsed() < config.chaos {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(stats) = admin.stats().await {
            faults_this_life = counts_of(&stats);
        }
        let jobs = admin.jobs().await;
        let finished = jobs.as_ref().map_or(0, |jobs| {
            jobs.iter()
                .filter(|job| !matches!(job["state"].as_str(), Some("Available" | "Locked")))
                .count()
        });
        if Instant::now() >= next_kill {
            let n = report.agent_kills % agents.len();
            agents[n].kill();
            agents[n] = start_agent(n);
            report.agent_kills += 1;
            next_kill += config.kill_every;
        }
        // The registry dies once, with a third of the jobs done (or half-way
        // through the chaos), so most of the work runs across its restart.
        if !registry_killed && (Instant::now() >= registry_kill_at || finished * 3 >= ids.len()) {
            registry.kill();
            add(&mut faults_before, faults_this_life);
            faults_this_life = FaultCounts::default();
            tokio::time::sleep(Duration::from_millis(500)).await;
            registry = start_registry();
            registry_killed = true;
            report.registry_kills += 1;
        }
        if registry_killed && jobs.is_some_and(|jobs| all_final(&jobs)) {
            break;
        }
    }
    report.chaos_stopped = started.elapsed();
    if admin
        .call(
            "PUT",
            "/admin/api/v1/faults",
            br#"{"fail":0,"drop":0,"lose":0}"#.to_vec(),
        )
        .await
        .is_none()
    {
        report
            .problems
            .push("the faults could not be switched off".into());
    }

    // The agents finish.
    let settle_until = Instant::now() + config.settle;
    loop {
        if admin.jobs().await.is_some_and(|jobs| all_final(&jobs)) {
            break;
        }
        if Instant::now() >= settle_until {
            report.problems.push(format!(
                "jobs still not final {:?} after the chaos stopped",
                config.settle
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    report.wall = started.elapsed();
    if let Some(stats) = admin.stats().await {
        add(&mut faults_before, counts_of(&stats));
        let get = |name: &str| stats[name].as_u64().unwrap_or(0);
        report.doubled = get("doubleCompletes");
        report.refused_commits = get("refusedCommits");
        report.late_commits = get("lateCommits");
        report.expired_locks = get("expiredLocks");
    } else {
        add(&mut faults_before, faults_this_life);
        report.problems.push("no stats from the registry".into());
    }
    report.faults = faults_before;
    drop(agents);
    registry.kill();

    // Every job Completed once, with one committed file that is right.
    let store = Store::open(&data).expect("the registry's data opens");
    for (id, planned) in ids.iter().zip(&planned) {
        check_job(&store, id, planned, config.bitrate_bps, &mut report);
    }
    if report.doubled > 0 {
        report
            .problems
            .push(format!("{} double completes", report.doubled));
    }
    if report.refused_commits > 0 {
        report
            .problems
            .push(format!("{} refused commits", report.refused_commits));
    }
    if !report.problems.is_empty() {
        // Keep the logs of a failed run.
        let kept = dir.keep();
        report
            .problems
            .push(format!("logs and data kept in {}", kept.display()));
    }
    report
}

fn check_job(store: &Store, id: &str, planned: &Planned, bitrate: u64, report: &mut ChaosReport) {
    let job_id = id.to_string();
    let job = match store.transaction_blocking(|tx| corral_registry::jobs::get(tx, &job_id)) {
        Ok(job) => job,
        Err(error) => {
            report.lost += 1;
            report.problems.push(format!("job {id}: {}", error.message));
            return;
        }
    };
    if job.state != "Completed" {
        report.lost += 1;
        report.problems.push(format!(
            "job {id} ({}) ended {}: {:?}",
            job.job_type, job.state, job.message
        ));
        return;
    }
    let committed: Vec<_> = job
        .files
        .iter()
        .flatten()
        .filter(|file| file.committed)
        .collect();
    if committed.len() != 1 {
        report.problems.push(format!(
            "job {id} has {} committed files: {:?}",
            committed.len(),
            job.files
        ));
        return;
    }
    let file_id = committed[0].file_id.clone();
    let plaintext = store
        .transaction_blocking(|tx| corral_registry::files::committed(tx, &file_id))
        .and_then(|row| corral_registry::files::decrypt(store, &row));
    let plaintext = match plaintext {
        Ok(bytes) => bytes,
        Err(error) => {
            report.problems.push(format!(
                "job {id}: its file does not decrypt: {}",
                error.message
            ));
            return;
        }
    };
    match (&planned.recording, job.job_type.as_str()) {
        (Some((device, from, to)), _) => {
            report.recordings += 1;
            if plaintext != recording::recording(device, bitrate, *from, *to) {
                report.problems.push(format!(
                    "job {id}: the recording is not camera-sim's bytes ({} bytes)",
                    plaintext.len()
                ));
            }
        }
        (None, "thumbnail") if !plaintext.starts_with(&[0xff, 0xd8, 0xff]) => {
            report
                .problems
                .push(format!("job {id}: the thumbnail is not a JPEG"));
        }
        (None, "discovery")
            if serde_json::from_slice::<serde_json::Value>(&plaintext)
                .ok()
                .and_then(|json| json["devices"].as_array().map(Vec::len))
                .is_none_or(|devices| devices == 0) =>
        {
            report
                .problems
                .push(format!("job {id}: the discovery file lists no device"));
        }
        _ => {}
    }
}
