//! Key-encryption keys for Initialize calls, made ahead of time.
//!
//! An RSA-2048 key takes tens of milliseconds to generate. From the first
//! Initialize on, a background thread keeps a few ready, so later calls do not
//! wait for one (and none is ever generated while holding the database).

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock, PoisonError};

use corral_envelope::keys::{WrapAlgorithm, generate};

use crate::wire::{ApiError, Code};

/// Keys ready to hand out.
pub struct KeyPool {
    algorithm: WrapAlgorithm,
    ready: OnceLock<Mutex<Receiver<(String, String)>>>,
}

/// Keys kept ready.
const READY: usize = 8;

impl KeyPool {
    /// A pool of `algorithm` keys; its thread starts with the first `take`.
    pub fn new(algorithm: WrapAlgorithm) -> KeyPool {
        KeyPool {
            algorithm,
            ready: OnceLock::new(),
        }
    }

    /// A key pair (public JWK, private JWK, as JSON) with `kid`.
    pub fn take(&self, kid: &str) -> Result<(String, String), ApiError> {
        let ready = self.ready.get_or_init(|| {
            let (sender, ready) = sync_channel(READY);
            let algorithm = self.algorithm;
            // When the pool is dropped, the next send fails and the thread ends.
            std::thread::Builder::new()
                .name("corral-keys".into())
                .spawn(move || fill(algorithm, sender))
                .expect("spawning the key thread");
            Mutex::new(ready)
        });
        let ready = ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_recv();
        let (public, private) = match ready {
            Ok(pair) => pair,
            Err(_) => generate("pending", self.algorithm).map_err(internal)?,
        };
        Ok((with_kid(&public, kid)?, with_kid(&private, kid)?))
    }
}

fn fill(algorithm: WrapAlgorithm, sender: SyncSender<(String, String)>) {
    while let Ok(pair) = generate("pending", algorithm) {
        if sender.send(pair).is_err() {
            return;
        }
    }
}

fn with_kid(jwk: &str, kid: &str) -> Result<String, ApiError> {
    let mut value: serde_json::Value = serde_json::from_str(jwk).map_err(internal)?;
    value["kid"] = serde_json::Value::String(kid.to_string());
    Ok(value.to_string())
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, format!("cannot make a key: {error}"))
}
