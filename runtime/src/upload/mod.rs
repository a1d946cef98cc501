//! The upload pipeline: output bytes → 4 MiB regions → AES-256-GCM on worker
//! threads → at most N blocks in flight → commit with the `EncryptionData`.
//!
//! [`UploadSink`] is an [`OutputSink`](crate::sink::OutputSink), the same
//! interface `run-job` writes plain files through, so a guest cannot tell
//! where its bytes go. Each file is initialized with the registry (which hands
//! out its key-encryption key), cut into regions without copying more than
//! once, sealed on the blocking pool, and uploaded with back-pressure: when N
//! blocks are in flight, the writer (and through it the guest) waits. Memory is
//! bounded by N + 1 region buffers whatever the size of the file.
//!
//! The registry calls themselves sit behind [`BlockTransport`], so the
//! pipeline is tested against a loopback server and used with the real client.

mod pipeline;
mod transport;

pub use pipeline::{UploadConfig, UploadSink};
pub use transport::{BlockTransport, FileCommit, UploadTarget};
