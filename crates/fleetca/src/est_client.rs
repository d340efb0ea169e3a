//! The EST client pieces the binary's own tools share (benchmarks, the factory station
//! tool): resolving the server, TLS client configurations, keep-alive exchanges, decoding
//! answers. The device agent has its own client, in a crate without server dependencies.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where an EST server is.
#[derive(Debug, Clone)]
pub(crate) struct EstTarget {
    pub(crate) addr: SocketAddr,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) host_header: HeaderValue,
    base: String,
}

impl EstTarget {
    /// The path of an EST operation under the URL's path.
    pub(crate) fn path(&self, operation: &str) -> String {
        format!("{}/{operation}", self.base)
    }
}

/// Resolves an `https://host:port/path` EST base URL.
pub(crate) async fn resolve(url: &str) -> anyhow::Result<EstTarget> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("URL '{url}'"))?;
    if uri.scheme_str() != Some("https") {
        bail!("'{url}' must be an https:// URL");
    }
    let authority = uri.authority().context("the URL has no host")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(443);
    let addr = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let server_name = ServerName::try_from(host.to_string())
        .with_context(|| format!("'{host}' is neither a DNS name nor an IP address"))?;
    Ok(EstTarget {
        addr,
        server_name,
        host_header: HeaderValue::from_str(authority.as_str())
            .context("the URL's host is not a valid Host header")?,
        base: uri.path().trim_end_matches('/').to_string(),
    })
}

/// A client configuration trusting the anchors in `ca`, TLS 1.3 and 1.2 (or 1.2 only).
pub(crate) fn client_config(
    provider: &Arc<CryptoProvider>,
    ca: &Path,
    tls12_only: bool,
) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in crate::files::read_certificates(ca)? {
        roots
            .add(cert)
            .with_context(|| format!("{} is not a usable trust anchor", ca.display()))?;
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(versions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `base` presenting `chain` (leaf first) with `key`.
pub(crate) fn with_client_certificate(
    base: &ClientConfig,
    chain: Vec<Vec<u8>>,
    key: Arc<dyn SigningKey>,
) -> Arc<ClientConfig> {
    let mut config = base.clone();
    let certified = CertifiedKey::new(chain.into_iter().map(CertificateDer::from).collect(), key);
    config.client_auth_cert_resolver = Arc::new(SingleCertAndKey::from(certified));
    Arc::new(config)
}

/// The certificates of a base64 certs-only answer (the agent library's parser).
pub(crate) fn certificates(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    fleetca_agent::certificates(body).map_err(|e| e.to_string())
}

/// One keep-alive connection to an EST server.
pub(crate) struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl Connection {
    /// Connects and completes the TLS handshake with `tls` (which may present a client
    /// certificate).
    pub(crate) async fn open(target: &EstTarget, tls: &Arc<ClientConfig>) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("cannot connect to {}", target.addr))?;
        let _ = tcp.set_nodelay(true);
        let stream = TlsConnector::from(Arc::clone(tls))
            .connect(target.server_name.clone(), tcp)
            .await
            .context("TLS handshake failed")?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            host: target.host_header.clone(),
        })
    }

    /// Sends one request; returns status, headers and body. A broken connection is an error
    /// (reconnect and retry).
    pub(crate) async fn send(
        &mut self,
        path: &str,
        body: Option<(Bytes, &[(&str, String)])>,
    ) -> anyhow::Result<(u16, HeaderMap, Bytes)> {
        self.sender.ready().await.context("connection closed")?;
        let mut request = match &body {
            Some((b, _)) => hyper::Request::post(path)
                .header(CONTENT_TYPE, "application/pkcs10")
                .header("Content-Transfer-Encoding", "base64")
                .body(Full::new(b.clone()))?,
            None => hyper::Request::get(path).body(Full::new(Bytes::new()))?,
        };
        request.headers_mut().insert(HOST, self.host.clone());
        if let Some((_, headers)) = body {
            for (name, value) in headers {
                request.headers_mut().insert(
                    hyper::header::HeaderName::from_bytes(name.as_bytes())?,
                    HeaderValue::from_str(value)?,
                );
            }
        }
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, headers, body))
    }
}
