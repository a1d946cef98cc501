//! Name lookups for guests' granted names.
//!
//! The host resolves a granted name itself, checks each address
//! ([`address`](super::address)) and connects to the one that passes. The
//! resolver is a seam: the system's by default, and a fixed table for tests
//! that need a name to point somewhere (this machine's LAN address, a metadata
//! address) without touching the machine's DNS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

/// The longest a lookup may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves a host name to addresses.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host`, with `port`.
    fn lookup(&self, host: &str, port: u16)
    -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;
}

/// A resolver shared by every job of an engine.
pub type Resolver = Arc<dyn Resolve>;

/// The system's resolver (getaddrinfo), with a timeout.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let host = host.to_string();
        Box::pin(async move {
            let lookup = tokio::net::lookup_host((host.as_str(), port));
            match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                Ok(addrs) => Ok(addrs?.collect()),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("looking up {host} took over {LOOKUP_TIMEOUT:?}"),
                )),
            }
        })
    }
}

/// A fixed table of names, falling back to nothing: for tests.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    names: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// Makes `name` resolve to `addrs`.
    pub fn with(mut self, name: &str, addrs: &[IpAddr]) -> StaticResolver {
        self.names.insert(name.to_ascii_lowercase(), addrs.to_vec());
        self
    }
}

impl Resolve for StaticResolver {
    fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let found = self.names.get(&host.to_ascii_lowercase()).map(|addrs| {
            addrs
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect::<Vec<_>>()
        });
        let host = host.to_string();
        Box::pin(async move {
            found.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} is not known"))
            })
        })
    }
}

/// The default resolver.
pub fn system() -> Resolver {
    Arc::new(SystemResolver)
}
