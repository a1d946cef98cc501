//! The operator's policy over manifests: what any guest of this agent may be
//! granted at most. A manifest *asks*; the policy (`[policy]` in `agent.toml`)
//! bounds what it can get, and a manifest that asks for more is refused at
//! load with a message naming the policy key to change.
//!
//! ```toml
//! [policy]                         # every key optional; the defaults are shown
//! folders = []                     # host folders a manifest may grant (it may grant them or folders inside)
//! max_memory_mib = 1024
//! max_cpu_secs = 600
//! max_wall_secs = 3600
//! max_output_mib = 65536
//! max_log_lines = 10000
//! log_bytes_per_job = 1048576      # all of a job's log lines together
//! log_lines_per_sec = 100          # lines past this rate are dropped (and counted)
//! # origins = ["http://10.0.0.0"]  # if set, the only HTTP origins a manifest may grant (`*.` allowed)
//! # tcp = ["10.0.0.5:554"]         # if set, the only raw TCP endpoints a manifest may grant
//! allow_symlinks = false           # guest files that are links (to files owned by the agent's user or root)
//! ```
//!
//! Whatever the policy says, a folder grant that holds the agent's own files
//! (its config, connection file, compile cache) is refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::manifest::{Limits, Manifest, parse_seconds};
use crate::origin::OriginPattern;

/// Why a manifest is refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyRefusal(String);

/// The operator's bounds on every manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorPolicy {
    /// Host folders a manifest may grant (or folders inside them).
    pub folders: Vec<PathBuf>,
    /// The largest limits a manifest may ask for.
    pub max: Limits,
    /// Bytes of log a job may write.
    pub log_bytes_per_job: u64,
    /// Log lines a second a job may write; more are dropped.
    pub log_lines_per_sec: u32,
    /// If set, the only HTTP origins a manifest may grant.
    pub origins: Option<Vec<OriginPattern>>,
    /// If set, the only raw TCP endpoints a manifest may grant.
    pub tcp: Option<Vec<SocketAddr>>,
    /// Whether guest files may be symbolic links.
    pub allow_symlinks: bool,
    /// The agent's own files and folders, never grantable.
    pub protected: Vec<PathBuf>,
}

impl Default for OperatorPolicy {
    fn default() -> Self {
        OperatorPolicy {
            folders: Vec::new(),
            max: Limits {
                memory_bytes: 1 << 30,
                cpu: Duration::from_secs(600),
                wall: Duration::from_secs(3600),
                output_bytes: 64 << 30,
                log_lines: 10_000,
            },
            log_bytes_per_job: 1 << 20,
            log_lines_per_sec: 100,
            origins: None,
            tcp: None,
            allow_symlinks: false,
            protected: Vec::new(),
        }
    }
}

/// `[policy]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    folders: Vec<PathBuf>,
    max_memory_mib: Option<u64>,
    max_cpu_secs: Option<f64>,
    max_wall_secs: Option<f64>,
    max_output_mib: Option<u64>,
    max_log_lines: Option<u32>,
    log_bytes_per_job: Option<u64>,
    log_lines_per_sec: Option<u32>,
    origins: Option<Vec<String>>,
    tcp: Option<Vec<String>>,
    #[serde(default)]
    allow_symlinks: bool,
}

impl RawPolicy {
    /// The policy, paths resolved against `base`; `Err` names the bad key.
    pub fn resolve(self, base: &Path) -> Result<OperatorPolicy, String> {
        let defaults = OperatorPolicy::default();
        let secs =
            |value, key: &str, default| parse_seconds(value, &format!("policy.{key}"), default);
        let folders = self
            .folders
            .into_iter()
            .map(|folder| {
                let folder = if folder.is_absolute() {
                    folder
                } else {
                    base.join(folder)
                };
                std::fs::canonicalize(&folder).map_err(|error| {
                    format!(
                        "policy.folders: {} cannot be used: {error}",
                        folder.display()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let origins = self
            .origins
            .map(|origins| {
                origins
                    .iter()
                    .map(|origin| {
                        OriginPattern::parse(origin).map_err(|why| format!("policy.origins: {why}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let tcp = self
            .tcp
            .map(|endpoints| {
                endpoints
                    .iter()
                    .map(|endpoint| {
                        endpoint.parse::<SocketAddr>().map_err(|_| {
                            format!("policy.tcp: `{endpoint}` is not an IP address and port")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(OperatorPolicy {
            folders,
            max: Limits {
                memory_bytes: self
                    .max_memory_mib
                    .map_or(defaults.max.memory_bytes, |mib| mib.saturating_mul(1 << 20)),
                cpu: secs(self.max_cpu_secs, "max_cpu_secs", defaults.max.cpu)?,
                wall: secs(self.max_wall_secs, "max_wall_secs", defaults.max.wall)?,
                output_bytes: self
                    .max_output_mib
                    .map_or(defaults.max.output_bytes, |mib| mib.saturating_mul(1 << 20)),
                log_lines: self.max_log_lines.unwrap_or(defaults.max.log_lines),
            },
            log_bytes_per_job: self.log_bytes_per_job.unwrap_or(defaults.log_bytes_per_job),
            log_lines_per_sec: self
                .log_lines_per_sec
                .unwrap_or(defaults.log_lines_per_sec)
                .max(1),
            origins,
            tcp,
            allow_symlinks: self.allow_symlinks,
            protected: Vec::new(),
        })
    }
}

impl OperatorPolicy {
    /// This policy, with `paths` (the agent's own files) never grantable.
    pub fn protecting(mut self, paths: impl IntoIterator<Item = PathBuf>) -> OperatorPolicy {
        self.protected.extend(
            paths
                .into_iter()
                .map(|path| std::fs::canonicalize(&path).unwrap_or(path)),
        );
        self
    }

    /// Lowers the limits `manifest` did not write to this policy's caps, so a
    /// stricter operator does not refuse every manifest that keeps a default.
    pub fn clamp_defaults(&self, manifest: &mut Manifest) {
        let (asked, limits) = (manifest.limits_asked, &mut manifest.limits);
        if !asked.memory {
            limits.memory_bytes = limits.memory_bytes.min(self.max.memory_bytes);
        }
        if !asked.cpu {
            limits.cpu = limits.cpu.min(self.max.cpu);
        }
        if !asked.wall {
            limits.wall = limits.wall.min(self.max.wall);
        }
        if !asked.output {
            limits.output_bytes = limits.output_bytes.min(self.max.output_bytes);
        }
        if !asked.log_lines {
            limits.log_lines = limits.log_lines.min(self.max.log_lines);
        }
    }

    /// Whether `manifest` asks for no more than this policy allows.
    pub fn check(&self, manifest: &Manifest) -> Result<(), PolicyRefusal> {
        let refuse = |message: String| Err(PolicyRefusal(message));
        let limits = &manifest.limits;
        let (max, mib, secs) = (&self.max, |bytes: u64| bytes >> 20, Duration::as_secs_f64);
        // (manifest key, policy key, over?, asked, cap), as the keys are written.
        let checks = [
            (
                "memory_mib",
                "max_memory_mib",
                limits.memory_bytes > max.memory_bytes,
                mib(limits.memory_bytes).to_string(),
                mib(max.memory_bytes).to_string(),
            ),
            (
                "cpu_secs",
                "max_cpu_secs",
                limits.cpu > max.cpu,
                secs(&limits.cpu).to_string(),
                secs(&max.cpu).to_string(),
            ),
            (
                "wall_secs",
                "max_wall_secs",
                limits.wall > max.wall,
                secs(&limits.wall).to_string(),
                secs(&max.wall).to_string(),
            ),
            (
                "output_mib",
                "max_output_mib",
                limits.output_bytes > max.output_bytes,
                mib(limits.output_bytes).to_string(),
                mib(max.output_bytes).to_string(),
            ),
            (
                "log_lines",
                "max_log_lines",
                limits.log_lines > max.log_lines,
                limits.log_lines.to_string(),
                max.log_lines.to_string(),
            ),
        ];
        if let Some((name, key, _, asked, cap)) = checks.into_iter().find(|check| check.2) {
            return refuse(format!(
                "limits.{name} = {asked} is over the operator's policy.{key} = {cap}"
            ));
        }
        for (host, _) in &manifest.folders {
            let real = std::fs::canonicalize(host).unwrap_or_else(|_| host.clone());
            if let Some(own) = self
                .protected
                .iter()
                .find(|own| own.starts_with(&real) || real.starts_with(own))
            {
                return refuse(format!(
                    "folder {} holds the agent's own {}: it is never granted",
                    host.display(),
                    own.display()
                ));
            }
            if !self.folders.iter().any(|allowed| real.starts_with(allowed)) {
                return refuse(format!(
                    "folder {} is not allowed by the operator's policy.folders (add it, or a folder above it, to [policy] folders in agent.toml)",
                    real.display()
                ));
            }
        }
        if let Some(origins) = &self.origins {
            for grant in &manifest.http {
                if !origins
                    .iter()
                    .any(|allowed| allowed.covers(&grant.pattern()))
                {
                    return refuse(format!(
                        "http grant {} is not allowed by the operator's policy.origins",
                        grant.origin()
                    ));
                }
            }
        }
        if let Some(tcp) = &self.tcp {
            for endpoint in &manifest.tcp {
                if !tcp.contains(endpoint) {
                    return refuse(format!(
                        "tcp grant {endpoint} is not allowed by the operator's policy.tcp"
                    ));
                }
            }
        }
        Ok(())
    }

    /// A policy that allows every folder, for code that builds its own trusted
    /// set-up (tests, `corral run-job`); the agent never uses it.
    pub fn allowing_folders(
        mut self,
        folders: impl IntoIterator<Item = PathBuf>,
    ) -> OperatorPolicy {
        self.folders.extend(
            folders
                .into_iter()
                .map(|path| std::fs::canonicalize(&path).unwrap_or(path)),
        );
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> Manifest {
        let mut manifest = Manifest::parse(
            &format!("name = \"g\"\nversion = \"1\"\njobs = [\"thumbnail\"]\n{extra}"),
            Path::new("g.toml"),
        )
        .unwrap();
        OperatorPolicy {
            max: Limits {
                memory_bytes: 1,
                cpu: Duration::from_secs(1),
                wall: Duration::from_secs(1),
                output_bytes: 1,
                log_lines: 1,
            },
            ..OperatorPolicy::default()
        }
        .clamp_defaults(&mut manifest);
        manifest
    }

    #[test]
    fn limits_over_the_policy_name_the_key() {
        let policy = OperatorPolicy::default();
        let error = policy
            .check(&manifest("[limits]\nwall_secs = 9999999"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("policy.max_wall_secs = 3600"), "{error}");
        let error = policy
            .check(&manifest("[limits]\nlog_lines = 4294967295"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("policy.max_log_lines"), "{error}");
        assert!(policy.check(&manifest("")).is_ok());
    }

    #[test]
    fn every_limit_and_grant_list_is_bounded() {
        let raw: RawPolicy = toml::from_str(
            "max_cpu_secs = 10\nmax_output_mib = 100\norigins = [\"http://*.cams.lan\"]\ntcp = [\"10.0.0.5:554\"]\n",
        )
        .unwrap();
        let policy = raw.resolve(Path::new(".")).unwrap();
        for (extra, key) in [
            ("[limits]\ncpu_secs = 11", "policy.max_cpu_secs"),
            ("[limits]\noutput_mib = 101", "policy.max_output_mib"),
            (
                "[[http]]\norigin = \"http://evil.example\"",
                "policy.origins",
            ),
            ("[[tcp]]\naddress = \"10.0.0.6:554\"", "policy.tcp"),
        ] {
            let error = policy.check(&manifest(extra)).unwrap_err().to_string();
            assert!(error.contains(key), "{extra}: {error}");
        }
        let allowed = "[limits]\ncpu_secs = 10\noutput_mib = 100\n[[http]]\norigin = \"http://a.cams.lan\"\n[[tcp]]\naddress = \"10.0.0.5:554\"";
        assert!(policy.check(&manifest(allowed)).is_ok());
    }

    #[test]
    fn folders_need_the_policy_and_never_hold_the_agents_files() {
        let dir = tempfile::tempdir().unwrap();
        let exports = dir.path().join("exports");
        std::fs::create_dir(&exports).unwrap();
        let grant = format!(
            "[[folders]]\nhost = \"{}\"\nguest = \"/e\"\n",
            exports.display()
        );
        let root = "[[folders]]\nhost = \"/\"\nguest = \"/r\"\n";
        let policy = OperatorPolicy::default();
        let error = policy.check(&manifest(&grant)).unwrap_err().to_string();
        assert!(error.contains("policy.folders"), "{error}");
        let policy = policy
            .allowing_folders([dir.path().to_path_buf()])
            .protecting([dir.path().join("agent.toml")]);
        assert!(policy.check(&manifest(&grant)).is_ok());
        let error = policy.check(&manifest(root)).unwrap_err().to_string();
        assert!(error.contains("agent's own"), "{error}");
    }
}
