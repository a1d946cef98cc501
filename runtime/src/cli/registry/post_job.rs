//! `corral registry post-job`: its flags, checked with messages that name the
//! flag to change and show an example (the registry's own checks speak of
//! PROTOCOL.md's JSON fields, which a person on the command line never typed).

use std::path::{Path, PathBuf};

use corral_registry::wire::JOB_TYPES;
use corral_registry::{NewJob, Store, auth, store};

/// An example range, for messages.
const RANGE_EXAMPLE: &str = "--start 2026-11-20T10:00:00Z --end 2026-11-20T10:01:00Z";

/// Arguments of `corral registry post-job`.
#[derive(clap::Args)]
pub struct PostJobArgs {
    /// The data folder of an existing registry.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Keep the state in this PostgreSQL database
    /// (`postgres://user[:password]@host[:port]/db`) instead of the
    /// folder's SQLite, e.g. to serve it from several nodes.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// mediarequest, discovery or thumbnail.
    #[arg(long = "type", value_name = "TYPE")]
    job_type: String,
    /// The agent id the job is for (registered with `corral registry add-agent`).
    #[arg(long, value_name = "AGENT_ID")]
    agent: String,
    /// The device (required for thumbnail and mediarequest), e.g. `cam-0001`.
    #[arg(long, value_name = "DEVICE_ID")]
    device: Option<String>,
    /// Start of the range of a mediarequest (RFC 3339), e.g. `2026-11-20T10:00:00Z`.
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// End of the range of a mediarequest (RFC 3339), e.g. `2026-11-20T10:01:00Z`.
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// A parameter, `NAME=VALUE` (repeatable), e.g. `--param quality=high`.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
}

impl PostJobArgs {
    /// The job the flags describe, or what to change.
    pub fn new_job(&self) -> anyhow::Result<NewJob> {
        let job_type = self.job_type.as_str();
        if !JOB_TYPES.contains(&job_type) {
            anyhow::bail!(
                "--type {job_type} is not a job type: use --type mediarequest, discovery or thumbnail"
            );
        }
        let device = self.device.clone().filter(|device| !device.is_empty());
        if job_type != "discovery" && device.is_none() {
            anyhow::bail!("a {job_type} job needs --device, e.g. --device cam-0001");
        }
        let (start, end) = match (job_type, &self.start, &self.end) {
            ("mediarequest", Some(start), Some(end)) => {
                let from = time_flag("--start", start)?;
                let to = time_flag("--end", end)?;
                if to <= from {
                    anyhow::bail!("--end {end} is not after --start {start}");
                }
                (Some(start.clone()), Some(end.clone()))
            }
            ("mediarequest", _, _) => {
                anyhow::bail!("a mediarequest job needs --start and --end, e.g. {RANGE_EXAMPLE}")
            }
            (_, None, None) => (None, None),
            (_, _, _) => {
                anyhow::bail!("--start and --end are for mediarequest jobs only, not {job_type}")
            }
        };
        let mut parameters = serde_json::Map::new();
        for pair in &self.params {
            let Some((name, value)) = pair.split_once('=').filter(|(name, _)| !name.is_empty())
            else {
                anyhow::bail!("--param {pair}: expected NAME=VALUE, e.g. --param quality=high");
            };
            parameters.insert(name.to_string(), value.into());
        }
        Ok(NewJob {
            job_type: job_type.to_string(),
            agent_id: self.agent.clone(),
            device_id: device,
            start_time_utc: start,
            end_time_utc: end,
            parameters,
        })
    }
}

fn time_flag(flag: &str, text: &str) -> anyhow::Result<time::OffsetDateTime> {
    store::parse_rfc3339(text).ok_or_else(|| {
        anyhow::anyhow!("{flag} {text} is not an RFC 3339 time, e.g. {flag} 2026-11-20T10:00:00Z")
    })
}

/// Refuses a job for an agent the registry of `data` does not know: nobody
/// could ever lock it.
pub fn check_agent(store: &Store, data: &Path, agent: &str) -> anyhow::Result<()> {
    if store.transaction_blocking(|tx| auth::agent_exists(tx, agent))? {
        return Ok(());
    }
    let known = store.transaction_blocking(auth::agents)?;
    let known = if known.is_empty() {
        "it has no agents yet".to_string()
    } else {
        format!("its agents: {}", known.join(", "))
    };
    anyhow::bail!(
        "--agent {agent}: no such agent in the registry {dir} ({known}); add it with `corral registry add-agent --data {dir} --name {agent} --url <registry URL> --out {agent}.json`",
        dir = data.display()
    )
}
