//! `corral registry ...`: the on-premise registry, and people's and scripts'
//! access to its data folder (no token needed; SQLite lets these run beside
//! the server). With `--database` the state is in PostgreSQL instead, shared
//! by every node serving it.
//!
//! Only `serve` and `add-agent` create a registry, and they say so; the
//! commands that read one refuse a folder that holds none, so a mistyped
//! `--data` never makes an empty registry.

mod listing;
mod post_job;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use corral_envelope::keys::WrapAlgorithm;
use corral_registry::blobs::azure::AzureBlobs;
use corral_registry::{Registry, RegistryConfig, Store, auth, files, jobs};

/// Arguments of `corral registry`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Serve the registry (creating it if the folder holds none); prints the
    /// address it listens on first.
    Serve {
        /// The data folder (created, with a new registry, if it holds none).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Keep the state in this PostgreSQL database
        /// (`postgres://user[:password]@host[:port]/db`) instead of the
        /// folder's SQLite, e.g. to serve it from several nodes.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// Keep the files' bytes in this Azure Blob Storage container
        /// (`https://<account>.blob.core.windows.net/<container>`, or
        /// `http://127.0.0.1:10000/devstoreaccount1/<container>` for Azurite)
        /// instead of the folder's `blocks/`; the account key is read from
        /// CORRAL_BLOBS_KEY.
        #[arg(long, value_name = "CONTAINER_URL")]
        blobs: Option<String>,
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
        #[arg(long = "public-url", value_name = "URL")]
        public_urls: Vec<String>,
        /// Inject faults into every agent-service call and the token endpoint,
        /// for chaos runs: shares of calls refused with a 5xx or 429 (`fail`),
        /// dropped before they are carried out (`drop`), or whose answer is
        /// lost after (`lose`), e.g. `fail=0.2,drop=0.05,lose=0.05`. Switched
        /// at run time with `PUT /admin/api/v1/faults`.
        #[arg(long, value_name = "KIND=SHARE,...")]
        faults: Option<corral_registry::FaultRates>,
    },
    /// Register an agent and write its connection file (creating the
    /// registry if the folder holds none).
    AddAgent {
        /// The data folder (created, with a new registry, if it holds none).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Keep the state in this PostgreSQL database
        /// (`postgres://user[:password]@host[:port]/db`) instead of the
        /// folder's SQLite, e.g. to serve it from several nodes.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// The agent id, e.g. `agent-1`.
        #[arg(long, value_name = "AGENT_ID")]
        name: String,
        /// The registry's base URL, written into the file, e.g.
        /// `http://127.0.0.1:8080`; repeated for a registry of several
        /// nodes (the agent uses the first that answers).
        #[arg(long, value_name = "URL", required = true)]
        url: Vec<String>,
        /// Where to write the connection file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an agent that exists: it gets a new key, and its current
        /// connection file stops working.
        #[arg(long)]
        force: bool,
    },
    /// Post a job; prints its id alone.
    PostJob(post_job::PostJobArgs),
    /// List jobs: id, type, agent, device, state, progress, committed files
    /// (id, name, size) and the message (a failure or a cancel reason).
    Jobs {
        /// The data folder of an existing registry.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Keep the state in this PostgreSQL database
        /// (`postgres://user[:password]@host[:port]/db`) instead of the
        /// folder's SQLite, e.g. to serve it from several nodes.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// PROTOCOL.md's job objects with their files, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a committed file, decrypted.
    File {
        /// The data folder of an existing registry.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Keep the state in this PostgreSQL database
        /// (`postgres://user[:password]@host[:port]/db`) instead of the
        /// folder's SQLite, e.g. to serve it from several nodes.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// Keep the files' bytes in this Azure Blob Storage container
        /// (`https://<account>.blob.core.windows.net/<container>`, or
        /// `http://127.0.0.1:10000/devstoreaccount1/<container>` for Azurite)
        /// instead of the folder's `blocks/`; the account key is read from
        /// CORRAL_BLOBS_KEY.
        #[arg(long, value_name = "CONTAINER_URL")]
        blobs: Option<String>,
        /// The file id (`corral registry jobs` lists them).
        #[arg(long, value_name = "FILE_ID")]
        file: String,
        /// Where to write it: a file, a folder (the file keeps its name
        /// inside), or `-` for standard output.
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Cancel a job for good, whether it is available or locked by an agent
    /// (that agent loses its lock); a finished job is refused.
    CancelJob {
        /// The data folder of an existing registry.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Keep the state in this PostgreSQL database
        /// (`postgres://user[:password]@host[:port]/db`) instead of the
        /// folder's SQLite, e.g. to serve it from several nodes.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// Keep the files' bytes in this Azure Blob Storage container
        /// (`https://<account>.blob.core.windows.net/<container>`, or
        /// `http://127.0.0.1:10000/devstoreaccount1/<container>` for Azurite)
        /// instead of the folder's `blocks/`; the account key is read from
        /// CORRAL_BLOBS_KEY.
        #[arg(long, value_name = "CONTAINER_URL")]
        blobs: Option<String>,
        /// The job id (`corral registry jobs` lists them).
        #[arg(long, value_name = "JOB_ID")]
        job: String,
        /// Why, kept as the job's message.
        #[arg(long, default_value = "cancelled by the operator")]
        reason: String,
    },
}

/// Opens the store of `data`, its state in `database` when given.
fn open_store(data: &Path, database: Option<&str>) -> anyhow::Result<Store> {
    match database {
        Some(url) => Store::open_postgres(data, url),
        None => Store::open(data),
    }
    .map_err(anyhow::Error::msg)
}

/// `store` with its files' bytes in the Azure container `blobs`, when given.
fn with_blobs(store: Store, blobs: Option<&str>) -> anyhow::Result<Store> {
    let Some(url) = blobs else {
        return Ok(store);
    };
    let container = AzureBlobs::from_env(url).map_err(anyhow::Error::msg)?;
    Ok(store.with_blobs(std::sync::Arc::new(container)))
}

/// Opens the registry of `data` (or of `database`), refusing a folder that
/// holds none.
fn open_existing(data: &Path, database: Option<&str>) -> anyhow::Result<Store> {
    if database.is_some() {
        return open_store(data, database);
    }
    if !Store::exists(data) {
        anyhow::bail!(
            "--data {dir}: this folder holds no registry (no {db}); check the path, or create a registry with `corral registry serve --data {dir}` or `corral registry add-agent --data {dir} ...`",
            dir = data.display(),
            db = Store::database_path(data).display(),
        );
    }
    Store::open(data).map_err(anyhow::Error::msg)
}

/// Says on stderr that a registry is about to be created in `data`, if it
/// holds none yet.
fn announce_creation(data: &Path, database: Option<&str>) {
    if database.is_none() && !Store::exists(data) {
        eprintln!("creating a new registry in {}", data.display());
    }
}

/// Runs a registry subcommand.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Serve {
            data,
            database,
            blobs,
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
            announce_creation(&data, database.as_deref());
            let store = with_blobs(open_store(&data, database.as_deref())?, blobs.as_deref())?;
            if blobs.is_some() {
                eprintln!("files in {}", store.blobs().describe());
            }
            let registry = Registry::with_store(store, config).map_err(anyhow::Error::msg)?;
            if let Some(rates) = faults {
                registry.faults().set(rates);
                eprintln!("injecting faults: {rates:?}");
            }
            let running = registry.start(listen).await.map_err(|error| {
                anyhow::anyhow!("{error}: pass another --listen (port 0 picks a free one)")
            })?;
            println!("{}", running.addr());
            eprintln!("admin token in {}", data.join("admin-token").display());
            eprintln!(
                "console at {}/ (sign in with the admin token)",
                running.base_url()
            );
            tokio::select! {
                () = running.wait() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::AddAgent {
            data,
            database,
            name,
            url,
            out,
            force,
        } => {
            let existed = database.is_some() || Store::exists(&data);
            announce_creation(&data, database.as_deref());
            let store = open_store(&data, database.as_deref())?;
            let replaced =
                existed && store.transaction_blocking(|tx| auth::agent_exists(tx, &name))?;
            if replaced && !force {
                anyhow::bail!(
                    "agent {name} already exists in {}: replacing it gives it a new key, and its current connection file stops working (its token requests are refused); pass --force to replace it",
                    data.display()
                );
            }
            let (file, secret) =
                store.transaction_blocking(|tx| auth::add_agent_at(tx, &name, &url))?;
            let json =
                serde_json::to_vec_pretty(&file).context("serializing the connection file")?;
            write_private(&out, &json)
                .with_context(|| format!("cannot write --out {}", out.display()))?;
            if replaced {
                eprintln!(
                    "agent {name} replaced: connection files written before this one no longer work"
                );
            }
            eprintln!(
                "agent {name}: connection file {}; client_credentials secret {secret}",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::PostJob(args) => {
            let job = args.new_job()?;
            let store = open_existing(&args.data, args.database.as_deref())?;
            post_job::check_agent(&store, &args.data, &job.agent_id)?;
            let posted = store.transaction_blocking(|tx| jobs::post(tx, &job))?;
            println!("{}", posted.job_id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs {
            data,
            database,
            json,
        } => {
            let store = open_existing(&data, database.as_deref())?;
            let list = store.transaction_blocking(|tx| jobs::list(tx, None, None))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", listing::jobs_table(&list));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::File {
            data,
            database,
            blobs,
            file,
            out,
        } => {
            let store = with_blobs(open_existing(&data, database.as_deref())?, blobs.as_deref())?;
            let row = store.transaction_blocking(|tx| files::committed(tx, &file))?;
            let plaintext = files::decrypt(&store, &row)?;
            listing::write_file(&out, &row.file_name, &plaintext)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CancelJob {
            data,
            database,
            blobs,
            job,
            reason,
        } => {
            let store = with_blobs(open_existing(&data, database.as_deref())?, blobs.as_deref())?;
            let cancelled =
                store.transaction_blocking(|tx| jobs::cancel_by_operator(tx, &job, &reason))?;
            // The cancelled lock's blocks go now, as after an agent's cancel.
            let _ = files::sweep_abandoned(&store);
            eprintln!("job {} cancelled: {reason}", cancelled.job_id);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes a file only its owner can read (connection files hold a private key).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
