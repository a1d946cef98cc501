//! `wasi:http/outgoing-handler`: the guest's HTTP to its camera system.
//!
//! Links: wasmtime-wasi-http's `wasi:http` with our hooks. Per-job state: the
//! guest's [`OutboundPolicy`], the agent's secrets, and the denials seen (so a
//! failed job names the rule). Limits: only the granted origins and methods
//! answer; the check happens on the resolved address and the connection goes
//! to that very address (no DNS rebinding), over TLS for `https` (the
//! certificate checked against the grant's name, with the system's roots and
//! the grant's own CA); a name never reaches this machine, link-local or
//! metadata addresses ([`address`](super::address)). A credential is added
//! only where the manifest asks for it *and* the operator bound it to the
//! request's origin, never to `TRACE`; the answer is then searched for it
//! ([`reflection`](super::reflection)). At most `limits.requests_in_flight`
//! requests at once, each counted until its connection closes, and at most
//! `limits.name_lookups_in_flight` name lookups, each within
//! [`LOOKUP_TIMEOUT`](super::resolver::LOOKUP_TIMEOUT); header maps in the
//! resource table count as the job's memory ([`held_in`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::header::{ACCEPT_ENCODING, AUTHORIZATION, HeaderValue};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::address;
use super::ledger::{Held, Ledger};
use super::limits::LimitExceeded;
use super::reflection::{GuardedBody, Needles};
use super::resolver::{self, LookupPermit, Resolver};
use crate::manifest::{Caps, HttpGrant};
use crate::origin::host_matches;
use crate::secrets::{Credential, Secrets};

/// The chunk size of a request body the guest writes, and how many chunks
/// wasmtime-wasi-http queues per body (one more than it is told): a body
/// written and never sent holds at most [`OUTGOING_BODY_BYTES`].
const OUTGOING_CHUNK: usize = 64 << 10;
/// The host memory one outgoing body may hold (its queued chunks).
const OUTGOING_BODY_BYTES: u64 = 2 * OUTGOING_CHUNK as u64;
/// Largest buffer hyper reads an answer into (the status line and headers
/// must fit in it; body bytes pass through it in frames of at most this).
const READ_BUFFER: usize = 256 << 10;
/// What one request in flight holds on the host until its connection closes,
/// charged to the job's memory: hyper's read buffer, the answer's parsed
/// headers (at most as large), and the request body's queue.
const CONNECTION_BYTES: u64 = 2 * READ_BUFFER as u64 + OUTGOING_BODY_BYTES;

/// Why the policy refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No grant matches the request's scheme, host and port.
    #[error("{origin} is not granted by the manifest")]
    NotGranted {
        /// `scheme://host:port` of the request.
        origin: String,
    },
    /// The grant matches, but not the method.
    #[error("{method} to {origin} is not granted (the grant allows {allowed})")]
    MethodNotGranted {
        /// The request's method.
        method: String,
        /// The grant's origin.
        origin: String,
        /// The methods it allows.
        allowed: String,
    },
    /// A grant matches the name, but the address it resolved to is not allowed.
    #[error(
        "{origin} resolved to {addr}, which is {why}: a granted name never connects there (grant the IP itself)"
    )]
    AddressProhibited {
        /// `scheme://host:port` of the request.
        origin: String,
        /// The resolved address.
        addr: SocketAddr,
        /// What the address is.
        why: &'static str,
    },
    /// An IP grant of an address a name never reaches (loopback, this
    /// machine, metadata, ...) that the operator did not name at load.
    #[error(
        "{origin} is {why}: the operator has not allowed this grant ([policy] local_grants in agent.toml)"
    )]
    LocalNotAllowed {
        /// The grant's origin.
        origin: String,
        /// What the address is.
        why: &'static str,
    },
    /// An IP grant, and the address is another one (or another port).
    #[error("{origin} is granted, not {addr}")]
    OtherAddress {
        /// The grant's origin.
        origin: String,
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The answer to a request with credentials came in a coding the
    /// reflection search cannot read (compressed): refused unread.
    #[error(
        "the answer from {origin} to a request carrying secret `{secret}` came with coding `{coding}`, which the host cannot search for the credentials (it asked for identity): refused"
    )]
    UnreadableAnswer {
        /// The request's origin.
        origin: String,
        /// The secret's name.
        secret: String,
        /// The coding the answer named.
        coding: String,
    },
    /// The answer carried the credentials the host added.
    #[error(
        "the answer from {origin} reflected the credentials the host added (secret `{secret}`); it was cut and the job failed"
    )]
    CredentialReflected {
        /// The request's origin.
        origin: String,
        /// The secret's name.
        secret: String,
    },
}

impl Denied {
    /// The `wasi:http` error code the guest sees.
    fn code(&self) -> wasmtime_wasi_http::Error {
        match self {
            Denied::AddressProhibited { .. }
            | Denied::OtherAddress { .. }
            | Denied::LocalNotAllowed { .. } => wasmtime_wasi_http::Error::DestinationIpProhibited,
            _ => wasmtime_wasi_http::Error::HttpRequestDenied,
        }
    }
}

/// The outbound HTTP grants of one guest; deny by default.
#[derive(Clone)]
pub struct OutboundPolicy {
    grants: Vec<HttpGrant>,
    /// The TLS settings of each grant (same order), for `https` grants.
    tls: Vec<Option<Arc<rustls::ClientConfig>>>,
    resolver: Resolver,
    /// The reflection searchers of the secrets this guest's requests carried,
    /// by secret name: built once, not per request.
    needles: Arc<Mutex<HashMap<String, Needles>>>,
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        OutboundPolicy {
            grants: Vec::new(),
            tls: Vec::new(),
            resolver: resolver::system(),
            needles: Arc::default(),
        }
    }
}

/// The system's trust roots, read once per process.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    })
}

/// The TLS client settings of an `https` grant.
fn tls_config(grant: &HttpGrant) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = system_roots().clone();
    if let Some(ca) = &grant.tls_ca {
        let fail = |error: &dyn std::fmt::Display| format!("tls_ca {}: {error}", ca.display());
        let certs = CertificateDer::pem_file_iter(ca).map_err(|error| fail(&error))?;
        for cert in certs {
            let cert = cert.map_err(|error| fail(&error))?;
            roots.add(cert).map_err(|error| fail(&error))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl OutboundPolicy {
    /// A policy allowing exactly `grants`, names resolved by the system;
    /// `Err` names a CA file that cannot be used.
    pub fn new(grants: Vec<HttpGrant>) -> Result<OutboundPolicy, String> {
        OutboundPolicy::with_resolver(grants, resolver::system())
    }

    /// A policy allowing exactly `grants`, names resolved by `resolver`.
    pub fn with_resolver(
        grants: Vec<HttpGrant>,
        resolver: Resolver,
    ) -> Result<OutboundPolicy, String> {
        let tls = grants
            .iter()
            .map(|grant| {
                (grant.scheme == "https")
                    .then(|| tls_config(grant))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutboundPolicy {
            grants,
            tls,
            resolver,
            needles: Arc::default(),
        })
    }

    /// The TLS settings of `grant`, if it is an `https` grant.
    fn tls_for(&self, grant: &HttpGrant) -> Option<Arc<rustls::ClientConfig>> {
        let index = self
            .grants
            .iter()
            .position(|candidate| candidate == grant)?;
        self.tls.get(index).cloned().flatten()
    }

    /// The grant matching `scheme`, `host` and `port`, if any.
    pub fn grant_for(&self, scheme: &str, host: &str, port: u16) -> Result<&HttpGrant, Denied> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.grants
            .iter()
            .find(|grant| {
                grant.scheme.eq_ignore_ascii_case(scheme)
                    && host_matches(&grant.host, host)
                    && grant.port == port
            })
            .ok_or_else(|| Denied::NotGranted {
                origin: origin(scheme, host, port),
            })
    }

    /// Whether a request under `grant` may connect to `addr`.
    pub fn allows(&self, grant: &HttpGrant, addr: SocketAddr) -> Result<(), Denied> {
        let other = || Denied::OtherAddress {
            origin: grant.origin(),
            addr,
        };
        if addr.port() != grant.port {
            return Err(other());
        }
        match grant.host.parse::<IpAddr>() {
            // An IP literal grant allows exactly that address; one a name
            // never reaches only if the operator named the grant at load
            // (`[policy] local_grants`, or a secret bound to it).
            Ok(ip) if ip == addr.ip() => match address::refused_for_name(ip) {
                Some(why) if !grant.local_allowed => Err(Denied::LocalNotAllowed {
                    origin: grant.origin(),
                    why,
                }),
                _ => Ok(()),
            },
            Ok(_) => Err(other()),
            Err(_) => match address::refused_for_name(addr.ip()) {
                Some(why) => Err(Denied::AddressProhibited {
                    origin: grant.origin(),
                    addr,
                    why,
                }),
                None => Ok(()),
            },
        }
    }
}

fn origin(scheme: &str, host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// The `wasi:http` hooks of one job: policy, credentials, denial record,
/// and the job's requests and lookups in flight.
pub struct OutboundHooks {
    policy: Arc<OutboundPolicy>,
    secrets: Arc<Secrets>,
    denials: Arc<Mutex<Vec<Denied>>>,
    auth_refused: Arc<Mutex<Option<String>>>,
    in_flight: InFlight,
}

/// One request in flight: its place under `requests_in_flight` and the
/// memory charged for its buffers, both given back when its connection ends.
struct RequestSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _buffers: Held,
}

/// A job's requests and name lookups under way, within its caps; the
/// connections still open are closed when the job's store goes.
#[derive(Clone)]
struct InFlight {
    ledger: Ledger,
    requests: Arc<Semaphore>,
    request_cap: u32,
    lookups: Arc<Semaphore>,
    lookup_cap: u32,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl InFlight {
    fn refuse(&self, resource: &'static str, limit: u32, key: &'static str) -> String {
        self.ledger
            .refuse(LimitExceeded::Cap {
                resource,
                limit: u64::from(limit),
                key,
            })
            .to_string()
    }

    /// A place for one more request in flight, within the cap and with its
    /// host buffers ([`CONNECTION_BYTES`]) charged to the job's memory.
    fn request(&self) -> Result<RequestSlot, wasmtime_wasi_http::Error> {
        let permit = self.requests.clone().try_acquire_owned().map_err(|_| {
            let why = self.refuse(
                "outgoing requests in flight",
                self.request_cap,
                "requests_in_flight",
            );
            tracing::warn!("sandbox refused a request: {why}");
            wasmtime_wasi_http::Error::ConnectionLimitReached
        })?;
        let buffers = self.ledger.hold(CONNECTION_BYTES).map_err(|hit| {
            tracing::warn!("sandbox refused a request: {hit}");
            wasmtime_wasi_http::Error::InternalError(Some(hit.to_string()))
        })?;
        Ok(RequestSlot {
            _permit: permit,
            _buffers: buffers,
        })
    }

    fn lookup(&self) -> Result<LookupPermit, wasmtime_wasi_http::Error> {
        match self.lookups.clone().try_acquire_owned() {
            Ok(permit) => Ok(LookupPermit::new(permit)),
            Err(_) => {
                let why = self.refuse(
                    "name lookups in flight",
                    self.lookup_cap,
                    "name_lookups_in_flight",
                );
                Err(wasmtime_wasi_http::Error::DnsError {
                    rcode: Some(why),
                    info_code: None,
                })
            }
        }
    }

    fn keep(&self, connection: tokio::task::AbortHandle) {
        let mut open = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.retain(|handle| !handle.is_finished());
        open.push(connection);
    }
}

impl Drop for OutboundHooks {
    fn drop(&mut self) {
        for connection in self
            .in_flight
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            connection.abort();
        }
    }
}

impl OutboundHooks {
    /// Hooks enforcing `policy`, adding credentials from `secrets`, within
    /// the job's `caps` (hits recorded in `ledger`).
    pub fn new(
        policy: Arc<OutboundPolicy>,
        secrets: Arc<Secrets>,
        ledger: Ledger,
        caps: Caps,
    ) -> OutboundHooks {
        OutboundHooks {
            policy,
            secrets,
            denials: Arc::default(),
            auth_refused: Arc::default(),
            in_flight: InFlight {
                ledger,
                requests: Arc::new(Semaphore::new(caps.requests_in_flight as usize)),
                request_cap: caps.requests_in_flight,
                lookups: Arc::new(Semaphore::new(caps.name_lookups_in_flight as usize)),
                lookup_cap: caps.name_lookups_in_flight,
                connections: Arc::default(),
            },
        }
    }

    /// The first answer 401 or 403 to a request that carried credentials:
    /// the operator's secret or the camera's account is wrong, which no
    /// retry of the job fixes.
    pub fn auth_refused(&self) -> Option<String> {
        self.auth_refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The requests refused so far.
    pub fn denials(&self) -> Vec<Denied> {
        self.denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        // The host owns authorization: a guest cannot set or read it.
        Arc::new(|name| {
            *name == AUTHORIZATION || wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
        })
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_CHUNK
    }

    fn set_host_header(&mut self) -> bool {
        // The host writes `Host` itself, from the host and port it checked
        // (the guest's authority may carry user info or an odd port form).
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> ResponseFuture {
        let policy = self.policy.clone();
        let secrets = self.secrets.clone();
        let denials = self.denials.clone();
        let auth_refused = self.auth_refused.clone();
        let in_flight = self.in_flight.clone();
        let ledger = in_flight.ledger.clone();
        Box::new(ledger.meter(
            async move {
                let slot = in_flight.request()?;
                let record = move |denied: Denied| {
                    tracing::warn!("sandbox denied a request: {denied}");
                    let code = denied.code();
                    denials
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(denied);
                    code
                };
                let routed = match route(&policy, &secrets, request, &in_flight).await {
                    Ok(routed) => routed,
                    Err(RouteError::Denied(denied)) => return Err(record(denied)),
                    Err(RouteError::Other(error)) => return Err(error),
                };
                tracing::debug!("guest request to {}", routed.addr);
                let guard = routed.guard.clone();
                let (response, io) = send(routed, options, slot, &in_flight).await?;
                let Some(guard) = guard else {
                    return Ok((response, io));
                };
                note_auth_refused(&auth_refused, &guard, response.status());
                let reflected = Denied::CredentialReflected {
                    origin: guard.origin.clone(),
                    secret: guard.secret.clone(),
                };
                if guard.needles.found_in_headers(response.headers()) {
                    return Err(record(reflected));
                }
                if let Some(coding) = unreadable_coding(response.headers()) {
                    return Err(record(Denied::UnreadableAnswer {
                        origin: guard.origin.clone(),
                        secret: guard.secret.clone(),
                        coding,
                    }));
                }
                let on_reflection = move || {
                    record(reflected);
                };
                let response = response.map(|body| {
                    GuardedBody::new(body, guard.needles, on_reflection).boxed_unsync()
                });
                Ok((response, io))
            },
            false,
        ))
    }
}

/// Keeps the first 401 or 403 a camera answered to the credentials in `guard`.
fn note_auth_refused(first: &Mutex<Option<String>>, guard: &Guard, status: http::StatusCode) {
    if status != http::StatusCode::UNAUTHORIZED && status != http::StatusCode::FORBIDDEN {
        return;
    }
    first
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(|| {
            format!(
                "{} answered {status} to the credentials of secret `{}`: check {} and the camera's account",
                guard.origin,
                guard.secret,
                crate::secrets::env_var(&guard.secret)
            )
        });
}

/// Anything a connection runs over: TCP, or TLS over TCP.
trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Connection for T {}

/// What `send` returns: the response, and a future that ends with the connection.
type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
);

/// Connects to the checked address (over TLS for `https`) and sends the request.
async fn send(
    routed: Routed,
    options: Option<RequestOptions>,
    slot: RequestSlot,
    in_flight: &InFlight,
) -> Result<Sent, wasmtime_wasi_http::Error> {
    use wasmtime_wasi_http::Error;
    let connect_timeout = options
        .and_then(|options| options.connect_timeout)
        .unwrap_or(Duration::from_secs(30));
    let first_byte_timeout = options
        .and_then(|options| options.first_byte_timeout)
        .unwrap_or(Duration::from_secs(600));
    let tcp = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(routed.addr))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Connection> = match routed.tls {
        None => Box::new(tcp),
        Some((config, name)) => {
            let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
            let tls = tokio::time::timeout(connect_timeout, handshake)
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?;
            Box::new(tls)
        }
    };
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(READ_BUFFER)
        .handshake::<_, WasiBody>(hyper_util::rt::TokioIo::new(stream))
        .await?;
    // The request counts against the job until its connection closes; the
    // connection closes when the job's store goes, if not before.
    let driver = tokio::spawn(in_flight.ledger.meter(
        async move {
            let _slot = slot;
            connection.await
        },
        false,
    ));
    in_flight.keep(driver.abort_handle());
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(routed.request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let io = async move {
        match driver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Error::from(error)),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    };
    Ok((
        response.map(|body| body.map_err(Error::from).boxed_unsync()),
        Box::new(io),
    ))
}

enum RouteError {
    Denied(Denied),
    Other(wasmtime_wasi_http::Error),
}

/// A request ready to go: to which address, over which TLS settings, and
/// what to search its answer for.
struct Routed {
    request: http::Request<WasiBody>,
    addr: SocketAddr,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    guard: Option<Guard>,
}

/// The credential a request carried, to search its answer for.
#[derive(Clone)]
struct Guard {
    needles: Needles,
    origin: String,
    secret: String,
}

/// Checks `request` against the policy, resolves its host, picks the one
/// address that passes the check, and adds credentials; the request's URI
/// keeps only its path (the connection is made to the address).
async fn route(
    policy: &OutboundPolicy,
    secrets: &Secrets,
    mut request: http::Request<WasiBody>,
    in_flight: &InFlight,
) -> Result<Routed, RouteError> {
    let uri = request.uri().clone();
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let host = uri.host().ok_or(RouteError::Other(
        wasmtime_wasi_http::Error::HttpRequestUriInvalid,
    ))?;
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let grant = policy
        .grant_for(&scheme, host, port)
        .map_err(RouteError::Denied)?;
    let method = request.method().as_str().to_string();
    if !grant.allows_method(&method) {
        return Err(RouteError::Denied(Denied::MethodNotGranted {
            method,
            origin: grant.origin(),
            allowed: grant.methods.join(", "),
        }));
    }
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare_host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let permit = in_flight.lookup().map_err(RouteError::Other)?;
            resolver::lookup_within(&policy.resolver, bare_host, port, permit)
                .await
                .map_err(|error| {
                    RouteError::Other(wasmtime_wasi_http::Error::DnsError {
                        rcode: Some(format!("cannot resolve {bare_host}: {error}")),
                        info_code: None,
                    })
                })?
        }
    };
    let mut first_denial = None;
    let addr = addrs
        .into_iter()
        .find(|addr| match policy.allows(grant, *addr) {
            Ok(()) => true,
            Err(mut denied) => {
                // Name the host asked for, not the (maybe wildcard) grant.
                if let Denied::AddressProhibited { origin: asked, .. } = &mut denied {
                    *asked = origin(&scheme, bare_host, port);
                }
                first_denial.get_or_insert(denied);
                false
            }
        })
        .ok_or_else(|| match first_denial {
            Some(denied) => RouteError::Denied(denied),
            None => RouteError::Other(wasmtime_wasi_http::Error::DestinationNotFound),
        })?;
    let tls = match policy.tls_for(grant) {
        None => None,
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(bare_host.to_string())
                .map_err(|_| RouteError::Other(wasmtime_wasi_http::Error::HttpRequestUriInvalid))?;
            Some((config, name))
        }
    };
    let host_header = match uri.port_u16() {
        Some(port) if !is_default_port(&scheme, port) => format!("{host}:{port}"),
        _ => host.to_string(),
    };
    request.headers_mut().insert(
        http::header::HOST,
        HeaderValue::from_str(&host_header)
            .map_err(|_| RouteError::Other(wasmtime_wasi_http::Error::HttpRequestUriInvalid))?,
    );
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    *request.uri_mut() = path
        .parse()
        .map_err(|_| RouteError::Other(wasmtime_wasi_http::Error::HttpRequestUriInvalid))?;
    let guard = match &grant.credentials {
        // Never with TRACE (it exists to reflect the request) or CONNECT.
        Some(_)
            if matches!(
                *request.method(),
                http::Method::TRACE | http::Method::CONNECT
            ) =>
        {
            None
        }
        Some(name) => match secrets.for_origin(name, &scheme, bare_host, port) {
            Some(credential) => Some(add_credential(
                policy,
                &mut request,
                credential,
                name,
                origin(&scheme, bare_host, port),
            )?),
            None => {
                tracing::warn!(
                    "grant {} asks for secret `{name}`, which the operator has not bound to {} or the agent does not have (set {})",
                    grant.origin(),
                    origin(&scheme, bare_host, port),
                    crate::secrets::env_var(name)
                );
                None
            }
        },
        None => None,
    };
    Ok(Routed {
        request,
        addr,
        tls,
        guard,
    })
}

/// Whether `port` is `scheme`'s default (left out of `Host`).
fn is_default_port(scheme: &str, port: u16) -> bool {
    matches!((scheme, port), ("http", 80) | ("https", 443))
}

/// Headers a request carrying credentials goes without: each would let the
/// answer come back in a form the reflection guard cannot read whole (a
/// `Range` slice shorter than the value, a compressed transfer coding).
const UNREADABLE_ANSWER_HEADERS: [http::HeaderName; 3] = [
    http::header::RANGE,
    http::header::IF_RANGE,
    http::header::TE,
];

/// Whether an answer to a request that carried credentials comes in a form
/// the reflection guard cannot search: a content or transfer coding other
/// than identity (and chunked, which hyper removes).
pub fn unreadable_coding(headers: &http::HeaderMap) -> Option<String> {
    let codings = |name: http::header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("?").split(','))
            .map(|coding| coding.trim().to_ascii_lowercase())
            .filter(|coding| !coding.is_empty())
            .collect::<Vec<_>>()
    };
    let content = codings(http::header::CONTENT_ENCODING);
    let transfer = codings(http::header::TRANSFER_ENCODING);
    content
        .iter()
        .chain(&transfer)
        .find(|coding| !matches!(coding.as_str(), "identity" | "chunked"))
        .cloned()
}

/// Adds `credential` to `request` (asking for an answer the reflection guard
/// can read: `Accept-Encoding: identity`, and no `Range`, `If-Range` or `TE`)
/// and returns what to search it for.
fn add_credential(
    policy: &OutboundPolicy,
    request: &mut http::Request<WasiBody>,
    credential: &Credential,
    secret: &str,
    origin: String,
) -> Result<Guard, RouteError> {
    let Credential::Basic { user, password } = credential;
    let header = credential.header_value();
    let mut value = HeaderValue::from_str(&header)
        .map_err(|_| RouteError::Other(wasmtime_wasi_http::Error::ConfigurationError))?;
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    request
        .headers_mut()
        .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    for name in UNREADABLE_ANSWER_HEADERS {
        request.headers_mut().remove(name);
    }
    let mut cached = policy
        .needles
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let needles = match cached.get(secret) {
        Some(needles) => needles.clone(),
        None => {
            let needles = Needles::for_header(&header, &format!("{user}:{password}")).ok_or(
                RouteError::Other(wasmtime_wasi_http::Error::ConfigurationError),
            )?;
            cached.insert(secret.to_string(), needles.clone());
            needles
        }
    };
    drop(cached);
    Ok(Guard {
        needles,
        origin,
        secret: secret.to_string(),
    })
}

/// Host memory a resource-table entry holds for the job: the header maps of
/// fields, requests and responses (their names and values, and the map's own
/// slots), 0 for anything else.
pub fn held_in(entry: &mut (dyn std::any::Any + Send)) -> u64 {
    use wasmtime_wasi_http::FieldMap;
    use wasmtime_wasi_http::p2::types::{
        HostIncomingResponse, HostOutgoingRequest, HostOutgoingResponse,
    };
    let map: &http::HeaderMap = if let Some(fields) = entry.downcast_ref::<FieldMap>() {
        fields
    } else if let Some(request) = entry.downcast_ref::<HostOutgoingRequest>() {
        // A body made for a request never sent holds its queue here.
        let body = if request.body.is_some() {
            OUTGOING_BODY_BYTES
        } else {
            0
        };
        return body + header_bytes(&request.headers);
    } else if let Some(response) = entry.downcast_ref::<HostIncomingResponse>() {
        &response.headers
    } else if let Some(response) = entry.downcast_ref::<HostOutgoingResponse>() {
        &response.headers
    } else {
        return 0;
    };
    header_bytes(map)
}

/// The memory of a header map: its slots, names and values.
fn header_bytes(map: &http::HeaderMap) -> u64 {
    let names = map.keys_len() * std::mem::size_of::<http::HeaderName>();
    let values = map.len() * std::mem::size_of::<HeaderValue>();
    let text: usize = map
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (names + values + text) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(origin_host: &str, port: u16) -> HttpGrant {
        HttpGrant {
            scheme: "http".into(),
            host: origin_host.into(),
            port,
            methods: vec!["GET".into(), "HEAD".into()],
            credentials: None,
            tls_ca: None,
            local_allowed: origin_host == "127.0.0.1",
        }
    }

    #[test]
    fn only_identity_and_chunked_answers_are_readable() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert_eq!(unreadable_coding(&headers(&[])), None);
        assert_eq!(
            unreadable_coding(&headers(&[
                ("content-encoding", "identity"),
                ("transfer-encoding", "chunked")
            ])),
            None
        );
        assert_eq!(
            unreadable_coding(&headers(&[("content-encoding", "GZIP")])).as_deref(),
            Some("gzip")
        );
        assert_eq!(
            unreadable_coding(&headers(&[("transfer-encoding", "gzip, chunked")])).as_deref(),
            Some("gzip")
        );
        assert_eq!(
            unreadable_coding(&headers(&[
                ("content-encoding", "identity"),
                ("content-encoding", "br")
            ]))
            .as_deref(),
            Some("br")
        );
    }

    #[test]
    fn only_granted_origins_pass() {
        let policy =
            OutboundPolicy::new(vec![grant("127.0.0.1", 8081), grant("vms.example", 80)]).unwrap();
        assert!(policy.grant_for("http", "127.0.0.1", 8081).is_ok());
        assert!(policy.grant_for("http", "VMS.example", 80).is_ok());
        assert!(matches!(
            policy.grant_for("http", "127.0.0.1", 8082),
            Err(Denied::NotGranted { .. })
        ));
        assert!(policy.grant_for("https", "vms.example", 80).is_err());
        assert!(
            OutboundPolicy::default()
                .grant_for("http", "127.0.0.1", 80)
                .is_err()
        );
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let policy = OutboundPolicy::new(vec![grant("*.cams.example", 80)]).unwrap();
        assert!(policy.grant_for("http", "a.cams.example", 80).is_ok());
        assert!(policy.grant_for("http", "b.a.CAMS.example", 80).is_ok());
        assert!(policy.grant_for("http", "cams.example", 80).is_err());
        assert!(policy.grant_for("http", "evilcams.example", 80).is_err());
    }

    #[test]
    fn names_may_not_resolve_to_this_machine() {
        let policy =
            OutboundPolicy::new(vec![grant("127.0.0.1", 8081), grant("vms.example", 80)]).unwrap();
        let ip_grant = policy.grant_for("http", "127.0.0.1", 8081).unwrap();
        assert!(
            policy
                .allows(ip_grant, "127.0.0.1:8081".parse().unwrap())
                .is_ok()
        );
        assert!(
            policy
                .allows(ip_grant, "10.0.0.1:8081".parse().unwrap())
                .is_err()
        );
        // An IP grant of this machine the operator did not name at load.
        for (host, addr) in [
            ("127.0.0.2", "127.0.0.2:80"),
            ("169.254.169.254", "169.254.169.254:80"),
        ] {
            let unnamed = grant(host, 80);
            assert!(
                matches!(
                    policy.allows(&unnamed, addr.parse().unwrap()),
                    Err(Denied::LocalNotAllowed { .. })
                ),
                "{host}"
            );
        }
        let name_grant = policy.grant_for("http", "vms.example", 80).unwrap();
        assert!(
            policy
                .allows(name_grant, "10.1.2.3:80".parse().unwrap())
                .is_ok()
        );
        for local in [
            "127.0.0.1:80",
            "169.254.169.254:80",
            "100.100.100.200:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[64:ff9b::7f00:1]:80",
            "[fd00:ec2::254]:80",
            "[fe80::1]:80",
        ] {
            let addr: SocketAddr = local.parse().unwrap();
            assert!(
                matches!(
                    policy.allows(name_grant, addr),
                    Err(Denied::AddressProhibited { .. })
                ),
                "{local} should be refused for a name"
            );
        }
    }
}
