//! The guest's stdout and stderr: into the job's log, line by line.
//!
//! Links: the streams behind `wasi:cli/stdout` and `wasi:cli/stderr`. Per-job
//! state: the line being written, and the last [`CAPTURE`] bytes (a trap's
//! message quotes the guest's last words from them). Limits: every line goes
//! through the job's log ([`log`](super::log)): escaped, cut at 4 KiB, within
//! the log's lines, bytes and rate; past the budget a write fails (a Rust
//! guest's `println!` then panics, and the job fails naming the log limit).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::bindings::corral::integration::log::Level;
use super::log::{MAX_LINE, SharedLog};

/// Bytes of stdout and stderr kept for failure messages.
pub const CAPTURE: usize = 64 * 1024;

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// stdout: lines logged at INFO.
    Stdout,
    /// stderr: lines logged at WARN.
    Stderr,
}

/// Both streams of one job, writing into its log.
#[derive(Clone)]
pub struct GuestStdio {
    log: SharedLog,
    captured: Arc<Mutex<VecDeque<u8>>>,
}

impl GuestStdio {
    /// Streams writing into `log`.
    pub fn new(log: SharedLog) -> GuestStdio {
        GuestStdio {
            log,
            captured: Arc::default(),
        }
    }

    /// The stream for `which`, to give the WASI context.
    pub fn stream(&self, which: Which) -> StdioStream {
        StdioStream {
            stdio: self.clone(),
            which,
            line: Arc::default(),
        }
    }

    /// The last of what the guest wrote to either stream, as text.
    pub fn captured(&self) -> String {
        let captured = self.captured.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&captured.iter().copied().collect::<Vec<u8>>()).into_owned()
    }
}

/// One of a job's two streams.
#[derive(Clone)]
pub struct StdioStream {
    stdio: GuestStdio,
    which: Which,
    /// The line written so far (shared by every handle of this stream).
    line: Arc<Mutex<Vec<u8>>>,
}

impl StdioStream {
    fn log_line(&self, line: &[u8]) -> Result<(), StreamError> {
        let (level, name) = match self.which {
            Which::Stdout => (Level::Info, "stdout"),
            Which::Stderr => (Level::Warn, "stderr"),
        };
        let text = String::from_utf8_lossy(line);
        self.stdio
            .log
            .write(level, &format!("{name}: {text}"))
            .map_err(|limit| StreamError::LastOperationFailed(wasmtime::Error::new(limit)))
    }

    fn take(&self, bytes: &[u8]) -> Result<(), StreamError> {
        {
            let mut captured = self
                .stdio
                .captured
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            captured.extend(bytes.iter().rev().take(CAPTURE).rev());
            let over = captured.len().saturating_sub(CAPTURE);
            captured.drain(..over);
        }
        let mut line = self.line.lock().unwrap_or_else(PoisonError::into_inner);
        for chunk in bytes.split_inclusive(|byte| *byte == b'\n') {
            line.extend_from_slice(chunk);
            if line.ends_with(b"\n") || line.len() >= MAX_LINE {
                let whole = std::mem::take(&mut *line);
                self.log_line(&whole)?;
            }
        }
        Ok(())
    }
}

impl IsTerminal for StdioStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdioStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI p2 guests run here; p3 streams write nowhere.
        Box::new(tokio::io::sink())
    }
}

#[async_trait::async_trait]
impl Pollable for StdioStream {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for StdioStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(&bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl Drop for StdioStream {
    fn drop(&mut self) {
        // The last line, if the guest never ended it (only the last handle).
        if Arc::strong_count(&self.line) == 1 {
            let line =
                std::mem::take(&mut *self.line.lock().unwrap_or_else(PoisonError::into_inner));
            if !line.is_empty() {
                let _ = self.log_line(&line);
            }
        }
    }
}
