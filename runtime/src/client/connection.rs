//! The Clearance connection file: where the registry and its token service
//! are, and the service principal's identity and private key.
//!
//! ```json
//! { "SecurityTokenServiceBaseAddresses": ["https://sts.example/connect"],
//!   "ApiBaseAddresses": ["https://registry.example"],
//!   "ServicePrincipalId": "agent-1", "TenantId": "tenant-1",
//!   "ServicePrincipalKey": { "kty": "RSA", "kid": "...", "n": "...", "e": "AQAB", "d": "...", ... } }
//! ```
//!
//! A broken file stops start-up with one sentence naming the problem; the key
//! is never printed.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a connection file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("connection file {path}: {problem}")]
pub struct ConnectionError {
    path: String,
    problem: String,
}

/// The file's JSON, with Clearance's names.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionFileJson {
    /// Token service base addresses: the first that answers is used.
    pub security_token_service_base_addresses: Vec<String>,
    /// Registry base addresses (nodes of one registry): the first that
    /// answers is used.
    pub api_base_addresses: Vec<String>,
    /// The service principal.
    pub service_principal_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its RSA JWK with the private parts (an object, or a JSON string of one).
    pub service_principal_key: serde_json::Value,
}

/// A validated connection file.
#[derive(Clone)]
pub struct ConnectionFile {
    /// The first token service base address.
    pub sts: String,
    /// The first registry base address.
    pub api: String,
    /// Every token service base address, in the file's order.
    pub sts_all: Vec<String>,
    /// Every registry base address (the registry's nodes), in the file's order.
    pub api_all: Vec<String>,
    /// `ServicePrincipalId`: the agent's id unless its config names another.
    pub principal_id: String,
    /// `{ServicePrincipalId}@{TenantId}`.
    pub client_id: String,
    /// The key's `kid`.
    pub kid: String,
    /// The private JWK, as JSON.
    pub(crate) key_json: String,
}

impl fmt::Debug for ConnectionFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionFile")
            .field("sts", &self.sts)
            .field("api", &self.api)
            .field("client_id", &self.client_id)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ConnectionFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<ConnectionFile, ConnectionError> {
        let fail = |problem: String| ConnectionError {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read(path).map_err(|error| fail(format!("cannot be read: {error}")))?;
        ConnectionFile::parse(&text).map_err(fail)
    }

    /// Checks the file's bytes; the error is the problem alone.
    pub fn parse(bytes: &[u8]) -> Result<ConnectionFile, String> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|error| format!("is not JSON ({error})"))?;
        let file: ConnectionFileJson = serde_json::from_value(json).map_err(|error| {
            let text = error.to_string();
            match text.strip_prefix("missing field ") {
                Some(field) => format!("lacks {field}"),
                None => format!("is not a Clearance connection file ({text})"),
            }
        })?;
        let all = |list: &[String], name: &str| {
            let addresses: Vec<String> = list
                .iter()
                .filter(|address| !address.trim().is_empty())
                .map(|address| address.trim().trim_end_matches('/').to_string())
                .collect();
            if addresses.is_empty() {
                return Err(format!("lists no {name}"));
            }
            if let Some(address) = addresses.iter().find(|address| {
                !(address.starts_with("https://") || address.starts_with("http://"))
            }) {
                return Err(format!("{name} entry `{address}` is not an http(s) URL"));
            }
            Ok(addresses)
        };
        let sts_all = all(
            &file.security_token_service_base_addresses,
            "SecurityTokenServiceBaseAddresses",
        )?;
        let api_all = all(&file.api_base_addresses, "ApiBaseAddresses")?;
        let (sts, api) = (sts_all[0].clone(), api_all[0].clone());
        if file.service_principal_id.trim().is_empty() || file.tenant_id.trim().is_empty() {
            return Err("has an empty ServicePrincipalId or TenantId".into());
        }
        let key: serde_json::Value = match file.service_principal_key {
            serde_json::Value::String(text) => serde_json::from_str(&text).map_err(|_| {
                "ServicePrincipalKey is a string that does not hold a JWK".to_string()
            })?,
            value => value,
        };
        let member = |name: &str| {
            key.get(name)
                .and_then(|value| value.as_str())
                .filter(|text| !text.is_empty())
        };
        if member("kty") != Some("RSA") {
            return Err("ServicePrincipalKey is not an RSA JWK (kty must be RSA)".into());
        }
        for name in ["n", "e"] {
            if member(name).is_none() {
                return Err(format!("ServicePrincipalKey lacks `{name}`"));
            }
        }
        if ["d", "p", "q"].iter().any(|name| member(name).is_none()) {
            return Err("ServicePrincipalKey has no private parts (d, p, q): the agent needs the private key to sign".into());
        }
        let kid = member("kid")
            .ok_or_else(|| "ServicePrincipalKey has no `kid`".to_string())?
            .to_string();
        Ok(ConnectionFile {
            sts,
            api,
            sts_all,
            api_all,
            principal_id: file.service_principal_id.trim().to_string(),
            client_id: format!(
                "{}@{}",
                file.service_principal_id.trim(),
                file.tenant_id.trim()
            ),
            kid,
            key_json: key.to_string(),
        })
    }

    /// The token endpoint, `{sts}/token`; also the assertion's audience.
    pub fn token_endpoint(&self) -> String {
        format!("{}{}", self.sts, crate::protocol::TOKEN_PATH)
    }

    /// Every token endpoint, one per token service address.
    pub fn token_endpoints(&self) -> Vec<String> {
        self.sts_all
            .iter()
            .map(|sts| format!("{sts}{}", crate::protocol::TOKEN_PATH))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &str) -> String {
        format!(
            r#"{{"SecurityTokenServiceBaseAddresses":["http://127.0.0.1:1/connect/"],"ApiBaseAddresses":["http://127.0.0.1:1"],
            "ServicePrincipalId":"agent-1","TenantId":"t1","ServicePrincipalKey":{key}}}"#
        )
    }

    const KEY: &str =
        r#"{"kty":"RSA","kid":"k1","n":"AQAB","e":"AQAB","d":"AQAB","p":"AQAB","q":"AQAB"}"#;

    #[test]
    fn a_good_file_parses_and_hides_its_key() {
        let parsed = ConnectionFile::parse(file(KEY).as_bytes()).unwrap();
        assert_eq!(parsed.client_id, "agent-1@t1");
        assert_eq!(parsed.token_endpoint(), "http://127.0.0.1:1/connect/token");
        assert!(!format!("{parsed:?}").contains("AQAB"));
        let as_string = file(&serde_json::to_string(KEY).unwrap());
        assert!(ConnectionFile::parse(as_string.as_bytes()).is_ok());
    }

    #[test]
    fn broken_files_are_named_in_one_sentence() {
        let public = r#"{"kty":"RSA","kid":"k1","n":"AQAB","e":"AQAB"}"#;
        let cases = [
            ("{not json".to_string(), "is not JSON"),
            (
                file(KEY).replace("\"TenantId\":\"t1\",", ""),
                "lacks `TenantId`",
            ),
            (file(public), "no private parts"),
            (file(r#"{"kty":"EC","kid":"k"}"#), "not an RSA JWK"),
            (
                file(KEY).replace("[\"http://127.0.0.1:1\"]", "[]"),
                "lists no ApiBaseAddresses",
            ),
        ];
        for (text, expected) in cases {
            let error = ConnectionFile::parse(text.as_bytes()).unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
            assert!(!error.contains('\n'));
        }
    }
}
