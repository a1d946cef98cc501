//! What can go wrong with a registry call, sorted by what the caller does next.

use std::time::Duration;

/// Why a registry call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Worth retrying: connection refused or lost, timeout, 5xx, 429, 503.
    #[error("{message}")]
    Transient {
        /// What happened.
        message: String,
        /// How long the server asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The registry could not be reached (connection refused, DNS, TLS):
    /// nothing was sent, so any call may be retried.
    #[error("{0}")]
    Unreachable(String),
    /// 409 on a call made under a lock: the lock is gone; stop, commit nothing.
    #[error("the lock is lost: {0}")]
    LockLost(String),
    /// 410: the job is no longer available (completed or cancelled).
    #[error("the job is gone: {0}")]
    Gone(String),
    /// 401 (after a fresh token) or a refused token request.
    #[error("the registry does not accept this agent's credentials: {0}")]
    Unauthorized(String),
    /// Any other refusal (400, 403, 404, 413, 415, ...), not retried.
    #[error("the registry refused: {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The `error` code of the answer, if any.
        code: String,
        /// What was refused and why.
        message: String,
    },
}

impl RegistryError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::Transient { .. } | RegistryError::Unreachable(_)
        )
    }

    /// A transient error with no server hint.
    pub fn transient(message: impl Into<String>) -> RegistryError {
        RegistryError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A refusal with no HTTP status (bad input on our side).
    pub fn invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::Rejected {
            status: 0,
            code: "CLIENT".into(),
            message: message.into(),
        }
    }
}
