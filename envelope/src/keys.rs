//! Key-encryption keys: the JsonWebKey an Initialize call returns wraps the
//! content key (`RSA-OAEP`, `RSA-OAEP-256` or `A256KW`); the registry's private
//! half unwraps it. Parsing and wrapping through josekit.

use josekit::jwe::{A256KW, JweDecrypter, JweEncrypter, JweHeader, RSA_OAEP, RSA_OAEP_256};
use josekit::jwk::Jwk;

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// The key is not a JSON object.
    #[error("the JsonWebKey is not valid JSON: {0}")]
    NotJson(String),
    /// A member the key needs is missing or malformed.
    #[error("the JsonWebKey {0}")]
    Invalid(String),
    /// The key type cannot wrap a content key.
    #[error(
        "the JsonWebKey has kty `{0}`: only RSA (RSA-OAEP) and oct (A256KW) keys wrap content keys"
    )]
    UnsupportedType(String),
    /// Wrapping failed.
    #[error("wrapping the content key failed: {0}")]
    Wrap(String),
    /// Unwrapping failed (wrong key, or the wrapped key was altered).
    #[error("unwrapping the content key failed: {0}")]
    Unwrap(String),
}

/// The wrapping algorithms of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapAlgorithm {
    /// RSAES-OAEP with SHA-1 (Azure's `RSA-OAEP`).
    RsaOaep,
    /// RSAES-OAEP with SHA-256.
    RsaOaep256,
    /// AES key wrap (RFC 3394) with a 256-bit key.
    A256Kw,
}

impl WrapAlgorithm {
    /// The name in `WrappedContentKey.Algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            WrapAlgorithm::RsaOaep => "RSA-OAEP",
            WrapAlgorithm::RsaOaep256 => "RSA-OAEP-256",
            WrapAlgorithm::A256Kw => "A256KW",
        }
    }

    /// Parses a `WrappedContentKey.Algorithm` name.
    pub fn parse(name: &str) -> Option<WrapAlgorithm> {
        [
            WrapAlgorithm::RsaOaep,
            WrapAlgorithm::RsaOaep256,
            WrapAlgorithm::A256Kw,
        ]
        .into_iter()
        .find(|algorithm| algorithm.name() == name)
    }
}

/// Checks a JWK and picks its wrapping algorithm.
fn inspect(json: &[u8]) -> Result<(Jwk, String, WrapAlgorithm), KekError> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|error| KekError::NotJson(error.to_string()))?;
    if !value.is_object() {
        return Err(KekError::NotJson("expected a JSON object".into()));
    }
    let jwk = Jwk::from_bytes(json)
        .map_err(|error| KekError::Invalid(format!("does not parse: {error}")))?;
    let kid = jwk
        .key_id()
        .filter(|kid| !kid.is_empty())
        .ok_or_else(|| KekError::Invalid("has no `kid` (EncryptionData needs it as KeyId)".into()))?
        .to_string();
    let member = |name: &str| {
        jwk.parameter(name)
            .and_then(|value| value.as_str())
            .filter(|text| !text.is_empty())
    };
    let algorithm = match jwk.key_type() {
        "RSA" => {
            for name in ["n", "e"] {
                member(name).ok_or_else(|| KekError::Invalid(format!("(RSA) lacks `{name}`")))?;
            }
            match jwk.algorithm() {
                None | Some("RSA-OAEP") => WrapAlgorithm::RsaOaep,
                Some("RSA-OAEP-256") => WrapAlgorithm::RsaOaep256,
                Some(other) => {
                    return Err(KekError::Invalid(format!(
                        "has alg `{other}`: an RSA key wraps with RSA-OAEP or RSA-OAEP-256"
                    )));
                }
            }
        }
        "oct" => {
            let k = member("k").ok_or_else(|| KekError::Invalid("(oct) lacks `k`".into()))?;
            let bits = base64_url_len(k) * 8;
            if bits != 256 {
                return Err(KekError::Invalid(format!(
                    "(oct) is {bits} bits: A256KW needs 256"
                )));
            }
            match jwk.algorithm() {
                None | Some("A256KW") => WrapAlgorithm::A256Kw,
                Some(other) => {
                    return Err(KekError::Invalid(format!(
                        "has alg `{other}`: an oct key wraps with A256KW"
                    )));
                }
            }
        }
        other => return Err(KekError::UnsupportedType(other.to_string())),
    };
    Ok((jwk, kid, algorithm))
}

/// Decoded length of unpadded base64url text.
fn base64_url_len(text: &str) -> usize {
    let text = text.trim_end_matches('=');
    text.len() * 3 / 4
}

/// The public side: wraps content keys.
#[derive(Debug)]
pub struct KeyEncryptionKey {
    kid: String,
    algorithm: WrapAlgorithm,
    encrypter: Box<dyn JweEncrypter>,
}

impl KeyEncryptionKey {
    /// Parses a JsonWebKey (`kty` RSA or oct, with a `kid`).
    pub fn from_jwk_json(json: &[u8]) -> Result<KeyEncryptionKey, KekError> {
        let (jwk, kid, algorithm) = inspect(json)?;
        let invalid =
            |error: josekit::JoseError| KekError::Invalid(format!("cannot wrap keys: {error}"));
        let encrypter: Box<dyn JweEncrypter> = match algorithm {
            WrapAlgorithm::RsaOaep => Box::new(RSA_OAEP.encrypter_from_jwk(&jwk).map_err(invalid)?),
            WrapAlgorithm::RsaOaep256 => {
                Box::new(RSA_OAEP_256.encrypter_from_jwk(&jwk).map_err(invalid)?)
            }
            WrapAlgorithm::A256Kw => Box::new(A256KW.encrypter_from_jwk(&jwk).map_err(invalid)?),
        };
        Ok(KeyEncryptionKey {
            kid,
            algorithm,
            encrypter,
        })
    }

    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The wrapping algorithm.
    pub fn algorithm(&self) -> WrapAlgorithm {
        self.algorithm
    }

    /// Wraps `payload` (the version-prefixed content key).
    pub fn wrap(&self, payload: &[u8]) -> Result<Vec<u8>, KekError> {
        self.encrypter
            .encrypt(payload, &JweHeader::new(), &mut JweHeader::new())
            .map_err(|error| KekError::Wrap(error.to_string()))?
            .ok_or_else(|| KekError::Wrap("no wrapped key produced".into()))
    }
}

/// The private side (the registry's): unwraps content keys.
#[derive(Debug)]
pub struct KeyUnwrapper {
    kid: String,
    algorithm: WrapAlgorithm,
    decrypter: Box<dyn JweDecrypter>,
}

impl KeyUnwrapper {
    /// Parses a private JsonWebKey.
    pub fn from_jwk_json(json: &[u8]) -> Result<KeyUnwrapper, KekError> {
        let (jwk, kid, algorithm) = inspect(json)?;
        let invalid =
            |error: josekit::JoseError| KekError::Invalid(format!("cannot unwrap keys: {error}"));
        let decrypter: Box<dyn JweDecrypter> = match algorithm {
            WrapAlgorithm::RsaOaep => Box::new(RSA_OAEP.decrypter_from_jwk(&jwk).map_err(invalid)?),
            WrapAlgorithm::RsaOaep256 => {
                Box::new(RSA_OAEP_256.decrypter_from_jwk(&jwk).map_err(invalid)?)
            }
            WrapAlgorithm::A256Kw => Box::new(A256KW.decrypter_from_jwk(&jwk).map_err(invalid)?),
        };
        Ok(KeyUnwrapper {
            kid,
            algorithm,
            decrypter,
        })
    }

    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Unwraps `wrapped`, which must have been wrapped with `algorithm` under
    /// this key.
    pub fn unwrap(&self, algorithm: &str, wrapped: &[u8]) -> Result<Vec<u8>, KekError> {
        if WrapAlgorithm::parse(algorithm) != Some(self.algorithm) {
            return Err(KekError::Unwrap(format!(
                "the key was wrapped with `{algorithm}`, but this key uses {}",
                self.algorithm.name()
            )));
        }
        // josekit's A256KW unwrap slices `len - 8` without checking.
        if wrapped.len() < 16 {
            return Err(KekError::Unwrap(format!(
                "the wrapped key is only {} bytes",
                wrapped.len()
            )));
        }
        let content = josekit::jwe::enc::A256GCM;
        self.decrypter
            .decrypt(Some(wrapped), &content, &JweHeader::new())
            .map(|key| key.into_owned())
            .map_err(|error| KekError::Unwrap(error.to_string()))
    }
}

/// Makes a fresh key pair for tests and the registry: the public JWK (for the
/// agent) and the private JWK (kept by the registry), both as JSON.
pub fn generate(kid: &str, algorithm: WrapAlgorithm) -> Result<(String, String), KekError> {
    let failed =
        |error: josekit::JoseError| KekError::Wrap(format!("cannot generate a key: {error}"));
    let mut private = match algorithm {
        WrapAlgorithm::A256Kw => {
            let mut jwk = Jwk::generate_oct_key(32).map_err(failed)?;
            jwk.set_algorithm("A256KW");
            jwk
        }
        WrapAlgorithm::RsaOaep | WrapAlgorithm::RsaOaep256 => {
            let mut jwk = Jwk::generate_rsa_key(2048).map_err(failed)?;
            jwk.set_algorithm(algorithm.name());
            jwk
        }
    };
    private.set_key_id(kid);
    private.set_key_use("enc");
    let mut public = match algorithm {
        // A symmetric key has no public half: both sides hold it.
        WrapAlgorithm::A256Kw => private.clone(),
        _ => private.to_public_key().map_err(failed)?,
    };
    public.set_key_id(kid);
    public.set_key_use("enc");
    public.set_algorithm(algorithm.name());
    Ok((public.to_string(), private.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_round_trips_for_every_algorithm() {
        for algorithm in [
            WrapAlgorithm::RsaOaep,
            WrapAlgorithm::RsaOaep256,
            WrapAlgorithm::A256Kw,
        ] {
            let (public, private) = generate("kid-1", algorithm).unwrap();
            let kek = KeyEncryptionKey::from_jwk_json(public.as_bytes()).unwrap();
            assert_eq!(kek.algorithm(), algorithm);
            let payload = [7u8; 40];
            let wrapped = kek.wrap(&payload).unwrap();
            let unwrapper = KeyUnwrapper::from_jwk_json(private.as_bytes()).unwrap();
            assert_eq!(
                unwrapper.unwrap(algorithm.name(), &wrapped).unwrap(),
                payload
            );
        }
    }

    #[test]
    fn unusable_keys_say_what_is_wrong() {
        let cases: [(&str, &str); 7] = [
            ("not json", "not valid JSON"),
            ("[1]", "expected a JSON object"),
            (
                r#"{"kty":"EC","kid":"a","crv":"P-256","x":"AA","y":"AA"}"#,
                "kty `EC`",
            ),
            (
                r#"{"kty":"oct","kid":"a","k":"AAAAAAAAAAAAAAAAAAAAAA"}"#,
                "128 bits",
            ),
            (r#"{"kty":"oct","kid":"a"}"#, "lacks `k`"),
            (r#"{"kty":"RSA","kid":"a","e":"AQAB"}"#, "lacks `n`"),
            (
                r#"{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
                "no `kid`",
            ),
        ];
        for (json, expected) in cases {
            let error = KeyEncryptionKey::from_jwk_json(json.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(expected),
                "{json}: {error:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn a_public_key_cannot_unwrap() {
        let (public, _) = generate("kid-2", WrapAlgorithm::RsaOaep).unwrap();
        assert!(KeyUnwrapper::from_jwk_json(public.as_bytes()).is_err());
    }
}
