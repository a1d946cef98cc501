//! The registry errors one job met, wherever they happened.
//!
//! A guest only learns that its write or commit failed; whether the guest or
//! the registry is to blame decides how the job ends (a registry fault
//! releases the job, PROTOCOL.md's "Release"), so the upload pipeline and the
//! progress forwarder note every registry error here for the runner to read.

use std::sync::{Arc, Mutex};

use super::RegistryError;

/// At most this many errors are kept: the first ones say what happened.
const KEPT: usize = 16;

/// Registry errors noted during one job (after the call's own retries).
/// Cheap to clone; clones share the record.
#[derive(Debug, Clone, Default)]
pub struct JobFaults {
    errors: Arc<Mutex<Vec<RegistryError>>>,
}

impl JobFaults {
    /// Notes `error`.
    pub fn note(&self, error: &RegistryError) {
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if errors.len() < KEPT {
            errors.push(error.clone());
        }
    }

    /// Everything noted so far, oldest first.
    pub fn errors(&self) -> Vec<RegistryError> {
        self.errors
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}
