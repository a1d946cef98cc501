//! `agent.toml`: what one agent process is (one registry identity) and how it
//! works.
//!
//! ```toml
//! connection_file = "agent-1.json"   # a Clearance-style connection file
//! agent_id = "agent-1"               # optional: the file's ServicePrincipalId
//! guests_dir = "guests"              # each <name>.wasm with its manifest <name>.toml beside it
//! max_jobs = 4                       # jobs at once, overall
//! poll_interval_secs = 5             # the longest wait between polls when idle
//! status_listen = "127.0.0.1:9187"   # optional: /healthz and /metrics
//!
//! # Optional, with their defaults:
//! # registry_url = "https://..."     # instead of the file's first ApiBaseAddresses entry
//! # ca_file = "registry-ca.pem"      # an extra CA for an on-premise registry
//! # lock_secs = 60                   # lease asked for each job
//! # shutdown_grace_secs = 30         # how long running jobs may finish on SIGTERM
//! # blocks_in_flight = 4             # upload blocks in flight per file
//! # min_poll_interval_secs = 0.25    # the shortest wait between two polls (unless the last filled every free slot)
//! # max_discovered_devices = 250000  # devices one guest may report in a discovery job (and own)
//! # cache_dir = "~/.cache/corral/guests"  # compiled guests: a folder of the agent's own, never the guests folder
//! # [max_jobs_per_type]
//! # mediarequest = 2
//!
//! [secrets.camera-sim]               # where each camera secret may be sent
//! origins = ["http://127.0.0.1:8081"]
//! # methods = ["GET", "HEAD"]        # the methods it may be sent with (the default)
//! # guests = ["http-vms"]            # the guests (file stems: http-vms.wasm) that may ask for it (default: any)
//! # tls_ca = "vms-ca.pem"            # for https: a CA its requests trust, besides the system's roots
//!
//! [policy]                           # bounds on every manifest: see `corral::policy`
//! folders = ["/srv/exports"]
//! max_wall_secs = 3600
//! # local_grants = ["127.0.0.1:6379"] # IP grants to loopback, this machine, metadata, link-local...
//! ```
//!
//! Camera credentials' values come from the environment:
//! `CORRAL_SECRET_<NAME>=user:password`. A manifest may only ask for a secret
//! by name on a grant; the host adds it only to origins listed here (`*.`
//! wildcards allowed), and a grant asking for it with another method, or
//! from a guest not listed, is refused at load. An origin listed here is
//! also one the operator means: an IP grant of it may reach this machine
//! (see `corral::policy`). Relative paths are relative to the config file's
//! folder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::manifest::parse_methods;
use crate::origin::OriginPattern;
use crate::policy::{OperatorPolicy, RawPolicy};
use crate::protocol::JobType;
use crate::secrets::{SecretBinding, Secrets};

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
#[error("agent config {path}: {problem}")]
pub struct ConfigError {
    path: String,
    problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    connection_file: PathBuf,
    agent_id: Option<String>,
    guests_dir: PathBuf,
    #[serde(default = "default_max_jobs")]
    max_jobs: usize,
    #[serde(default)]
    max_jobs_per_type: BTreeMap<String, usize>,
    #[serde(default = "default_poll")]
    poll_interval_secs: f64,
    status_listen: Option<SocketAddr>,
    registry_url: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default = "default_lock")]
    lock_secs: u64,
    #[serde(default = "default_grace")]
    shutdown_grace_secs: f64,
    #[serde(default = "default_blocks")]
    blocks_in_flight: usize,
    min_poll_interval_secs: Option<f64>,
    #[serde(default = "default_max_devices")]
    max_discovered_devices: usize,
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    secrets: BTreeMap<String, RawSecret>,
    #[serde(default)]
    policy: RawPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    origins: Vec<String>,
    methods: Option<Vec<String>>,
    guests: Option<Vec<String>>,
    tls_ca: Option<PathBuf>,
}

fn default_max_jobs() -> usize {
    4
}
fn default_poll() -> f64 {
    5.0
}
fn default_lock() -> u64 {
    60
}
fn default_grace() -> f64 {
    30.0
}
fn default_blocks() -> usize {
    4
}
fn default_min_poll() -> f64 {
    0.25
}

/// The minimum poll interval when the config names none: the default, or
/// the poll interval when that is shorter.
fn min_poll_for(poll_interval_secs: f64) -> f64 {
    default_min_poll().min(poll_interval_secs)
}
fn default_max_devices() -> usize {
    250_000
}

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The connection file.
    pub connection_file: PathBuf,
    /// This agent's id; `None`: the connection file's ServicePrincipalId.
    pub agent_id: Option<String>,
    /// The guests folder.
    pub guests_dir: PathBuf,
    /// Jobs at once.
    pub max_jobs: usize,
    /// Jobs at once per type.
    pub max_jobs_per_type: BTreeMap<JobType, usize>,
    /// Longest wait between polls when idle.
    pub poll_interval: Duration,
    /// Shortest wait between two polls, unless the last one filled every
    /// free slot (a queue is waiting).
    pub min_poll_interval: Duration,
    /// Devices one guest may report in a discovery job, and own in all.
    pub max_discovered_devices: usize,
    /// Where to serve /healthz and /metrics.
    pub status_listen: Option<SocketAddr>,
    /// Registry base URL override.
    pub registry_url: Option<String>,
    /// Extra CA certificates.
    pub ca_file: Option<PathBuf>,
    /// Lease asked for each job.
    pub lock_duration: Duration,
    /// How long running jobs may finish on shutdown.
    pub shutdown_grace: Duration,
    /// Upload blocks in flight per file.
    pub blocks_in_flight: usize,
    /// Where compiled guests are cached.
    pub cache_dir: PathBuf,
    /// Where each secret may be sent (origins, methods, guests, CA), by
    /// secret name.
    pub secret_bindings: BTreeMap<String, SecretBinding>,
    /// The operator's bounds on every manifest, protecting the agent's own files.
    pub policy: OperatorPolicy,
}

impl AgentConfig {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let fail = |problem: String| ConfigError {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| fail(format!("cannot be read: {error}")))?;
        let raw: RawConfig = toml::from_str(&text)
            .map_err(|error| fail(error.to_string().trim_end().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        if raw.agent_id.as_ref().is_some_and(|id| id.trim().is_empty()) {
            return Err(fail(
                "agent_id is empty: remove the key to use the connection file's ServicePrincipalId"
                    .into(),
            ));
        }
        let min_poll = raw
            .min_poll_interval_secs
            .unwrap_or_else(|| min_poll_for(raw.poll_interval_secs));
        if !(min_poll >= 0.0 && min_poll <= raw.poll_interval_secs) {
            return Err(fail(format!(
                "min_poll_interval_secs = {min_poll} must be between 0 and poll_interval_secs ({})",
                raw.poll_interval_secs
            )));
        }
        if raw.max_discovered_devices == 0 {
            return Err(fail("max_discovered_devices must be at least 1".into()));
        }
        if raw.max_jobs == 0 {
            return Err(fail("max_jobs must be at least 1".into()));
        }
        if !(raw.poll_interval_secs > 0.0 && raw.poll_interval_secs < 86_400.0) {
            return Err(fail(format!(
                "poll_interval_secs = {} is not a positive number of seconds",
                raw.poll_interval_secs
            )));
        }
        if raw.lock_secs < 3 {
            return Err(fail("lock_secs must be at least 3".into()));
        }
        let mut per_type = BTreeMap::new();
        for (name, limit) in raw.max_jobs_per_type {
            let job = JobType::parse(&name).ok_or_else(|| {
                fail(format!("max_jobs_per_type names unknown job type `{name}`"))
            })?;
            per_type.insert(job, limit);
        }
        let mut secret_bindings = BTreeMap::new();
        for (name, secret) in raw.secrets {
            let origins = secret
                .origins
                .iter()
                .map(|origin| {
                    OriginPattern::parse(origin)
                        .map_err(|why| fail(format!("secrets.{name}.origins: {why}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut binding = SecretBinding::to(&origins);
            if let Some(methods) = &secret.methods {
                binding.methods = parse_methods(&format!("secrets.{name}"), methods)
                    .map_err(|why| fail(why.replacen("http grant ", "", 1)))?;
                if binding.methods.iter().any(|method| method == "TRACE") {
                    return Err(fail(format!(
                        "secrets.{name}.methods: a secret is never sent with TRACE (it reflects the request, credentials included)"
                    )));
                }
            }
            if let Some(guests) = secret.guests {
                if guests.is_empty() {
                    return Err(fail(format!(
                        "secrets.{name}.guests is empty: no guest could ask for it (remove the key for any guest)"
                    )));
                }
                binding.guests = Some(guests);
            }
            if let Some(ca) = secret.tls_ca {
                let ca = resolve(ca);
                if !ca.is_file() {
                    return Err(fail(format!(
                        "secrets.{name}.tls_ca: {} is not a PEM file here",
                        ca.display()
                    )));
                }
                binding.tls_ca = Some(ca);
            }
            secret_bindings.insert(name, binding);
        }
        let guests_dir = resolve(raw.guests_dir);
        let policy = raw.policy.resolve(base).map_err(fail)?;
        let connection_file = resolve(raw.connection_file);
        let cache_dir = raw
            .cache_dir
            .map(resolve)
            .unwrap_or_else(crate::cache::default_dir);
        let ca_file = raw.ca_file.map(resolve);
        let protected = [
            Some(path.to_path_buf()),
            Some(connection_file.clone()),
            Some(cache_dir.clone()),
            Some(guests_dir.clone()),
            ca_file.clone(),
        ];
        Ok(AgentConfig {
            policy: policy.protecting(protected.into_iter().flatten()),
            secret_bindings,
            connection_file,
            cache_dir,
            ca_file,
            agent_id: raw.agent_id,
            guests_dir,
            max_jobs: raw.max_jobs,
            max_jobs_per_type: per_type,
            poll_interval: Duration::from_secs_f64(raw.poll_interval_secs),
            min_poll_interval: Duration::from_secs_f64(min_poll),
            max_discovered_devices: raw.max_discovered_devices,
            status_listen: raw.status_listen,
            registry_url: raw.registry_url,
            lock_duration: Duration::from_secs(raw.lock_secs),
            shutdown_grace: Duration::from_secs_f64(raw.shutdown_grace_secs.max(0.0)),
            blocks_in_flight: raw.blocks_in_flight.max(1),
        })
    }

    /// Binds each secret of `secrets` as this config says (origins, methods,
    /// guests, CA).
    pub fn bind_secrets(&self, secrets: &mut Secrets) {
        for (name, binding) in &self.secret_bindings {
            secrets.bind_with(name, binding.clone());
        }
    }

    /// A config for an agent set up in code (the demo, tests).
    pub fn new(agent_id: &str, connection_file: PathBuf, guests_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            secret_bindings: BTreeMap::new(),
            policy: OperatorPolicy::default().protecting([
                connection_file.clone(),
                guests_dir.clone(),
                crate::cache::default_dir(),
            ]),
            cache_dir: crate::cache::default_dir(),
            connection_file,
            agent_id: Some(agent_id.to_string()),
            guests_dir,
            max_jobs: default_max_jobs(),
            max_jobs_per_type: BTreeMap::new(),
            poll_interval: Duration::from_secs_f64(default_poll()),
            min_poll_interval: Duration::from_secs_f64(min_poll_for(default_poll())),
            max_discovered_devices: default_max_devices(),
            status_listen: None,
            registry_url: None,
            ca_file: None,
            lock_duration: Duration::from_secs(default_lock()),
            shutdown_grace: Duration::from_secs_f64(default_grace()),
            blocks_in_flight: default_blocks(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AgentConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        AgentConfig::load(&path)
    }

    #[test]
    fn the_documented_example_loads() {
        let config = load(
            "connection_file = \"agent-1.json\"\nagent_id = \"agent-1\"\nguests_dir = \"guests\"\nmax_jobs = 4\n\
             poll_interval_secs = 5\nstatus_listen = \"127.0.0.1:9187\"\n[max_jobs_per_type]\nmediarequest = 2\n\
             [secrets.camera-sim]\norigins = [\"http://127.0.0.1:8081\", \"https://*.cams.example.com\"]\n",
        )
        .unwrap();
        assert_eq!(config.max_jobs, 4);
        assert!(config.connection_file.is_absolute());
        assert_eq!(config.max_jobs_per_type[&JobType::MediaRequest], 2);
        assert_eq!(config.secret_bindings["camera-sim"].origins.len(), 2);
        assert_eq!(
            config.secret_bindings["camera-sim"].methods,
            ["GET", "HEAD"]
        );
        assert_eq!(config.secret_bindings["camera-sim"].guests, None);
    }

    #[test]
    fn a_secret_binding_names_its_methods_guests_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vms-ca.pem"), "").unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "connection_file = \"c.json\"\nguests_dir = \"g\"\n[secrets.vms]\norigins = [\"https://vms.lan\"]\n\
             methods = [\"get\", \"POST\"]\nguests = [\"http-vms\"]\ntls_ca = \"vms-ca.pem\"\n\
             [policy]\nlocal_grants = [\"http://127.0.0.1:8081\", \"127.0.0.1:6379\"]\n",
        )
        .unwrap();
        let config = AgentConfig::load(&path).unwrap();
        let binding = &config.secret_bindings["vms"];
        assert_eq!(binding.methods, ["GET", "POST"]);
        assert_eq!(
            binding.guests.as_deref(),
            Some(&["http-vms".to_string()][..])
        );
        assert_eq!(binding.tls_ca, Some(dir.path().join("vms-ca.pem")));
        assert_eq!(config.policy.local_tcp, ["127.0.0.1:6379".parse().unwrap()]);
        assert_eq!(config.policy.local_origins.len(), 1);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let base = "connection_file = \"c.json\"\nagent_id = \"a\"\nguests_dir = \"g\"\n";
        for (extra, expected) in [
            ("max_jobs = 0\n", "max_jobs"),
            ("colour = 1\n", "unknown field"),
            (
                "[max_jobs_per_type]\nvideo = 1\n",
                "unknown job type `video`",
            ),
            ("lock_secs = 1\n", "lock_secs"),
            (
                "[secrets.cams]\norigins = [\"ftp://x\"]\n",
                "secrets.cams.origins",
            ),
            ("[policy]\nmax_wall_secs = -1\n", "policy.max_wall_secs"),
            (
                "[policy]\nfolders = [\"/no/such/folder\"]\n",
                "policy.folders",
            ),
            ("[policy]\nmax_jobs = 1\n", "unknown field"),
            (
                "[secrets.cams]\norigins = [\"http://10.0.0.5\"]\nmethods = [\"GET\", \"TRACE\"]\n",
                "secrets.cams.methods",
            ),
            (
                "[secrets.cams]\norigins = [\"http://10.0.0.5\"]\nmethods = [\"CONNECT\"]\n",
                "CONNECT",
            ),
            (
                "[secrets.cams]\norigins = [\"http://10.0.0.5\"]\nguests = []\n",
                "secrets.cams.guests",
            ),
            (
                "[secrets.cams]\norigins = [\"https://10.0.0.5\"]\ntls_ca = \"nope.pem\"\n",
                "secrets.cams.tls_ca",
            ),
            (
                "[policy]\nlocal_grants = [\"http://localhost:8081\"]\n",
                "policy.local_grants",
            ),
            (
                "poll_interval_secs = 1\nmin_poll_interval_secs = 2\n",
                "min_poll_interval_secs",
            ),
            ("max_discovered_devices = 0\n", "max_discovered_devices"),
        ] {
            let error = load(&format!("{base}{extra}")).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        assert!(
            load("agent_id = \"a\"\n")
                .unwrap_err()
                .to_string()
                .contains("connection_file")
        );
    }
}
