//! `wasi:http/outgoing-handler`: the guest's HTTP to its camera system.
//!
//! Links: wasmtime-wasi-http's `wasi:http` with our hooks. Per-job state: the
//! guest's [`OutboundPolicy`], its camera credentials, and the denials seen (so
//! a failed job names the host it was refused). Limits: only the granted
//! origins answer; the check happens on the resolved address and the
//! connection goes to that very address (no DNS rebinding), over TLS for
//! `https` (the certificate checked against the grant's name, with the
//! system's roots and the grant's own CA); loopback, link-local and
//! unspecified addresses only when a grant names them as an IP.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, HeaderValue};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use crate::manifest::HttpGrant;
use crate::secrets::{Credential, Secrets};

/// Why the policy refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No grant matches the request's scheme, host and port.
    #[error("{origin} is not granted by the manifest")]
    NotGranted {
        /// `scheme://host:port` of the request.
        origin: String,
    },
    /// A grant matches the name, but the address it resolved to is not allowed.
    #[error(
        "{origin} resolved to {addr}, which is not allowed for a host name (grant the IP itself)"
    )]
    AddressProhibited {
        /// `scheme://host:port` of the request.
        origin: String,
        /// The resolved address.
        addr: SocketAddr,
    },
}

/// The outbound HTTP grants of one guest; deny by default.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    grants: Vec<HttpGrant>,
    /// The TLS settings of each grant (same order), for `https` grants.
    tls: Vec<Option<Arc<rustls::ClientConfig>>>,
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
    /// A policy allowing exactly `grants`; `Err` names a CA file that cannot be used.
    pub fn new(grants: Vec<HttpGrant>) -> Result<OutboundPolicy, String> {
        let tls = grants
            .iter()
            .map(|grant| {
                (grant.scheme == "https")
                    .then(|| tls_config(grant))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutboundPolicy { grants, tls })
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
        let named_ip = grant.host.parse::<IpAddr>().ok();
        let allowed = match named_ip {
            // An IP literal grant allows exactly that address.
            Some(ip) => ip == addr.ip(),
            // A name may resolve to any public or private-network address, but not
            // to this machine or link-local ones unless granted as an IP.
            None => !is_local(addr.ip()),
        };
        if allowed && addr.port() == grant.port {
            Ok(())
        } else {
            Err(Denied::AddressProhibited {
                origin: grant.origin(),
                addr,
            })
        }
    }
}

/// Whether `host` is the granted host, or a subdomain of a `*.` grant.
fn host_matches(granted: &str, host: &str) -> bool {
    match granted.strip_prefix('*') {
        Some(suffix) => {
            let host = host.to_ascii_lowercase();
            host.ends_with(suffix) && host.len() > suffix.len()
        }
        None => granted.eq_ignore_ascii_case(host),
    }
}

fn origin(scheme: &str, host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// Loopback, link-local, unspecified, multicast, and IPv4-mapped forms of them.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

/// The `wasi:http` hooks of one job: policy, credentials, denial record.
pub struct OutboundHooks {
    policy: Arc<OutboundPolicy>,
    secrets: Arc<Secrets>,
    denials: Arc<Mutex<Vec<Denied>>>,
}

impl OutboundHooks {
    /// Hooks enforcing `policy`, adding credentials from `secrets`.
    pub fn new(policy: Arc<OutboundPolicy>, secrets: Arc<Secrets>) -> OutboundHooks {
        OutboundHooks {
            policy,
            secrets,
            denials: Arc::default(),
        }
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

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> ResponseFuture {
        let policy = self.policy.clone();
        let secrets = self.secrets.clone();
        let denials = self.denials.clone();
        Box::new(async move {
            let routed = match route(&policy, &secrets, request).await {
                Ok(routed) => routed,
                Err(RouteError::Denied(denied)) => {
                    let code = match denied {
                        Denied::NotGranted { .. } => wasmtime_wasi_http::Error::HttpRequestDenied,
                        Denied::AddressProhibited { .. } => {
                            wasmtime_wasi_http::Error::DestinationIpProhibited
                        }
                    };
                    tracing::warn!("sandbox denied a request: {denied}");
                    denials
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(denied);
                    return Err(code);
                }
                Err(RouteError::Other(error)) => return Err(error),
            };
            tracing::debug!("guest request to {}", routed.addr);
            send(routed, options).await
        })
    }
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
) -> Result<Sent, wasmtime_wasi_http::Error> {
    use http_body_util::BodyExt;
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
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, WasiBody>(hyper_util::rt::TokioIo::new(stream))
            .await?;
    let driver = tokio::spawn(connection);
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

/// A request ready to go: to which address, over which TLS settings.
struct Routed {
    request: http::Request<WasiBody>,
    addr: SocketAddr,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

/// Checks `request` against the policy, resolves its host, picks the one
/// address that passes the check, and adds credentials; the request's URI
/// keeps only its path (the connection is made to the address).
async fn route(
    policy: &OutboundPolicy,
    secrets: &Secrets,
    mut request: http::Request<WasiBody>,
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
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare_host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare_host, port))
            .await
            .map_err(|_| {
                RouteError::Other(wasmtime_wasi_http::Error::DnsError {
                    rcode: Some(format!("cannot resolve {bare_host}")),
                    info_code: None,
                })
            })?
            .collect(),
    };
    let mut first_denial = None;
    let addr = addrs
        .into_iter()
        .find(|addr| match policy.allows(grant, *addr) {
            Ok(()) => true,
            Err(denied) => {
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
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    *request.uri_mut() = path
        .parse()
        .map_err(|_| RouteError::Other(wasmtime_wasi_http::Error::HttpRequestUriInvalid))?;
    if let Some(name) = &grant.credentials {
        match secrets.get(name) {
            Some(Credential::Basic { user, password }) => {
                let token = STANDARD.encode(format!("{user}:{password}"));
                let mut value = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
                    RouteError::Other(wasmtime_wasi_http::Error::ConfigurationError)
                })?;
                value.set_sensitive(true);
                request.headers_mut().insert(AUTHORIZATION, value);
            }
            None => {
                tracing::warn!(
                    "grant {} names credentials `{name}`, which the agent does not have",
                    grant.origin()
                );
            }
        }
    }
    Ok(Routed { request, addr, tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(origin_host: &str, port: u16) -> HttpGrant {
        HttpGrant {
            scheme: "http".into(),
            host: origin_host.into(),
            port,
            credentials: None,
            tls_ca: None,
        }
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
        let name_grant = policy.grant_for("http", "vms.example", 80).unwrap();
        assert!(
            policy
                .allows(name_grant, "10.1.2.3:80".parse().unwrap())
                .is_ok()
        );
        for local in [
            "127.0.0.1:80",
            "169.254.169.254:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
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
