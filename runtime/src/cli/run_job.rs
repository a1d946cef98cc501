//! `corral run-job`: one job, one guest, no registry. Outputs go to a folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use corral::cache::CacheUse;
use corral::engine::{Runtime, RuntimeConfig};
use corral::guest::{JobEnv, JobOutcome, JobReport};
use corral::manifest::Manifest;
use corral::protocol::Job;
use corral::sandbox::progress::{self, Progress};
use corral::secrets::Secrets;
use corral::sink::{DirSink, OutputSink};

use super::human_bytes;

/// Arguments of `corral run-job`.
#[derive(clap::Args)]
pub struct Args {
    /// The guest component (`.wasm`); its manifest is the `.toml` beside it.
    #[arg(long)]
    guest: PathBuf,
    /// The job, as PROTOCOL.md's job JSON, e.g. a file holding
    /// `{"jobId":"1","type":"thumbnail","deviceId":"cam-0001"}`.
    #[arg(long, value_name = "FILE")]
    job: PathBuf,
    /// Folder for the output files (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// A manifest other than the one beside the guest.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Override a manifest setting, `name=value` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    settings: Vec<String>,
    /// A secret the manifest's grants may name, `name=user:password`
    /// (repeatable); `CORRAL_SECRET_<NAME>` variables are read too.
    #[arg(long = "secret", value_name = "NAME=USER:PASSWORD")]
    secrets: Vec<String>,
    /// Where compiled guests are cached, as by the agent (default: the
    /// agent's, ~/.cache/corral/guests): an unchanged guest then starts in
    /// milliseconds instead of being compiled again.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the guest without the cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

/// Runs the job and prints what happened; exits 1 if the job did not succeed.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let manifest_path = args
        .manifest
        .clone()
        .unwrap_or_else(|| Manifest::path_for(&args.guest));
    let mut manifest = Manifest::load(&manifest_path)?;
    for pair in &args.settings {
        let (name, value) = pair.split_once('=').with_context(|| {
            format!("--set {pair}: expected NAME=VALUE, e.g. --set base-url=http://127.0.0.1:8081")
        })?;
        let Some(setting) = manifest.settings.get_mut(name) else {
            let known: Vec<&str> = manifest.settings.keys().map(String::as_str).collect();
            anyhow::bail!(
                "--set {name}: manifest {} has no setting `{name}` (its settings: {}); --set only overrides a setting the manifest has",
                manifest_path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
        };
        *setting = value.to_string();
    }
    let mut secrets = Secrets::from_env()?;
    for pair in &args.secrets {
        secrets.insert_pair(pair)?;
    }
    let job_json = std::fs::read(&args.job)
        .with_context(|| format!("cannot read job file {}", args.job.display()))?;
    let job = Job::from_json(&job_json).map_err(|why| {
        anyhow::anyhow!("job file {} is not a valid job: {why}", args.job.display())
    })?;

    // The dev loop: the guest's author is its operator, so each secret goes
    // where this manifest asks for it. The agent binds secrets from agent.toml.
    secrets.bind_as_asked(&manifest.http);
    let secrets = Arc::new(secrets);
    let folders = manifest.folders.iter().map(|(host, _)| host.clone());
    // Likewise its IP grants of this machine (the agent needs the operator's
    // `[policy] local_grants` or a secret bound there).
    let policy = corral::policy::OperatorPolicy::default()
        .allowing_folders(folders)
        .allowing_local_grants(&manifest);
    let mut runtime = Runtime::new(RuntimeConfig { max_instances: 2 })?
        .with_secrets(secrets.clone())
        .with_policy(Arc::new(policy));
    if !args.no_cache {
        let dir = args
            .cache_dir
            .clone()
            .unwrap_or_else(corral::cache::default_dir);
        runtime = runtime.with_cache(&dir)?;
    }
    let bytes = std::fs::read(&args.guest)
        .with_context(|| format!("cannot read guest {}", args.guest.display()))?;
    let loading = std::time::Instant::now();
    let guest = runtime
        .load_bytes(&bytes, manifest)
        .with_context(|| format!("cannot load guest {}", args.guest.display()))?;
    let load = LoadReport {
        took: loading.elapsed(),
        cache_use: guest.cache_use(),
        cache_dir: runtime.cache_dir().map(Path::to_path_buf),
    };
    let sink = DirSink::new(&args.out)
        .with_context(|| format!("cannot create output folder {}", args.out.display()))?;
    let sink: Arc<dyn OutputSink> = Arc::new(sink);

    let (progress_tx, progress_rx) = progress::channel();
    let printer = tokio::spawn(print_progress(progress_rx));
    let env = JobEnv {
        sink: sink.clone(),
        progress: progress_tx,
    };
    let mut report = guest.run(&job, env).await;
    printer.abort();
    report.store_discovery(sink.as_ref()).await?;
    print_report(&report, guest.manifest(), guest.sha256());
    println!("load      {load}");
    Ok(match report.outcome {
        JobOutcome::Completed | JobOutcome::PartiallyCompleted | JobOutcome::Discovered(_) => {
            ExitCode::SUCCESS
        }
        _ => ExitCode::FAILURE,
    })
}

/// How the guest was loaded, for the last line of the report.
struct LoadReport {
    took: Duration,
    cache_use: Option<CacheUse>,
    cache_dir: Option<PathBuf>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let took = self.took;
        match (self.cache_use, &self.cache_dir) {
            (Some(CacheUse::Hit), Some(dir)) => {
                write!(f, "{took:.0?} from the compile cache {}", dir.display())
            }
            (Some(CacheUse::Miss), Some(dir)) => write!(
                f,
                "{took:.0?}, compiled and stored in the compile cache {}",
                dir.display()
            ),
            _ => write!(f, "{took:.0?}, compiled (no compile cache)"),
        }
    }
}

async fn print_progress(mut progress: tokio::sync::watch::Receiver<Progress>) {
    while progress.changed().await.is_ok() {
        let Progress { done, total } = *progress.borrow_and_update();
        if total > 0 {
            eprintln!(
                "progress {done}/{total} ({:.0}%)",
                done as f64 * 100.0 / total as f64
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print_report(report: &JobReport, manifest: &Manifest, sha256: &str) {
    let (state, message) = match &report.outcome {
        JobOutcome::Completed => ("completed", None),
        JobOutcome::PartiallyCompleted => ("partially completed", None),
        JobOutcome::Discovered(devices) => {
            ("completed", Some(format!("{} devices", devices.len())))
        }
        JobOutcome::Unavailable(why) => ("unavailable (would be released)", Some(why.clone())),
        JobOutcome::Unsupported(why) => ("unsupported (would be cancelled)", Some(why.clone())),
        JobOutcome::Failed(why) => ("failed", Some(why.clone())),
    };
    println!("outcome   {state}");
    if let Some(message) = message {
        println!("message   {message}");
    }
    for file in &report.files {
        println!(
            "file      {}  {}  {}  sha256 {}  -> {}",
            file.name,
            file.content_type,
            human_bytes(file.length),
            file.sha256,
            file.location
        );
    }
    let bytes: u64 = report.files.iter().map(|file| file.length).sum();
    println!("bytes     {bytes}");
    println!(
        "progress  {}/{}",
        report.progress.done, report.progress.total
    );
    println!(
        "guest     {} {} (sha256 {}…), guest time {:?}, elapsed {:?}",
        manifest.name,
        manifest.version,
        &sha256[..12],
        report.guest_time,
        report.elapsed
    );
}
