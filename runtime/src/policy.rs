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
//! local_grants = []                # IP grants a manifest may have to addresses a name never reaches
//! #                                # (loopback, this machine, metadata, link-local, ...):
//! #                                # origins ("http://127.0.0.1:8081") or TCP endpoints ("127.0.0.1:6379")
//! allow_symlinks = false           # guest files that are links (to files owned by the agent's user or root)
//! ```
//!
//! Whatever the policy says, a folder grant that holds the agent's own files
//! (its config, connection file, compile cache) is refused. A folder is
//! opened, for every job, at the real path resolved here at load.
//!
//! A manifest's IP grant (`[[http]] origin = "http://169.254.169.254"`,
//! `[[tcp]] address = "127.0.0.1:6379"`) whose address a granted name never
//! reaches ([`refused_for_name`]) is refused unless the operator named that
//! exact origin or endpoint in `local_grants`, or bound a secret to that
//! origin (`[secrets.<name>] origins`: the operator said it is a camera).
//! `corral run-job` and `corral guests check` without `--config`, where the
//! guest's author is its operator, allow what the manifest asks
//! ([`OperatorPolicy::allowing_local_grants`]).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::manifest::{HttpGrant, Limits, Manifest, parse_seconds};
use crate::origin::OriginPattern;
use crate::sandbox::address::refused_for_name;
use crate::secrets::Secrets;

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
    /// HTTP origins (IP literals) a manifest may grant although a name never
    /// reaches their address (`local_grants`).
    pub local_origins: Vec<OriginPattern>,
    /// Raw TCP endpoints a manifest may grant although a name never reaches
    /// their address (`local_grants`).
    pub local_tcp: Vec<SocketAddr>,
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
            local_origins: Vec::new(),
            local_tcp: Vec::new(),
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
    local_grants: Vec<String>,
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
        let (local_origins, local_tcp) = parse_local_grants(&self.local_grants)?;
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
            local_origins,
            local_tcp,
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

    /// Lowers `manifest`'s unwritten limits ([`OperatorPolicy::clamp_defaults`]),
    /// checks it ([`OperatorPolicy::check`]), and fixes what the operator
    /// allowed: the IP grants the operator named although a name never
    /// reaches them (so they connect there), and each folder as the real
    /// path resolved and allowed now (a job opens that path, not the one
    /// the manifest wrote, which could be pointed elsewhere since).
    pub fn admit(&self, manifest: &mut Manifest, secrets: &Secrets) -> Result<(), PolicyRefusal> {
        self.clamp_defaults(manifest);
        self.check(manifest, secrets)?;
        for grant in &mut manifest.http {
            grant.local_allowed = self.names_origin(grant, secrets);
        }
        manifest.tcp_local = manifest
            .tcp
            .iter()
            .copied()
            .filter(|endpoint| self.local_tcp.contains(endpoint))
            .collect();
        for (host, _) in &mut manifest.folders {
            *host = real_folder(host)?;
        }
        Ok(())
    }

    /// Whether the operator named `grant`'s exact origin, an IP literal: in
    /// `local_grants`, or as an origin of a secret.
    fn names_origin(&self, grant: &HttpGrant, secrets: &Secrets) -> bool {
        let Ok(ip) = grant.host.parse::<IpAddr>() else {
            return false;
        };
        let same = |origin: &OriginPattern| {
            origin.scheme == grant.scheme
                && origin.port == grant.port
                && origin.host.parse::<IpAddr>() == Ok(ip)
        };
        self.local_origins.iter().any(same) || secrets.all_bound_origins().any(same)
    }

    /// Whether `manifest` asks for no more than this policy (and the
    /// operator's secret bindings, `secrets`) allows.
    pub fn check(&self, manifest: &Manifest, secrets: &Secrets) -> Result<(), PolicyRefusal> {
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
            let real = real_folder(host)?;
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
        for grant in &manifest.http {
            let Ok(ip) = grant.host.parse::<IpAddr>() else {
                continue;
            };
            if let Some(why) = refused_for_name(ip)
                && !self.names_origin(grant, secrets)
            {
                return refuse(format!(
                    "http grant {origin} is {why}: a manifest cannot grant itself that; to allow it, add \"{origin}\" to [policy] local_grants in agent.toml (or bind a secret to it: [secrets.<name>] origins)",
                    origin = grant.origin()
                ));
            }
        }
        for endpoint in &manifest.tcp {
            if let Some(why) = refused_for_name(endpoint.ip())
                && !self.local_tcp.contains(endpoint)
            {
                return refuse(format!(
                    "tcp grant {endpoint} is {why}: a manifest cannot grant itself that; to allow it, add \"{endpoint}\" to [policy] local_grants in agent.toml"
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

    /// This policy, also allowing every IP grant of `manifest` that a name
    /// never reaches: for `corral run-job` and `corral guests check` without
    /// a config, where the guest's author is its operator (as
    /// [`Secrets::bind_as_asked`] binds its secrets); the agent never uses it.
    pub fn allowing_local_grants(mut self, manifest: &Manifest) -> OperatorPolicy {
        self.local_origins.extend(
            manifest
                .http
                .iter()
                .filter(|grant| grant.host.parse::<IpAddr>().is_ok())
                .map(HttpGrant::pattern),
        );
        self.local_tcp.extend(manifest.tcp.iter().copied());
        self
    }

    /// This policy, also allowing `grants` as `[policy] local_grants` would
    /// (IP origins, `ip:port` TCP endpoints); `Err` names a bad entry.
    pub fn with_local_grants(
        mut self,
        grants: &[impl AsRef<str>],
    ) -> Result<OperatorPolicy, String> {
        let (origins, tcp) = parse_local_grants(grants)?;
        self.local_origins.extend(origins);
        self.local_tcp.extend(tcp);
        Ok(self)
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

/// `local_grants` entries: IP origins (`http://127.0.0.1:8081`) and TCP
/// endpoints (`127.0.0.1:6379`); `Err` names the bad entry.
fn parse_local_grants(
    grants: &[impl AsRef<str>],
) -> Result<(Vec<OriginPattern>, Vec<SocketAddr>), String> {
    let (mut local_origins, mut local_tcp) = (Vec::new(), Vec::new());
    for grant in grants {
        let grant = grant.as_ref();
        if grant.contains("://") {
            let origin =
                OriginPattern::parse(grant).map_err(|why| format!("policy.local_grants: {why}"))?;
            if origin.host.parse::<IpAddr>().is_err() {
                return Err(format!(
                    "policy.local_grants: `{grant}` is not an IP origin (a granted name never reaches these addresses; list the IP, e.g. \"http://127.0.0.1:8081\")"
                ));
            }
            local_origins.push(origin);
        } else {
            local_tcp.push(grant.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "policy.local_grants: `{grant}` is neither an IP origin (\"http://127.0.0.1:8081\") nor an IP address and port (\"127.0.0.1:6379\")"
                )
            })?);
        }
    }
    Ok((local_origins, local_tcp))
}

/// The real path of a granted folder (links and `..` resolved), or why not.
fn real_folder(host: &Path) -> Result<PathBuf, PolicyRefusal> {
    std::fs::canonicalize(host).map_err(|error| {
        PolicyRefusal(format!(
            "folder {} cannot be resolved: {error}",
            host.display()
        ))
    })
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
            .check(
                &manifest("[limits]\nwall_secs = 9999999"),
                &Secrets::default(),
            )
            .unwrap_err()
            .to_string();
        assert!(error.contains("policy.max_wall_secs = 3600"), "{error}");
        let error = policy
            .check(
                &manifest("[limits]\nlog_lines = 4294967295"),
                &Secrets::default(),
            )
            .unwrap_err()
            .to_string();
        assert!(error.contains("policy.max_log_lines"), "{error}");
        assert!(policy.check(&manifest(""), &Secrets::default()).is_ok());
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
            let error = policy
                .check(&manifest(extra), &Secrets::default())
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{extra}: {error}");
        }
        let allowed = "[limits]\ncpu_secs = 10\noutput_mib = 100\n[[http]]\norigin = \"http://a.cams.lan\"\n[[tcp]]\naddress = \"10.0.0.5:554\"";
        assert!(
            policy
                .check(&manifest(allowed), &Secrets::default())
                .is_ok()
        );
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
        let error = policy
            .check(&manifest(&grant), &Secrets::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("policy.folders"), "{error}");
        let policy = policy
            .allowing_folders([dir.path().to_path_buf()])
            .protecting([dir.path().join("agent.toml")]);
        assert!(policy.check(&manifest(&grant), &Secrets::default()).is_ok());
        let error = policy
            .check(&manifest(root), &Secrets::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("agent's own"), "{error}");
    }

    /// A manifest granting itself loopback, a metadata service or this
    /// machine by IP is refused, naming the grant, what the address is and
    /// the key; the operator's `local_grants` or a secret bound there allow it.
    #[test]
    fn ip_grants_a_name_never_reaches_need_the_operator() {
        let none = Secrets::default();
        let policy = OperatorPolicy::default();
        for (extra, why, key) in [
            (
                "[[http]]\norigin = \"http://169.254.169.254\"",
                "http grant http://169.254.169.254:80 is a cloud metadata service",
                "add \"http://169.254.169.254:80\" to [policy] local_grants in agent.toml",
            ),
            (
                "[[http]]\norigin = \"http://127.0.0.1:9187\"",
                "http grant http://127.0.0.1:9187 is loopback",
                "add \"http://127.0.0.1:9187\" to [policy] local_grants",
            ),
            (
                "[[http]]\norigin = \"http://[::ffff:127.0.0.1]:80\"",
                "is an IPv6 form of a refused IPv4 address",
                "[policy] local_grants",
            ),
            (
                "[[http]]\norigin = \"https://169.254.1.1\"",
                "is link-local",
                "[policy] local_grants",
            ),
            (
                "[[tcp]]\naddress = \"127.0.0.1:6379\"",
                "tcp grant 127.0.0.1:6379 is loopback",
                "add \"127.0.0.1:6379\" to [policy] local_grants in agent.toml",
            ),
            (
                "[[tcp]]\naddress = \"0.0.0.0:6379\"",
                "is unspecified",
                "[policy] local_grants",
            ),
        ] {
            let error = policy
                .check(&manifest(extra), &none)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(why) && error.contains(key),
                "{extra}: {error}"
            );
        }
        // A private LAN by IP needs nothing; a name is checked when it resolves.
        for fine in [
            "[[http]]\norigin = \"http://10.0.0.5:8080\"",
            "[[tcp]]\naddress = \"192.168.1.20:554\"",
            "[[http]]\norigin = \"http://localhost:8081\"",
        ] {
            assert!(policy.check(&manifest(fine), &none).is_ok(), "{fine}");
        }

        // The operator names them: exactly these, nothing next to them.
        let raw: RawPolicy = toml::from_str(
            "local_grants = [\"http://127.0.0.1:8081\", \"127.0.0.1:6379\", \"http://[::1]:8082\"]",
        )
        .unwrap();
        let policy = raw.resolve(Path::new(".")).unwrap();
        let mut allowed = manifest(
            "[[http]]\norigin = \"http://127.0.0.1:8081\"\n[[http]]\norigin = \"http://[0:0::1]:8082\"\n[[tcp]]\naddress = \"127.0.0.1:6379\"",
        );
        policy.admit(&mut allowed, &none).unwrap();
        assert!(allowed.http.iter().all(|grant| grant.local_allowed));
        assert_eq!(allowed.tcp_local, allowed.tcp);
        for (next_door, key) in [
            ("[[http]]\norigin = \"http://127.0.0.1:8082\"", "http grant"),
            (
                "[[http]]\norigin = \"https://127.0.0.1:8081\"",
                "http grant",
            ),
            ("[[http]]\norigin = \"http://169.254.169.254\"", "metadata"),
            ("[[tcp]]\naddress = \"127.0.0.1:6380\"", "tcp grant"),
        ] {
            let error = policy
                .check(&manifest(next_door), &none)
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{next_door}: {error}");
        }

        // A secret bound to an origin says it is a camera: any grant of it.
        let mut secrets = Secrets::default();
        secrets.bind(
            "camera-sim",
            &[OriginPattern::parse("http://127.0.0.1:8081").unwrap()],
        );
        let default = OperatorPolicy::default();
        let mut camera = manifest("[[http]]\norigin = \"http://127.0.0.1:8081\"");
        default.admit(&mut camera, &secrets).unwrap();
        assert!(camera.http[0].local_allowed);
        assert!(
            default
                .check(
                    &manifest("[[http]]\norigin = \"http://127.0.0.1:9187\""),
                    &secrets
                )
                .is_err()
        );

        // The dev loop: the author is the operator.
        let asked = manifest(
            "[[http]]\norigin = \"http://169.254.169.254\"\n[[tcp]]\naddress = \"127.0.0.1:6379\"",
        );
        let dev = OperatorPolicy::default().allowing_local_grants(&asked);
        assert!(dev.check(&asked, &none).is_ok());

        for bad in [
            "local_grants = [\"http://localhost:8081\"]",
            "local_grants = [\"cam:554\"]",
        ] {
            let raw: RawPolicy = toml::from_str(bad).unwrap();
            let error = raw.resolve(Path::new(".")).unwrap_err();
            assert!(error.contains("policy.local_grants"), "{error}");
        }
    }

    /// A job opens the folder the policy resolved at load, not the path as
    /// written (which may be pointed elsewhere after the check).
    #[cfg(unix)]
    #[test]
    fn a_folder_is_opened_where_it_was_checked() {
        let dir = tempfile::tempdir().unwrap();
        let exports = dir.path().join("exports");
        std::fs::create_dir(&exports).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&exports, &link).unwrap();
        let grant = format!(
            "[[folders]]\nhost = \"{}\"\nguest = \"/e\"\n",
            link.display()
        );
        let policy = OperatorPolicy::default().allowing_folders([exports.clone()]);
        let mut manifest = manifest(&grant);
        policy.admit(&mut manifest, &Secrets::default()).unwrap();
        let real = std::fs::canonicalize(&exports).unwrap();
        assert_eq!(manifest.folders[0].0, real);
        // The link now points at /: the loaded guest still opens `exports`.
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("/", &link).unwrap();
        assert_eq!(manifest.folders[0].0, real);
    }
}
