//! # corral: a Clearance camera-registry agent with sandboxed integrations
//!
//! The model: an *integration* (a guest) is a WebAssembly component of the
//! `corral:integration` world (see `wit/integration.wit`) with a
//! [manifest](manifest) beside it. The [`engine`] compiles it once and
//! pre-instantiates it; every *job* then runs in a fresh [`sandbox`] store
//! with the manifest's limits, and its output files stream into an
//! [`OutputSink`](sink::OutputSink).

pub mod agent;
pub mod bundled;
pub mod cache;
pub mod client;
pub mod engine;
pub mod guest;
pub mod last_words;
pub mod manifest;
pub mod origin;
pub mod policy;
pub mod protocol;
pub mod sandbox;
pub mod secrets;
pub mod sink;
pub mod upload;
