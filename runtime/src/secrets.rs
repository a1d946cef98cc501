//! Secrets of the agent that guests may cause to be used but never see:
//! camera credentials, and the origins the operator meant each one for.
//!
//! The values come from the environment (`CORRAL_SECRET_<NAME>=user:password`,
//! the name upper-cased with `-` as `_`) or from explicit `name=user:password`
//! pairs. The *binding* of a secret to origins comes from the operator's
//! `agent.toml` (`[secrets.<name>] origins = [...]`, with the `methods` it
//! may be sent with, `GET` and `HEAD` unless listed, the `guests` that may ask
//! for it, any loaded guest unless listed, and the `tls_ca` its `https`
//! requests trust), never from a manifest: a manifest, written by the
//! guest's author, may only *ask* for a secret by name on one of its grants.
//! A grant asking for more than a binding allows is refused at load; the host
//! adds a secret to a request only where both name the request's origin.
//! `Debug` never prints a value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::manifest::{DEFAULT_METHODS, HttpGrant, Manifest};
use crate::origin::OriginPattern;

/// One credential the host adds to requests.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// HTTP Basic user and password.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl Credential {
    /// The `Authorization` header value the host sends.
    pub fn header_value(&self) -> String {
        match self {
            Credential::Basic { user, password } => {
                format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
            }
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { user, .. } => write!(f, "Basic({user}:***)"),
        }
    }
}

/// Where the operator lets one secret go (`[secrets.<name>]` in `agent.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretBinding {
    /// The origins it may be sent to (`*.` wildcards allowed).
    pub origins: Vec<OriginPattern>,
    /// The methods it may be sent with, upper case (`GET` and `HEAD` by default).
    pub methods: Vec<String>,
    /// The guests (by manifest name) that may ask for it; `None`: any loaded guest.
    pub guests: Option<Vec<String>>,
    /// For `https`: a PEM file of extra CA certificates the requests that
    /// carry it trust, besides the system's roots.
    pub tls_ca: Option<PathBuf>,
}

impl SecretBinding {
    /// A binding to `origins`, with the defaults: `GET` and `HEAD`, any
    /// guest, the system's roots.
    pub fn to(origins: &[OriginPattern]) -> SecretBinding {
        SecretBinding {
            origins: origins.to_vec(),
            methods: DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
            guests: None,
            tls_ca: None,
        }
    }

    fn allows_guest(&self, guest: &str) -> bool {
        self.guests
            .as_ref()
            .is_none_or(|guests| guests.iter().any(|name| name == guest))
    }

    fn allows_methods(&self, grant: &HttpGrant) -> bool {
        grant
            .methods
            .iter()
            .all(|method| self.methods.contains(method))
    }
}

/// Named credentials, and where each is bound.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_name: BTreeMap<String, Credential>,
    bindings: BTreeMap<String, Vec<SecretBinding>>,
}

/// Why a secret could not be read or bound.
#[derive(Debug, thiserror::Error)]
#[error("secret `{name}` is malformed: {why}")]
pub struct SecretError {
    name: String,
    why: String,
}

/// Why a grant's request for a secret is refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefusal {
    /// The operator did not bind the secret to the grant's origin.
    #[error(
        "grant {origin} asks for secret `{name}`, which the operator has not bound to that origin (in agent.toml: [secrets.{name}] origins = [\"{origin}\"]{bound})"
    )]
    NotBound {
        /// The secret's name.
        name: String,
        /// The grant's origin.
        origin: String,
        /// Where it is bound, if anywhere, as a hint.
        bound: String,
    },
    /// Bound to the origin, but not for a method the grant allows.
    #[error(
        "grant {origin} asks for secret `{name}` with {asked}, which the operator has not allowed for it (in agent.toml: [secrets.{name}] methods = [{wanted}])"
    )]
    MethodNotBound {
        /// The secret's name.
        name: String,
        /// The grant's origin.
        origin: String,
        /// The methods the grant allows that no binding lists.
        asked: String,
        /// The methods the binding would list, quoted.
        wanted: String,
    },
    /// Bound to the origin, but not for this guest.
    #[error(
        "guest `{guest}` asks for secret `{name}` on grant {origin}, which the operator has not allowed that guest (in agent.toml: [secrets.{name}] guests = [{wanted}])"
    )]
    GuestNotBound {
        /// The secret's name.
        name: String,
        /// The grant's origin.
        origin: String,
        /// The guest's name.
        guest: String,
        /// The guests the binding would list, quoted.
        wanted: String,
    },
    /// Bound, but the agent has no value for it.
    #[error(
        "grant {origin} asks for secret `{name}`, which the agent does not have: set {var}=user:password"
    )]
    Missing {
        /// The secret's name.
        name: String,
        /// The grant's origin.
        origin: String,
        /// The environment variable to set.
        var: String,
    },
}

/// The environment variable that holds secret `name`.
pub fn env_var(name: &str) -> String {
    format!(
        "CORRAL_SECRET_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

impl Secrets {
    /// Adds the secret `name` from a `user:password` value.
    pub fn insert(&mut self, name: &str, value: &str) -> Result<(), SecretError> {
        let (user, password) = value.split_once(':').ok_or_else(|| SecretError {
            name: name.to_string(),
            why: "expected user:password".into(),
        })?;
        self.by_name.insert(
            name.to_string(),
            Credential::Basic {
                user: user.to_string(),
                password: password.to_string(),
            },
        );
        Ok(())
    }

    /// Parses `name=user:password`.
    pub fn insert_pair(&mut self, pair: &str) -> Result<(), SecretError> {
        let (name, value) = pair.split_once('=').ok_or_else(|| SecretError {
            name: pair.split(':').next().unwrap_or_default().to_string(),
            why: "expected name=user:password".into(),
        })?;
        self.insert(name, value)
    }

    /// Reads every `CORRAL_SECRET_*` variable of the environment.
    pub fn from_env() -> Result<Secrets, SecretError> {
        let mut secrets = Secrets::default();
        for (key, value) in std::env::vars() {
            if let Some(name) = key.strip_prefix("CORRAL_SECRET_") {
                let name = name.to_ascii_lowercase().replace('_', "-");
                secrets.insert(&name, &value)?;
            }
        }
        Ok(secrets)
    }

    /// Binds secret `name` to `origins` (patterns, `*.` wildcards allowed)
    /// with the defaults of [`SecretBinding::to`]: the operator's say of
    /// where it may be sent. Adds to earlier bindings.
    pub fn bind(&mut self, name: &str, origins: &[OriginPattern]) {
        self.bind_with(name, SecretBinding::to(origins));
    }

    /// Adds `binding` to secret `name`'s bindings.
    pub fn bind_with(&mut self, name: &str, binding: SecretBinding) {
        self.bindings
            .entry(name.to_string())
            .or_default()
            .push(binding);
    }

    /// Binds every secret each grant of `grants` asks for to that grant's
    /// origin and methods: for `corral run-job` and `corral guests check`
    /// without a config, where the guest's author is its operator.
    pub fn bind_as_asked(&mut self, grants: &[HttpGrant]) {
        for grant in grants {
            if let Some(name) = &grant.credentials {
                self.bind_with(
                    name,
                    SecretBinding {
                        methods: grant.methods.clone(),
                        ..SecretBinding::to(&[grant.pattern()])
                    },
                );
            }
        }
    }

    /// Every origin the operator bound any secret to: the operator said each
    /// is a camera (the policy lets an IP grant of one reach this machine).
    pub fn all_bound_origins(&self) -> impl Iterator<Item = &OriginPattern> {
        self.bindings
            .values()
            .flatten()
            .flat_map(|binding| &binding.origins)
    }

    /// The names of the secrets that have a value.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The origins secret `name` is bound to.
    pub fn bound_origins(&self, name: &str) -> Vec<OriginPattern> {
        self.bindings_of(name)
            .iter()
            .flat_map(|binding| binding.origins.iter().cloned())
            .collect()
    }

    fn bindings_of(&self, name: &str) -> &[SecretBinding] {
        self.bindings.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether `grant`'s request for a secret (if any), from guest `guest`, is
    /// honoured: the operator bound it to an origin covering the grant's, for
    /// every method the grant allows and for that guest, and it has a value.
    /// `Ok` holds the binding that allows it.
    pub fn check_grant(
        &self,
        grant: &HttpGrant,
        guest: &str,
    ) -> Result<Option<&SecretBinding>, SecretRefusal> {
        let Some(name) = &grant.credentials else {
            return Ok(None);
        };
        let pattern = grant.pattern();
        let origin = pattern.to_string();
        let quoted = |items: &mut dyn Iterator<Item = &String>| {
            let mut list: Vec<String> = Vec::new();
            for item in items {
                let item = format!("\"{item}\"");
                if !list.contains(&item) {
                    list.push(item);
                }
            }
            list.join(", ")
        };
        let covering: Vec<&SecretBinding> = self
            .bindings_of(name)
            .iter()
            .filter(|binding| binding.origins.iter().any(|o| o.covers(&pattern)))
            .collect();
        if covering.is_empty() {
            let bound = self.bound_origins(name);
            let bound = if bound.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = bound.iter().map(ToString::to_string).collect();
                format!("; it is bound to {}", list.join(", "))
            };
            return Err(SecretRefusal::NotBound {
                name: name.clone(),
                origin,
                bound,
            });
        }
        let for_guest: Vec<&SecretBinding> = covering
            .iter()
            .copied()
            .filter(|binding| binding.allows_guest(guest))
            .collect();
        if for_guest.is_empty() {
            let named = covering.iter().flat_map(|b| b.guests.iter().flatten());
            let guest_name = guest.to_string();
            return Err(SecretRefusal::GuestNotBound {
                name: name.clone(),
                origin,
                guest: guest.to_string(),
                wanted: quoted(&mut named.chain(std::iter::once(&guest_name))),
            });
        }
        let Some(binding) = for_guest
            .iter()
            .copied()
            .find(|binding| binding.allows_methods(grant))
        else {
            let listed = for_guest[0];
            let missing: Vec<&str> = grant
                .methods
                .iter()
                .filter(|method| !listed.methods.contains(method))
                .map(String::as_str)
                .collect();
            return Err(SecretRefusal::MethodNotBound {
                name: name.clone(),
                origin,
                asked: missing.join(", "),
                wanted: quoted(&mut listed.methods.iter().chain(&grant.methods)),
            });
        };
        if !self.by_name.contains_key(name) {
            return Err(SecretRefusal::Missing {
                name: name.clone(),
                origin,
                var: env_var(name),
            });
        }
        Ok(Some(binding))
    }

    /// Checks every grant of `manifest` that asks for a secret
    /// ([`Secrets::check_grant`]) for the guest the operator knows as
    /// `guest` (its file's stem in the guests folder: the manifest's own
    /// `name` is the author's to choose, so it never decides a `guests`
    /// binding), and gives it the trust root the operator set for that
    /// secret (`[secrets.<name>] tls_ca`; a manifest cannot choose the CA a
    /// request carrying the operator's secret trusts).
    pub fn admit(&self, manifest: &mut Manifest, guest: &str) -> Result<(), SecretRefusal> {
        for grant in &mut manifest.http {
            if let Some(binding) = self.check_grant(grant, guest)? {
                grant.tls_ca = binding.tls_ca.clone();
            }
        }
        Ok(())
    }

    /// The credential `name` for a request to `scheme://host:port`, only if the
    /// operator bound it to that origin.
    pub fn for_origin(
        &self,
        name: &str,
        scheme: &str,
        host: &str,
        port: u16,
    ) -> Option<&Credential> {
        let bound = self
            .bindings_of(name)
            .iter()
            .flat_map(|binding| &binding.origins)
            .any(|origin| origin.matches(scheme, host, port));
        bound.then(|| self.by_name.get(name)).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(origin: &str, name: &str) -> HttpGrant {
        HttpGrant::parse(origin, Some(name.into())).unwrap()
    }

    impl Secrets {
        fn check_grant_as(&self, grant: &HttpGrant) -> Result<(), SecretRefusal> {
            self.check_grant(grant, "g").map(drop)
        }
    }

    /// A hostile guest asking for the camera's secret with writes, or a guest
    /// the operator did not name asking for it, is refused, naming the key.
    #[test]
    fn a_binding_limits_the_methods_and_the_guests() {
        let mut secrets = Secrets::default();
        secrets.insert("cams", "u:p").unwrap();
        let cam = OriginPattern::parse("http://10.0.0.5").unwrap();
        secrets.bind("cams", std::slice::from_ref(&cam));
        let mut writes = grant("http://10.0.0.5", "cams");
        writes.methods = vec!["GET".into(), "POST".into(), "PUT".into(), "DELETE".into()];
        let error = secrets.check_grant_as(&writes).unwrap_err().to_string();
        assert!(error.contains("with POST, PUT, DELETE"), "{error}");
        assert!(
            error.contains(
                "[secrets.cams] methods = [\"GET\", \"HEAD\", \"POST\", \"PUT\", \"DELETE\"]"
            ),
            "{error}"
        );
        assert!(
            secrets
                .check_grant_as(&grant("http://10.0.0.5", "cams"))
                .is_ok()
        );

        let mut only_vms = Secrets::default();
        only_vms.insert("cams", "u:p").unwrap();
        only_vms.bind_with(
            "cams",
            SecretBinding {
                methods: vec!["GET".into(), "POST".into()],
                guests: Some(vec!["http-vms".into()]),
                ..SecretBinding::to(&[cam])
            },
        );
        let mut post = grant("http://10.0.0.5", "cams");
        post.methods = vec!["POST".into()];
        assert!(only_vms.check_grant(&post, "http-vms").is_ok());
        let error = only_vms
            .check_grant(&post, "hostile")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("guest `hostile`")
                && error.contains("[secrets.cams] guests = [\"http-vms\", \"hostile\"]"),
            "{error}"
        );
    }

    /// The CA of a request carrying a secret is the operator's, set at load.
    #[test]
    fn the_operators_tls_ca_goes_with_the_secret() {
        let mut secrets = Secrets::default();
        secrets.insert("vms", "u:p").unwrap();
        secrets.bind_with(
            "vms",
            SecretBinding {
                tls_ca: Some("/etc/corral/vms-ca.pem".into()),
                ..SecretBinding::to(&[OriginPattern::parse("https://vms.lan").unwrap()])
            },
        );
        let mut manifest = Manifest::parse(
            "name = \"g\"\nversion = \"1\"\njobs = [\"thumbnail\"]\n[[http]]\norigin = \"https://vms.lan\"\ncredentials = \"vms\"\n[[http]]\norigin = \"https://other.lan\"\n",
            std::path::Path::new("g.toml"),
        )
        .unwrap();
        secrets.admit(&mut manifest, "x").unwrap();
        assert_eq!(
            manifest.http[0].tls_ca.as_deref(),
            Some(std::path::Path::new("/etc/corral/vms-ca.pem"))
        );
        assert_eq!(manifest.http[1].tls_ca, None);
    }

    #[test]
    fn debug_never_shows_a_password() {
        let mut secrets = Secrets::default();
        secrets.insert_pair("camera-sim=operator:hunter2").unwrap();
        assert!(!format!("{secrets:?}").contains("hunter2"));
        assert!(secrets.insert_pair("nopassword").is_err());
    }

    #[test]
    fn a_secret_goes_only_where_the_operator_bound_it() {
        let mut secrets = Secrets::default();
        secrets.insert("cams", "u:p").unwrap();
        secrets.bind("cams", &[OriginPattern::parse("http://10.0.0.5").unwrap()]);
        assert!(
            secrets
                .check_grant_as(&grant("http://10.0.0.5:80", "cams"))
                .is_ok()
        );
        let foreign = secrets
            .check_grant_as(&grant("https://evil.example", "cams"))
            .unwrap_err()
            .to_string();
        assert!(foreign.contains("not bound"), "{foreign}");
        assert!(
            foreign.contains("it is bound to http://10.0.0.5:80"),
            "{foreign}"
        );
        assert!(secrets.for_origin("cams", "http", "10.0.0.5", 80).is_some());
        assert!(secrets.for_origin("cams", "http", "10.0.0.6", 80).is_none());
        assert!(
            secrets
                .for_origin("cams", "https", "10.0.0.5", 80)
                .is_none()
        );
    }

    #[test]
    fn a_missing_value_names_the_variable() {
        let mut secrets = Secrets::default();
        secrets.bind(
            "camera-sim",
            &[OriginPattern::parse("http://cam.lan").unwrap()],
        );
        let missing = secrets
            .check_grant_as(&grant("http://cam.lan", "camera-sim"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("set CORRAL_SECRET_CAMERA_SIM=user:password"),
            "{missing}"
        );
    }

    #[test]
    fn a_wildcard_binding_covers_its_subdomains() {
        let mut secrets = Secrets::default();
        secrets.insert("vms", "u:p").unwrap();
        secrets.bind(
            "vms",
            &[OriginPattern::parse("https://*.cams.example").unwrap()],
        );
        assert!(
            secrets
                .check_grant_as(&grant("https://a.cams.example", "vms"))
                .is_ok()
        );
        assert!(
            secrets
                .check_grant_as(&grant("https://*.cams.example", "vms"))
                .is_ok()
        );
        assert!(
            secrets
                .check_grant_as(&grant("https://cams.example", "vms"))
                .is_err()
        );
        assert!(
            secrets
                .check_grant_as(&grant("https://*.other.example", "vms"))
                .is_err()
        );
    }
}
