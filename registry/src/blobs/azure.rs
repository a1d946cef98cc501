//! An Azure Blob Storage container (or Azurite, Microsoft's emulator) as the
//! file store, shared by every registry node. Each uploaded file is one
//! block blob named by its file id: an agent's block is a staged block of it
//! (Put Block, under the agent's own block id), the commit is Put Block List
//! in the agent's order with the `EncryptionData` JSON as the blob's
//! `encryptiondata` metadata, where Azure's client-side encryption keeps it.
//! A committed file is then an ordinary client-side-encrypted blob that any
//! Azure SDK decrypts, given the key-encryption key.
//!
//! The few REST calls are written here on hyper, signed with Shared Key
//! ([`super::shared_key`]): the `azure_storage_blob` crate (1.1) takes only
//! Entra ID token credentials, which Azurite does not accept on plain HTTP,
//! and brings reqwest and the azure_core stack with it.
//!
//! Uncommitted blocks of an abandoned file are discarded by Azure itself
//! after a week; [`FileStore::delete`] removes a committed blob at once.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use time::OffsetDateTime;
use time::macros::format_description;

use super::shared_key::SharedKey;
use super::{BlobError, BlockId, FileStore, Placed};

/// The environment variable holding the storage account's key (base64).
pub const KEY_VAR: &str = "CORRAL_BLOBS_KEY";

/// Azurite's well-known account key (for `devstoreaccount1`), public by design.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The REST API version spoken.
const VERSION: &str = "2021-08-06";

/// How long one call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// One container, reached with an account key.
pub struct AzureBlobs {
    /// `scheme://authority/path-to-container`, no trailing slash.
    container_url: String,
    signer: SharedKey,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The runtime the calls run on, so that the store can be used from any
    /// thread (taken out when dropped: dropping a runtime may not block).
    runtime: Option<tokio::runtime::Runtime>,
}

/// A call's answer.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

/// The account of a container URL: the host's first label, or for an
/// emulator on an IP address or `localhost`, the path's first segment.
fn parse_container_url(url: &str) -> Result<(String, String), String> {
    let shape = "a container URL is https://<account>.blob.core.windows.net/<container>, \
                 or http://127.0.0.1:10000/<account>/<container> for Azurite";
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("--blobs {url}: not a URL ({shape})"))?;
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(format!("--blobs {url}: not a URL ({shape})"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("--blobs {url}: the scheme must be http or https"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "--blobs {url}: no query (a SAS) is accepted; the key comes from {KEY_VAR}"
        ));
    }
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let emulator = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok();
    let account = match (emulator, segments.as_slice()) {
        (true, [account, _container]) => account.to_string(),
        (false, [_container]) => host.split('.').next().unwrap_or(host).to_string(),
        _ => return Err(format!("--blobs {url}: {shape}")),
    };
    let container_url = format!(
        "{scheme}://{}/{}",
        uri.authority().map_or(host, |a| a.as_str()),
        segments.join("/")
    );
    Ok((account, container_url))
}

/// The system's trusted roots (an Azure endpoint's certificate is public).
fn native_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

fn now_rfc1123() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default()
}

/// Azure's error code from an error answer's XML body.
fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    Some(text[start..end].to_string())
}

impl AzureBlobs {
    /// The container at `container_url`, with the key from [`KEY_VAR`].
    pub fn from_env(container_url: &str) -> Result<AzureBlobs, String> {
        let key = std::env::var(KEY_VAR).map_err(|_| {
            format!("--blobs {container_url}: set {KEY_VAR} to the storage account's key (base64)")
        })?;
        AzureBlobs::open(container_url, &key)
    }

    /// The container at `container_url` (created if missing), reached with
    /// the account key `key`; refuses, in one sentence, a container that
    /// does not answer or refuses the key.
    pub fn open(container_url: &str, key: &str) -> Result<AzureBlobs, String> {
        let (account, container_url) = parse_container_url(container_url)?;
        let signer = SharedKey::new(&account, key).map_err(|why| format!("{KEY_VAR}: {why}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("blob-store")
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start the blob client: {error}"))?;
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS set-up failed: {error}"))?
        .with_root_certificates(native_roots())
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let blobs = AzureBlobs {
            container_url,
            signer,
            client: Client::builder(TokioExecutor::new()).build(connector),
            runtime: Some(runtime),
        };
        blobs.ensure_container().map_err(|error| {
            let hint = match error {
                BlobError::Refused { status: 403, .. } => format!(" (check {KEY_VAR})"),
                _ => String::new(),
            };
            format!("--blobs {}: {error}{hint}", blobs.container_url)
        })?;
        Ok(blobs)
    }

    /// The container's URL.
    pub fn container_url(&self) -> &str {
        &self.container_url
    }

    /// The account name.
    pub fn account(&self) -> &str {
        self.signer.account()
    }

    fn ensure_container(&self) -> Result<(), BlobError> {
        let what = "reading the container";
        let answer = self.call(
            what,
            Method::GET,
            None,
            "restype=container",
            &[],
            Bytes::new(),
        )?;
        if answer.status == StatusCode::NOT_FOUND {
            let answer = self.call(
                "creating the container",
                Method::PUT,
                None,
                "restype=container",
                &[],
                Bytes::new(),
            )?;
            let raced = answer.status == StatusCode::CONFLICT;
            return if raced {
                Ok(())
            } else {
                check_status(answer, "creating the container", &[StatusCode::CREATED])
            };
        }
        check_status(answer, what, &[StatusCode::OK])
    }

    /// Runs `future` on the store's runtime and waits for it, from any thread.
    fn block_on<T: Send + 'static>(
        &self,
        what: &str,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, BlobError> {
        let stopped = || BlobError::Unreachable {
            what: what.to_string(),
            endpoint: self.container_url.clone(),
            reason: "the blob client stopped".to_string(),
        };
        let runtime = self.runtime.as_ref().ok_or_else(stopped)?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = sender.send(future.await);
        });
        receiver.recv().map_err(|_| stopped())
    }

    /// One signed call on the container (`blob: None`) or one blob.
    fn call(
        &self,
        what: &str,
        method: Method,
        blob: Option<&str>,
        query: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, BlobError> {
        let mut url = match blob {
            Some(name) => format!("{}/{name}", self.container_url),
            None => self.container_url.clone(),
        };
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        let unreachable = |reason: String| BlobError::Unreachable {
            what: what.to_string(),
            endpoint: self.container_url.clone(),
            reason,
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header("x-ms-date", now_rfc1123())
            .header("x-ms-version", VERSION)
            .header("content-length", body.len().to_string());
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let mut request = builder
            .body(Full::new(body))
            .map_err(|error| BlobError::Config(format!("{what}: a bad request: {error}")))?;
        let authorization = self.signer.authorization(&request);
        request.headers_mut().insert(
            http::header::AUTHORIZATION,
            authorization
                .parse()
                .map_err(|_| BlobError::Config("the signature is not a header".into()))?,
        );
        let client = self.client.clone();
        let sent = self.block_on(what, async move {
            tokio::time::timeout(CALL_TIMEOUT, async move {
                let response = client.request(request).await.map_err(|error| {
                    let mut text = error.to_string();
                    let mut source = std::error::Error::source(&error);
                    while let Some(cause) = source {
                        text = format!("{text}: {cause}");
                        source = cause.source();
                    }
                    text
                })?;
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|error| format!("the answer broke off: {error}"))?
                    .to_bytes();
                Ok::<_, String>(Answer { status, body })
            })
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs())))
        })?;
        sent.map_err(unreachable)
    }
}

/// Ok if `answer`'s status is one of `expected`, else the refusal.
fn check_status(answer: Answer, what: &str, expected: &[StatusCode]) -> Result<(), BlobError> {
    body_of(answer, what, expected).map(drop)
}

/// The body of `answer` if its status is one of `expected`, else the refusal.
fn body_of(answer: Answer, what: &str, expected: &[StatusCode]) -> Result<Bytes, BlobError> {
    if expected.contains(&answer.status) {
        return Ok(answer.body);
    }
    Err(BlobError::Refused {
        what: what.to_string(),
        status: answer.status.as_u16(),
        code: error_code(&answer.body)
            .unwrap_or_else(|| answer.status.canonical_reason().unwrap_or("").to_string()),
    })
}

impl FileStore for AzureBlobs {
    fn describe(&self) -> String {
        format!("the Azure container {}", self.container_url)
    }

    fn put_block(&self, file_id: &str, id: &BlockId, block: &[Bytes]) -> Result<(), BlobError> {
        let body = match block {
            [one] => one.clone(),
            frames => Bytes::from(frames.concat()),
        };
        let query = format!("comp=block&blockid={}", urlencoding::encode(id.as_str()));
        let what = format!("staging a block of file {file_id}");
        let answer = self.call(&what, Method::PUT, Some(file_id), &query, &[], body)?;
        check_status(answer, &what, &[StatusCode::CREATED])
    }

    fn commit(
        &self,
        file_id: &str,
        blocks: &[BlockId],
        encryption_data: &str,
    ) -> Result<(), BlobError> {
        let mut list = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for id in blocks {
            list.push_str(&format!("<Latest>{}</Latest>", id.as_str()));
        }
        list.push_str("</BlockList>");
        let headers = [
            ("content-type", "application/xml".to_string()),
            ("x-ms-meta-encryptiondata", encryption_data.to_string()),
        ];
        let what = format!("committing the block list of file {file_id}");
        let answer = self.call(
            &what,
            Method::PUT,
            Some(file_id),
            "comp=blocklist",
            &headers,
            list.into(),
        )?;
        match check_status(answer, &what, &[StatusCode::CREATED]) {
            Err(BlobError::Refused { code, .. }) if code == "InvalidBlockList" => {
                Err(BlobError::UnknownBlock(format!(
                    "a block of the commit of file {file_id} is no longer staged (an earlier commit of it discarded the blocks it did not name): upload it again"
                )))
            }
            other => other,
        }
    }

    fn read_block(&self, file_id: &str, block: &Placed) -> Result<Vec<u8>, BlobError> {
        if block.len == 0 {
            return Ok(Vec::new());
        }
        let last = block.offset + block.len as u64 - 1;
        let range = [("x-ms-range", format!("bytes={}-{last}", block.offset))];
        let what = format!("reading a block of file {file_id}");
        let answer = self.call(&what, Method::GET, Some(file_id), "", &range, Bytes::new())?;
        let body = body_of(
            answer,
            &what,
            &[StatusCode::PARTIAL_CONTENT, StatusCode::OK],
        )?;
        Ok(body.to_vec())
    }

    fn read_file(&self, file_id: &str, _blocks: &[BlockId]) -> Result<Vec<u8>, BlobError> {
        let what = format!("reading file {file_id}");
        let answer = self.call(&what, Method::GET, Some(file_id), "", &[], Bytes::new())?;
        Ok(body_of(answer, &what, &[StatusCode::OK])?.to_vec())
    }

    fn prune(&self, _file_id: &str, _keep: &[BlockId]) {
        // Put Block List discarded the blocks it did not name.
    }

    fn delete(&self, file_id: &str) -> Result<(), BlobError> {
        let what = format!("deleting file {file_id}");
        let answer = self.call(&what, Method::DELETE, Some(file_id), "", &[], Bytes::new())?;
        // 404: no blob was made (staged blocks alone go after a week).
        check_status(
            answer,
            &what,
            &[StatusCode::ACCEPTED, StatusCode::NOT_FOUND],
        )
    }
}

impl Drop for AzureBlobs {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_container_url;

    #[test]
    fn a_container_url_names_its_account() {
        assert_eq!(
            parse_container_url("http://127.0.0.1:10000/devstoreaccount1/corral/").unwrap(),
            (
                "devstoreaccount1".into(),
                "http://127.0.0.1:10000/devstoreaccount1/corral".into()
            )
        );
        assert_eq!(
            parse_container_url("https://acme.blob.core.windows.net/files").unwrap(),
            (
                "acme".into(),
                "https://acme.blob.core.windows.net/files".into()
            )
        );
        assert!(parse_container_url("https://acme.blob.core.windows.net/").is_err());
        assert!(parse_container_url("https://acme.blob.core.windows.net/c?sv=x").is_err());
        assert!(parse_container_url("ftp://127.0.0.1/a/b").is_err());
    }
}
