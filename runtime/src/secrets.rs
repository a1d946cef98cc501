//! Secrets of the agent that guests may cause to be used but never see:
//! camera credentials, referred to by name from a manifest's grants.
//!
//! They come from the environment (`CORRAL_SECRET_<NAME>=user:password`, the
//! name upper-cased with `-` as `_`) or from explicit `name=user:password` pairs.
//! `Debug` never prints a value.

use std::collections::BTreeMap;
use std::fmt;

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

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { user, .. } => write!(f, "Basic({user}:***)"),
        }
    }
}

/// Named credentials.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_name: BTreeMap<String, Credential>,
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
#[error("secret `{name}` is malformed: {why}")]
pub struct SecretError {
    name: String,
    why: &'static str,
}

impl Secrets {
    /// Adds the secret `name` from a `user:password` value.
    pub fn insert(&mut self, name: &str, value: &str) -> Result<(), SecretError> {
        let (user, password) = value.split_once(':').ok_or(SecretError {
            name: name.to_string(),
            why: "expected user:password",
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
        let (name, value) = pair.split_once('=').ok_or(SecretError {
            name: pair.split(':').next().unwrap_or_default().to_string(),
            why: "expected name=user:password",
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

    /// The credential named `name`.
    pub fn get(&self, name: &str) -> Option<&Credential> {
        self.by_name.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_password() {
        let mut secrets = Secrets::default();
        secrets.insert_pair("camera-sim=operator:hunter2").unwrap();
        assert!(!format!("{secrets:?}").contains("hunter2"));
        assert!(secrets.insert_pair("nopassword").is_err());
    }
}
