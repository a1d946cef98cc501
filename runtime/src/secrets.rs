//! Secrets of the agent that guests may cause to be used but never see:
//! camera credentials, and the origins the operator meant each one for.
//!
//! The values come from the environment (`CORRAL_SECRET_<NAME>=user:password`,
//! the name upper-cased with `-` as `_`) or from explicit `name=user:password`
//! pairs. The *binding* of a secret to origins comes from the operator's
//! `agent.toml` (`[secrets.<name>] origins = [...]`), never from a manifest:
//! a manifest, written by the guest's author, may only *ask* for a secret by
//! name on one of its grants. The host adds a secret to a request only where
//! both name the request's origin. `Debug` never prints a value.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::manifest::HttpGrant;
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

/// Named credentials, and the origins each is bound to.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_name: BTreeMap<String, Credential>,
    bindings: BTreeMap<String, Vec<OriginPattern>>,
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

    /// Binds secret `name` to `origins` (patterns, `*.` wildcards allowed): the
    /// operator's say of where it may be sent. Adds to earlier bindings.
    pub fn bind(&mut self, name: &str, origins: &[OriginPattern]) {
        self.bindings
            .entry(name.to_string())
            .or_default()
            .extend(origins.iter().cloned());
    }

    /// Binds every secret each grant of `grants` asks for to that grant's
    /// origin: for `corral run-job`, where the guest's author is its operator.
    pub fn bind_as_asked(&mut self, grants: &[HttpGrant]) {
        for grant in grants {
            if let Some(name) = &grant.credentials {
                self.bind(name, &[grant.pattern()]);
            }
        }
    }

    /// The names of the secrets that have a value.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The origins secret `name` is bound to.
    pub fn bound_origins(&self, name: &str) -> &[OriginPattern] {
        self.bindings.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether `grant`'s request for a secret (if any) is honoured: the
    /// operator bound it to an origin covering the grant's, and it has a value.
    pub fn check_grant(&self, grant: &HttpGrant) -> Result<(), SecretRefusal> {
        let Some(name) = &grant.credentials else {
            return Ok(());
        };
        let pattern = grant.pattern();
        let bound = self.bound_origins(name);
        if !bound.iter().any(|origin| origin.covers(&pattern)) {
            let bound = if bound.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = bound.iter().map(ToString::to_string).collect();
                format!("; it is bound to {}", list.join(", "))
            };
            return Err(SecretRefusal::NotBound {
                name: name.clone(),
                origin: pattern.to_string(),
                bound,
            });
        }
        if !self.by_name.contains_key(name) {
            return Err(SecretRefusal::Missing {
                name: name.clone(),
                origin: pattern.to_string(),
                var: env_var(name),
            });
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
            .bound_origins(name)
            .iter()
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
                .check_grant(&grant("http://10.0.0.5:80", "cams"))
                .is_ok()
        );
        let foreign = secrets
            .check_grant(&grant("https://evil.example", "cams"))
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
            .check_grant(&grant("http://cam.lan", "camera-sim"))
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
                .check_grant(&grant("https://a.cams.example", "vms"))
                .is_ok()
        );
        assert!(
            secrets
                .check_grant(&grant("https://*.cams.example", "vms"))
                .is_ok()
        );
        assert!(
            secrets
                .check_grant(&grant("https://cams.example", "vms"))
                .is_err()
        );
        assert!(
            secrets
                .check_grant(&grant("https://*.other.example", "vms"))
                .is_err()
        );
    }
}
