//! The registry client: PROTOCOL.md's calls over HTTP.
//!
//! [`wire`] holds every path and JSON name of the protocol (and nothing else
//! does); [`http`] sends requests and sorts answers into
//! [`TransportError`](crate::upload::TransportError)s; [`uploads`] implements
//! the upload pipeline's [`BlockTransport`](crate::upload::BlockTransport) for
//! one locked job.

pub mod http;
pub mod uploads;
pub mod wire;

pub use http::RegistryHttp;
pub use uploads::JobUploads;
