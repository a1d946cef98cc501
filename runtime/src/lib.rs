//! # corral: a Clearance camera-registry agent with sandboxed integrations
//!
//! The model: an *integration* (a guest) is a WebAssembly component of the
//! `corral:integration` world (see `wit/integration.wit`) with a
//! [manifest](manifest) beside it. The [`engine`] compiles it once and
//! pre-instantiates it; every *job* then runs in a fresh [`sandbox`] store
//! with the manifest's limits, and its output files stream into an
//! [`OutputSink`](sink::OutputSink).

pub mod engine;
pub mod guest;
pub mod manifest;
pub mod protocol;
pub mod sandbox;
pub mod secrets;
pub mod sink;

/// The guests bundled with corral, built by the build script.
pub mod bundled {
    /// The reference integration for camera-sim (`guests/http-vms`).
    pub const HTTP_VMS: &[u8] = include_bytes!(env!("CORRAL_GUEST_HTTP_VMS"));
    /// Its manifest, written for camera-sim on `127.0.0.1:8081`.
    pub const HTTP_VMS_MANIFEST: &str = include_str!(env!("CORRAL_GUEST_HTTP_VMS_MANIFEST"));
}
