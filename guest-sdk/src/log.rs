//! Log lines, tagged by the host with the job and the integration.

use crate::bindings::corral::integration::log::{self, Level};

/// Logs `message` at debug level.
pub fn debug(message: &str) {
    log::write(Level::Debug, message);
}

/// Logs `message` at info level.
pub fn info(message: &str) {
    log::write(Level::Info, message);
}

/// Logs `message` at warning level.
pub fn warn(message: &str) {
    log::write(Level::Warn, message);
}

/// Logs `message` at error level.
pub fn error(message: &str) {
    log::write(Level::Error, message);
}
