//! `corral registry ...`: the on-premise registry, and scripts' access to its
//! data folder (no token needed; SQLite lets these run beside the server).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use corral_envelope::keys::WrapAlgorithm;
use corral_registry::{NewJob, Registry, RegistryConfig, Store, auth, files, jobs};

/// Arguments of `corral registry`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Serve the registry; prints the address it listens on first.
    Serve {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Longest lock granted, in seconds.
        #[arg(long, default_value_t = corral_registry::jobs::DEFAULT_MAX_LOCK_SECONDS)]
        max_lock_secs: u64,
        /// Wrap content keys with A256KW keys instead of RSA-OAEP.
        #[arg(long)]
        oct_keys: bool,
        /// Another base URL the registry is reached under (for token audiences).
        #[arg(long = "public-url")]
        public_urls: Vec<String>,
        /// Inject faults into every agent-service call and the token endpoint,
        /// for chaos runs: shares of calls refused with a 5xx or 429 (`fail`),
        /// dropped before they are carried out (`drop`), or whose answer is
        /// lost after (`lose`), e.g. `fail=0.2,drop=0.05,lose=0.05`. Switched
        /// at run time with `PUT /admin/api/v1/faults`.
        #[arg(long, value_name = "KIND=SHARE,...")]
        faults: Option<corral_registry::FaultRates>,
    },
    /// Register an agent and write its connection file.
    AddAgent {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// The agent id.
        #[arg(long)]
        name: String,
        /// The registry's base URL, written into the file.
        #[arg(long)]
        url: String,
        /// Where to write the connection file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Post a job; prints its id alone.
    PostJob {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// mediarequest, discovery or thumbnail.
        #[arg(long = "type")]
        job_type: String,
        /// The agent id.
        #[arg(long)]
        agent: String,
        /// The device.
        #[arg(long)]
        device: Option<String>,
        /// Start of the range (RFC 3339).
        #[arg(long)]
        start: Option<String>,
        /// End of the range (RFC 3339).
        #[arg(long)]
        end: Option<String>,
        /// A parameter, k=v (repeatable).
        #[arg(long = "param", value_name = "K=V")]
        params: Vec<String>,
    },
    /// List jobs.
    Jobs {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// PROTOCOL.md's job objects with their files, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a committed file, decrypted.
    File {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// The file id.
        #[arg(long)]
        file: String,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
}

fn open_store(data: &std::path::Path) -> anyhow::Result<Store> {
    Store::open(data).map_err(anyhow::Error::msg)
}

/// Runs a registry subcommand.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Serve {
            data,
            listen,
            max_lock_secs,
            oct_keys,
            public_urls,
            faults,
        } => {
            let config = RegistryConfig {
                max_lock_seconds: max_lock_secs,
                key_algorithm: if oct_keys {
                    WrapAlgorithm::A256Kw
                } else {
                    WrapAlgorithm::RsaOaep
                },
                public_urls,
                ..RegistryConfig::default()
            };
            let registry = Registry::open(&data, config).map_err(anyhow::Error::msg)?;
            if let Some(rates) = faults {
                registry.faults().set(rates);
                eprintln!("injecting faults: {rates:?}");
            }
            let running = registry.start(listen).await.map_err(anyhow::Error::msg)?;
            println!("{}", running.addr());
            eprintln!("admin token in {}", data.join("admin-token").display());
            tokio::select! {
                () = running.wait() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::AddAgent {
            data,
            name,
            url,
            out,
        } => {
            let store = open_store(&data)?;
            let (file, secret) =
                store.transaction_blocking(|tx| auth::add_agent(tx, &name, &url))?;
            let json =
                serde_json::to_vec_pretty(&file).context("serializing the connection file")?;
            write_private(&out, &json)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "agent {name}: connection file {}; client_credentials secret {secret}",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::PostJob {
            data,
            job_type,
            agent,
            device,
            start,
            end,
            params,
        } => {
            let mut parameters = serde_json::Map::new();
            for pair in &params {
                let (key, value) = pair
                    .split_once('=')
                    .with_context(|| format!("--param {pair}: expected k=v"))?;
                parameters.insert(
                    key.to_string(),
                    serde_json::Value::String(value.to_string()),
                );
            }
            let job = NewJob {
                job_type,
                agent_id: agent,
                device_id: device,
                start_time_utc: start,
                end_time_utc: end,
                parameters,
            };
            let store = open_store(&data)?;
            let posted = store.transaction_blocking(|tx| jobs::post(tx, &job))?;
            println!("{}", posted.job_id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { data, json } => {
            let store = open_store(&data)?;
            let list = store.transaction_blocking(|tx| jobs::list(tx, None, None))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<26} {:<13} {:<12} {:<19} {:>12}  files",
                    "job", "type", "device", "state", "progress"
                );
                for job in &list {
                    let files = job.files.as_deref().unwrap_or_default();
                    let committed: Vec<String> = files
                        .iter()
                        .filter(|file| file.committed)
                        .map(|file| format!("{} ({} B)", file.file_name, file.length.unwrap_or(0)))
                        .collect();
                    println!(
                        "{:<26} {:<13} {:<12} {:<19} {:>12}  {}",
                        job.job_id,
                        job.job_type,
                        job.device_id.as_deref().unwrap_or("-"),
                        job.state,
                        format!("{}/{}", job.task_progress, job.task_total),
                        committed.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::File { data, file, out } => {
            let store = open_store(&data)?;
            let row = store.transaction_blocking(|tx| files::committed(tx, &file))?;
            let plaintext = files::decrypt(&store, &row)?;
            std::fs::write(&out, plaintext)
                .with_context(|| format!("cannot write {}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes a file only its owner can read (connection files hold a private key).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}
