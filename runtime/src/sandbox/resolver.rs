//! Name lookups for guests' granted names.
//!
//! The host resolves a granted name itself, checks each address
//! ([`address`](super::address)) and connects to the one that passes. The
//! resolver is a seam: the system's by default, and a fixed table for tests
//! that need a name to point somewhere (this machine's LAN address, a metadata
//! address) without touching the machine's DNS.
//!
//! No lookup holds a shared pool hostage: the system's resolver runs each
//! lookup on a thread of its own (never tokio's blocking pool, which the
//! agent's file I/O shares), and the job's [`LookupPermit`] stays with that
//! thread until getaddrinfo returns, so a job whose DNS server never answers
//! holds at most `limits.name_lookups_in_flight` threads; the guest gets its
//! answer (or a timeout) within [`LOOKUP_TIMEOUT`] whatever the thread does.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

/// The longest a lookup may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One of a job's name lookups in flight: a resolver keeps it until the
/// lookup has really ended (its thread returned), not only until it answered.
#[derive(Debug)]
pub struct LookupPermit(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl LookupPermit {
    /// A permit from the job's semaphore of lookups.
    pub fn new(permit: tokio::sync::OwnedSemaphorePermit) -> LookupPermit {
        LookupPermit(permit)
    }
}

/// Resolves a host name to addresses.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host`, with `port`; `permit` is kept until the
    /// lookup has ended.
    fn lookup(
        &self,
        host: &str,
        port: u16,
        permit: LookupPermit,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;
}

/// `resolver`'s answer for `host`, or a timeout after [`LOOKUP_TIMEOUT`].
pub async fn lookup_within(
    resolver: &Resolver,
    host: &str,
    port: u16,
    permit: LookupPermit,
) -> std::io::Result<Vec<SocketAddr>> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup(host, port, permit)).await {
        Ok(answer) => answer,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("looking up {host} took over {LOOKUP_TIMEOUT:?}"),
        )),
    }
}

/// A resolver shared by every job of an engine.
pub type Resolver = Arc<dyn Resolve>;

/// The system's resolver (getaddrinfo), one thread per lookup.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(
        &self,
        host: &str,
        port: u16,
        permit: LookupPermit,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        use std::net::ToSocketAddrs;
        let host = host.to_string();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("corral-lookup".into())
            .spawn(move || {
                let _permit = permit;
                let addrs: std::io::Result<Vec<SocketAddr>> = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|addrs| addrs.collect());
                let _ = answer.send(addrs);
            });
        Box::pin(async move {
            spawned?;
            answered.await.unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "the lookup thread ended without an answer",
                ))
            })
        })
    }
}

/// A fixed table of names, falling back to nothing: for tests.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    names: HashMap<String, Vec<IpAddr>>,
    silent: Vec<String>,
}

impl StaticResolver {
    /// Makes lookups of `name` never answer (a DNS server that is silent).
    pub fn silent(mut self, name: &str) -> StaticResolver {
        self.silent.push(name.to_ascii_lowercase());
        self
    }

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
        permit: LookupPermit,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        if self.silent.contains(&host.to_ascii_lowercase()) {
            // A DNS server that never answers: the lookup (and its permit)
            // lasts until the caller gives up.
            return Box::pin(async move {
                let _permit = permit;
                std::future::pending().await
            });
        }
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
