//! Where a thumbnail job's CPU goes: `corral camera-sim`, `corral registry
//! serve` and `corral agent` as three processes on loopback (see
//! [`super::site`]; the agent runs the bundled http-vms), thumbnail jobs
//! posted at once, and each process's CPU time (user + system, from
//! `/proc/<pid>/stat`) over the run divided by the jobs. The bench process
//! only posts the jobs and counts the open ones in the registry's SQLite
//! file, so its own CPU is no one's share.

use std::time::Duration;

use super::site::{Site, SiteConfig, thumbnails};
use super::{Figure, ms_per_job};

/// Cameras camera-sim serves (the jobs go round them).
const DEVICES: usize = 8;

/// One run's figures.
#[derive(Debug, Clone)]
pub struct CpuSplit {
    /// Jobs measured.
    pub jobs: usize,
    /// Wall time from the post to the last job final.
    pub wall: Duration,
    /// CPU time of each process over the run: (name, pid's CPU).
    pub parts: Vec<(&'static str, Duration)>,
}

impl CpuSplit {
    /// Thumbnail jobs per second.
    pub fn jobs_per_sec(&self) -> f64 {
        self.jobs as f64 / self.wall.as_secs_f64()
    }

    /// The CPU time one job cost `part`.
    pub fn per_job(&self, part: &str) -> Duration {
        self.parts
            .iter()
            .find(|(name, _)| *name == part)
            .map_or(Duration::ZERO, |(_, cpu)| *cpu / self.jobs as u32)
    }
}

/// A process's CPU time so far (user + system), from `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / per_sec)
}

/// The goals table's rows for `split`.
pub fn figures(split: &CpuSplit) -> Vec<Figure> {
    let agent = split.per_job("agent");
    vec![
        Figure::checked(
            "thumbnail jobs/s through `corral agent` (registry, camera-sim, agent: 3 processes, 2 cores)",
            format!("{:.0} jobs/s", split.jobs_per_sec()),
            "≥ 1,000, or agent CPU ≤ 0.5 ms/job",
            split.jobs_per_sec() >= 1000.0 || agent <= Duration::from_micros(500),
        ),
        Figure::checked(
            "CPU per thumbnail job: the agent",
            ms_per_job(agent),
            "≤ 0.5 ms",
            agent <= Duration::from_micros(500),
        ),
        Figure::shown(
            "CPU per thumbnail job: the registry",
            ms_per_job(split.per_job("registry")),
        ),
        Figure::shown(
            "CPU per thumbnail job: camera-sim",
            ms_per_job(split.per_job("camera-sim")),
        ),
    ]
}

/// Starts the three processes (the agent with `max_jobs`), warms them up
/// with 50 jobs, then measures `jobs` thumbnail jobs.
pub async fn measure(jobs: usize, max_jobs: usize) -> CpuSplit {
    let site = Site::start(SiteConfig {
        devices: DEVICES,
        agent_max_jobs: Some(max_jobs),
    })
    .await;
    run(&site, 50).await;
    let names = ["agent", "registry", "camera-sim"];
    let before: Vec<Duration> = names
        .iter()
        .map(|name| process_cpu(site.pid(name)))
        .collect();
    let wall = run(&site, jobs).await;
    let parts = names
        .iter()
        .zip(before)
        .map(|(name, before)| (*name, process_cpu(site.pid(name)).saturating_sub(before)))
        .collect();
    CpuSplit { jobs, wall, parts }
}

/// Posts `count` thumbnail jobs at once; the time until all are final.
async fn run(site: &Site, count: usize) -> Duration {
    let jobs = thumbnails(&site.agent_id, count, DEVICES);
    let started = std::time::Instant::now();
    site.post(&jobs).await;
    site.wait_all_final(Duration::from_millis(10), |_| {}).await;
    started.elapsed()
}
