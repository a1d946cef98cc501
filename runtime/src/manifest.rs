//! The manifest beside each guest's `.wasm`: who it is, what it serves, what it
//! may reach, and its limits. Deny by default: a guest gets exactly what is
//! written here.
//!
//! ```toml
//! name = "http-vms"
//! version = "0.1.0"
//! jobs = ["discovery", "thumbnail", "mediarequest"]
//!
//! [settings]                      # non-secret values the guest can read
//! base-url = "http://127.0.0.1:8081"
//!
//! [[http]]                        # one outbound grant: scheme, host, port
//! origin = "http://127.0.0.1:8081"
//! credentials = "camera-sim"      # asks for an agent secret (the operator binds it to origins)
//! methods = ["GET", "HEAD"]       # the default; CONNECT is never granted
//!
//! [[http]]                        # a wildcard, only where written: any subdomain
//! origin = "https://*.cams.example.com"
//! tls_ca = "vms-ca.pem"           # optional, only without credentials: a CA to trust besides the system's roots
//!
//! [[tcp]]                         # raw TCP (RTSP-like), an exact IP and port
//! address = "10.0.0.5:554"
//!
//! [[folders]]                     # a read-only folder (host path relative to this file)
//! host = "/srv/exports"
//! guest = "/exports"
//!
//! [limits]                        # all optional; these are the defaults
//! memory_mib = 256
//! cpu_secs = 60
//! wall_secs = 600
//! output_mib = 16384
//! log_lines = 10000
//! open_sockets = 16               # raw TCP sockets open at once
//! requests_in_flight = 32         # outgoing HTTP requests (and their connections) at once
//! name_lookups_in_flight = 4      # name lookups at once (each also times out)
//! open_outputs = 16               # output files created and not yet finished or dropped
//! handles = 4096                  # resource-table entries (streams, fields, sockets, ...)
//! ```
//!
//! A manifest only *asks*. At load the operator's side decides
//! ([`Secrets::admit`](crate::secrets::Secrets::admit),
//! [`OperatorPolicy::admit`](crate::policy::OperatorPolicy::admit)): a secret
//! goes only where, with the methods and to the guests `agent.toml` binds it,
//! with the CA it names; an IP grant of loopback, this machine, a metadata
//! service or another address a name never reaches needs the operator's
//! `[policy] local_grants` (or a secret bound to that origin); a folder is
//! opened at the real path the policy resolved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::origin::OriginPattern;
use crate::protocol::JobType;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {source}")]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown keys.
    #[error("manifest {path} is not valid: {message}")]
    Parse {
        /// The manifest's path.
        path: PathBuf,
        /// What the parser said, with the line.
        message: String,
    },
    /// The values parse but make no sense.
    #[error("manifest {path}: {message}")]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A parsed, validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The guest's name (also its file stem by convention).
    pub name: String,
    /// The guest's version, for logs and listings.
    pub version: String,
    /// The job types it serves.
    pub jobs: Vec<JobType>,
    /// Non-secret settings handed to the guest.
    pub settings: BTreeMap<String, String>,
    /// Outbound HTTP grants.
    pub http: Vec<HttpGrant>,
    /// Raw TCP endpoints the guest may connect to.
    pub tcp: Vec<std::net::SocketAddr>,
    /// Those of `tcp` the operator allowed although a name never reaches
    /// their address (loopback, this machine, metadata, ...): set at load by
    /// the operator's policy, never by the manifest.
    pub tcp_local: Vec<std::net::SocketAddr>,
    /// Read-only folders: (host path, path the guest sees). Once loaded, the
    /// host path is the real one the operator's policy resolved and allowed.
    pub folders: Vec<(PathBuf, String)>,
    /// Resource limits per job.
    pub limits: Limits,
    /// Which limits the manifest wrote (the others are defaults, which the
    /// operator's policy may lower to its caps).
    pub limits_asked: LimitsAsked,
    /// Per-job caps on the handles a guest can make the host hold.
    pub caps: Caps,
}

/// Per-job caps on handles (the `[limits]` keys of the same names); each has
/// a default and a ceiling no manifest may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Raw TCP sockets open at once (`open_sockets`).
    pub open_sockets: u32,
    /// Outgoing HTTP requests at once, each until its connection closes
    /// (`requests_in_flight`).
    pub requests_in_flight: u32,
    /// Name lookups at once (`name_lookups_in_flight`).
    pub name_lookups_in_flight: u32,
    /// Output files open at once (`open_outputs`).
    pub open_outputs: u32,
    /// Resource-table entries (`handles`).
    pub handles: u32,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            open_sockets: 16,
            requests_in_flight: 32,
            name_lookups_in_flight: 4,
            open_outputs: 16,
            handles: 4096,
        }
    }
}

/// The ceilings of [`Caps`].
pub const MAX_CAPS: Caps = Caps {
    open_sockets: 256,
    requests_in_flight: 256,
    name_lookups_in_flight: 32,
    open_outputs: 1024,
    handles: 65536,
};

/// Which of [`Limits`] a manifest wrote itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsAsked {
    /// `memory_mib`.
    pub memory: bool,
    /// `cpu_secs`.
    pub cpu: bool,
    /// `wall_secs`.
    pub wall: bool,
    /// `output_mib`.
    pub output: bool,
    /// `log_lines`.
    pub log_lines: bool,
}

/// One outbound HTTP grant: a scheme, a host (exact, or a `*.` wildcard where
/// written) and a port, with the methods it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP literal, lower case, without brackets; `*.domain` for
    /// any subdomain of `domain`.
    pub host: String,
    /// Port (the scheme's default when the origin names none).
    pub port: u16,
    /// The methods allowed, upper case: `GET` and `HEAD` unless the manifest
    /// lists others. `CONNECT` is never allowed.
    pub methods: Vec<String>,
    /// The agent secret the manifest asks the host to add, if any. The host
    /// adds it only where the operator bound that secret to this origin.
    pub credentials: Option<String>,
    /// For `https`: a PEM file of extra CA certificates to trust (an
    /// on-premise VMS with its own CA), besides the system's roots. A grant
    /// with credentials cannot name one in its manifest (the trust root of a
    /// request carrying the operator's secret is the operator's): at load it
    /// is the `tls_ca` of the operator's `[secrets.<name>]`, if any.
    pub tls_ca: Option<PathBuf>,
    /// Set at load by the operator's policy, never by a manifest: this grant
    /// is an IP literal a name never reaches (loopback, this machine, a
    /// metadata service, ...) and the operator named it (`[policy]
    /// local_grants`, or a secret's `origins`), so it may connect there.
    pub local_allowed: bool,
}

/// The methods a grant allows when its manifest lists none.
pub const DEFAULT_METHODS: [&str; 2] = ["GET", "HEAD"];

impl HttpGrant {
    /// Parses an origin (`http://host:port`, or `https://*.domain`) into a
    /// grant of `GET` and `HEAD`, with the name of the agent secret it asks for.
    pub fn parse(origin: &str, credentials: Option<String>) -> Result<HttpGrant, String> {
        let pattern = OriginPattern::parse(origin).map_err(|why| format!("http grant {why}"))?;
        Ok(HttpGrant {
            scheme: pattern.scheme,
            host: pattern.host,
            port: pattern.port,
            methods: DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
            credentials,
            tls_ca: None,
            local_allowed: false,
        })
    }

    /// The grant as an origin pattern.
    pub fn pattern(&self) -> OriginPattern {
        OriginPattern {
            scheme: self.scheme.clone(),
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// The grant as an origin, `scheme://host:port`.
    pub fn origin(&self) -> String {
        self.pattern().to_string()
    }

    /// Whether the grant allows `method`.
    pub fn allows_method(&self, method: &str) -> bool {
        self.methods.iter().any(|allowed| allowed == method)
    }
}

/// Limits of one job of this guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory, in bytes.
    pub memory_bytes: u64,
    /// CPU time spent running guest code.
    pub cpu: Duration,
    /// Wall time of the whole call, host calls included.
    pub wall: Duration,
    /// Bytes written to all outputs together.
    pub output_bytes: u64,
    /// Log lines (and stdout/stderr lines) kept.
    pub log_lines: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            cpu: Duration::from_secs(60),
            wall: Duration::from_secs(600),
            output_bytes: 16 << 30,
            log_lines: 10_000,
        }
    }
}

/// The largest memory limit a manifest may ask for.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    version: String,
    jobs: Vec<String>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    http: Vec<RawGrant>,
    #[serde(default)]
    tcp: Vec<RawTcp>,
    #[serde(default)]
    folders: Vec<RawFolder>,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFolder {
    host: PathBuf,
    guest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    origin: String,
    credentials: Option<String>,
    tls_ca: Option<PathBuf>,
    methods: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mib: Option<u64>,
    cpu_secs: Option<f64>,
    wall_secs: Option<f64>,
    output_mib: Option<u64>,
    log_lines: Option<u32>,
    open_sockets: Option<u32>,
    requests_in_flight: Option<u32>,
    name_lookups_in_flight: Option<u32>,
    open_outputs: Option<u32>,
    handles: Option<u32>,
}

impl Manifest {
    /// The manifest path that goes with a guest module: `x.wasm` → `x.toml`.
    pub fn path_for(wasm: &Path) -> PathBuf {
        wasm.with_extension("toml")
    }

    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, path)
    }

    /// Parses and validates manifest `text`; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|error| ManifestError::Parse {
            path: path.to_path_buf(),
            message: error.to_string().trim().to_string(),
        })?;
        let invalid = |message: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if raw.name.trim().is_empty() {
            return Err(invalid("`name` is empty".into()));
        }
        let jobs = raw
            .jobs
            .iter()
            .map(|job| {
                JobType::parse(job).ok_or_else(|| {
                    invalid(format!(
                        "unknown job type `{job}` in `jobs` (use mediarequest, discovery or thumbnail)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if jobs.is_empty() {
            return Err(invalid(
                "`jobs` is empty: the guest would serve nothing".into(),
            ));
        }
        let http = raw
            .http
            .into_iter()
            .map(|grant| {
                let mut parsed =
                    HttpGrant::parse(&grant.origin, grant.credentials).map_err(&invalid)?;
                if let Some(methods) = &grant.methods {
                    parsed.methods = parse_methods(&grant.origin, methods).map_err(&invalid)?;
                }
                if parsed.credentials.is_some() && parsed.allows_method("TRACE") {
                    return Err(invalid(format!(
                        "http grant `{}`: a grant with credentials cannot allow TRACE (it reflects the request, credentials included)",
                        grant.origin
                    )));
                }
                if let (Some(_), Some(name)) = (&grant.tls_ca, &parsed.credentials) {
                    return Err(invalid(format!(
                        "http grant `{}`: a grant with credentials cannot name its own tls_ca (the trust root of a request carrying the operator's secret is the operator's): remove it, and the operator sets it in agent.toml: [secrets.{name}] tls_ca = \"<PEM file>\"",
                        grant.origin
                    )));
                }
                if let Some(ca) = grant.tls_ca {
                    let ca = if ca.is_absolute() {
                        ca
                    } else {
                        path.parent().unwrap_or(Path::new(".")).join(ca)
                    };
                    if parsed.scheme != "https" || !ca.is_file() {
                        return Err(invalid(format!(
                            "http grant `{}`: tls_ca {} must be a PEM file, on an https grant",
                            grant.origin,
                            ca.display()
                        )));
                    }
                    parsed.tls_ca = Some(ca);
                }
                Ok(parsed)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let limits = parse_limits(&raw.limits).map_err(&invalid)?;
        let caps = parse_caps(&raw.limits).map_err(&invalid)?;
        let limits_asked = LimitsAsked {
            memory: raw.limits.memory_mib.is_some(),
            cpu: raw.limits.cpu_secs.is_some(),
            wall: raw.limits.wall_secs.is_some(),
            output: raw.limits.output_mib.is_some(),
            log_lines: raw.limits.log_lines.is_some(),
        };
        let tcp = raw
            .tcp
            .iter()
            .map(|grant| {
                grant.address.parse::<std::net::SocketAddr>().map_err(|_| {
                    invalid(format!(
                        "tcp grant `{}` is not an IP address and port",
                        grant.address
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let base = path.parent().unwrap_or(Path::new("."));
        let folders = raw
            .folders
            .into_iter()
            .map(|folder| {
                let host = if folder.host.is_absolute() {
                    folder.host
                } else {
                    base.join(folder.host)
                };
                if !folder.guest.starts_with('/') {
                    return Err(invalid(format!(
                        "folder guest path `{}` must be absolute",
                        folder.guest
                    )));
                }
                if !host.is_dir() {
                    return Err(invalid(format!(
                        "folder {} is not a directory here",
                        host.display()
                    )));
                }
                Ok((host, folder.guest))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Manifest {
            name: raw.name,
            version: raw.version,
            jobs,
            settings: raw.settings,
            http,
            tcp,
            tcp_local: Vec::new(),
            folders,
            limits,
            limits_asked,
            caps,
        })
    }

    /// Whether the guest serves jobs of type `job`.
    pub fn serves(&self, job: JobType) -> bool {
        self.jobs.contains(&job)
    }
}

/// A grant's `methods`: HTTP method tokens, upper-cased; never `CONNECT`.
pub(crate) fn parse_methods(origin: &str, methods: &[String]) -> Result<Vec<String>, String> {
    if methods.is_empty() {
        return Err(format!("http grant `{origin}`: `methods` is empty"));
    }
    methods
        .iter()
        .map(|method| {
            let upper = method.to_ascii_uppercase();
            if upper == "CONNECT" {
                return Err(format!(
                    "http grant `{origin}`: CONNECT is never granted (a tunnel escapes the grant)"
                ));
            }
            http::Method::from_bytes(upper.as_bytes())
                .map(|_| upper.clone())
                .map_err(|_| format!("http grant `{origin}`: `{method}` is not an HTTP method"))
        })
        .collect()
}

/// A number of seconds from a config key, or `default` when it is absent;
/// `Err` names `key` when it is not a positive, finite number below 10⁷.
pub(crate) fn parse_seconds(
    value: Option<f64>,
    key: &str,
    default: Duration,
) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e7 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(format!("{key} = {s} is not a positive number of seconds")),
    }
}

fn parse_limits(raw: &RawLimits) -> Result<Limits, String> {
    let defaults = Limits::default();
    let seconds =
        |value, name: &str, default| parse_seconds(value, &format!("limits.{name}"), default);
    let memory_bytes = match raw.memory_mib {
        None => defaults.memory_bytes,
        Some(0) => return Err("limits.memory_mib must be positive".into()),
        Some(mib) if mib << 20 > MAX_MEMORY_BYTES => {
            return Err(format!(
                "limits.memory_mib = {mib} is over the maximum of {}",
                MAX_MEMORY_BYTES >> 20
            ));
        }
        Some(mib) => mib << 20,
    };
    Ok(Limits {
        memory_bytes,
        cpu: seconds(raw.cpu_secs, "cpu_secs", defaults.cpu)?,
        wall: seconds(raw.wall_secs, "wall_secs", defaults.wall)?,
        output_bytes: raw
            .output_mib
            .map_or(defaults.output_bytes, |mib| mib.saturating_mul(1 << 20)),
        log_lines: raw.log_lines.unwrap_or(defaults.log_lines),
    })
}

fn parse_caps(raw: &RawLimits) -> Result<Caps, String> {
    let defaults = Caps::default();
    let cap = |value: Option<u32>, key: &str, default: u32, max: u32| match value {
        None => Ok(default),
        Some(0) => Err(format!("limits.{key} must be positive")),
        Some(asked) if asked > max => Err(format!(
            "limits.{key} = {asked} is over the maximum of {max}"
        )),
        Some(asked) => Ok(asked),
    };
    Ok(Caps {
        open_sockets: cap(
            raw.open_sockets,
            "open_sockets",
            defaults.open_sockets,
            MAX_CAPS.open_sockets,
        )?,
        requests_in_flight: cap(
            raw.requests_in_flight,
            "requests_in_flight",
            defaults.requests_in_flight,
            MAX_CAPS.requests_in_flight,
        )?,
        name_lookups_in_flight: cap(
            raw.name_lookups_in_flight,
            "name_lookups_in_flight",
            defaults.name_lookups_in_flight,
            MAX_CAPS.name_lookups_in_flight,
        )?,
        open_outputs: cap(
            raw.open_outputs,
            "open_outputs",
            defaults.open_outputs,
            MAX_CAPS.open_outputs,
        )?,
        handles: cap(raw.handles, "handles", defaults.handles, MAX_CAPS.handles)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new("g.toml"))
    }

    #[test]
    fn a_full_manifest_parses() {
        let manifest = parse(
            r#"
            name = "http-vms"
            version = "1.2.0"
            jobs = ["discovery", "thumbnail", "mediarequest"]
            [settings]
            base-url = "http://127.0.0.1:8081"
            [[http]]
            origin = "http://127.0.0.1:8081"
            credentials = "camera-sim"
            [[http]]
            origin = "https://VMS.example.com"
            [[http]]
            origin = "http://*.cams.example.com:8080"
            methods = ["get", "POST"]
            [limits]
            memory_mib = 64
            cpu_secs = 2.5
            "#,
        )
        .unwrap();
        assert_eq!(manifest.jobs.len(), 3);
        assert_eq!(manifest.http[0].port, 8081);
        assert_eq!(manifest.http[0].credentials.as_deref(), Some("camera-sim"));
        assert_eq!(manifest.http[1].host, "vms.example.com");
        assert_eq!(manifest.http[1].port, 443);
        assert_eq!(manifest.http[1].methods, ["GET", "HEAD"]);
        assert_eq!(manifest.http[2].host, "*.cams.example.com");
        assert_eq!(manifest.http[2].methods, ["GET", "POST"]);
        assert_eq!(manifest.limits.memory_bytes, 64 << 20);
        assert_eq!(manifest.limits.cpu, Duration::from_millis(2500));
        assert_eq!(manifest.limits.wall, Limits::default().wall);
    }

    #[test]
    fn bad_manifests_name_the_problem() {
        let cases = [
            (
                "name = \"x\"\nversion = \"1\"\njobs = [\"video\"]",
                "unknown job type `video`",
            ),
            (
                "name = \"x\"\nversion = \"1\"\njobs = []",
                "`jobs` is empty",
            ),
            (
                "name = \"x\"\nversion = \"1\"\njobs = [\"discovery\"]\nsecret = 1",
                "unknown field",
            ),
            (
                "name = \"x\"\nversion = \"1\"\njobs = [\"discovery\"]\n[[http]]\norigin = \"ftp://a\"",
                "scheme `ftp`",
            ),
            (
                "name = \"x\"\nversion = \"1\"\njobs = [\"discovery\"]\n[limits]\nmemory_mib = 999999",
                "over the maximum",
            ),
            ("name = ", "not valid"),
            (
                "name = \"x\"\nversion = \"1\"\njobs = [\"discovery\"]\n[[http]]\norigin = \"http://*\"",
                "wildcard",
            ),
            (
                "name = \"x\"\nversion = \"1\"\njobs = [\"discovery\"]\n[[http]]\norigin = \"http://a\"\nmethods = [\"connect\"]",
                "CONNECT is never granted",
            ),
            (
                "name = \"x\"\nversion = \"1\"\njobs = [\"discovery\"]\n[[http]]\norigin = \"https://cam.lan\"\ncredentials = \"cams\"\ntls_ca = \"g.toml\"",
                "[secrets.cams] tls_ca",
            ),
            (
                "name = \"x\"\nversion = \"1\"\njobs = [\"discovery\"]\n[[tcp]]\naddress = \"camera:554\"",
                "not an IP address",
            ),
            (
                "name = \"x\"\nversion = \"1\"\njobs = [\"discovery\"]\n[[folders]]\nhost = \"/no/such\"\nguest = \"/d\"",
                "not a directory",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }
}
