//! The EST client (RFC 7030): `cacerts`, `simpleenroll` and `simplereenroll` over rustls
//! (aws-lc-rs) and hyper's HTTP/1.1 client, one connection per request.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::machine::Operation;
use crate::shared_verification::SharedVerification;
use crate::AgentError;

/// Largest response body accepted.
const MAX_RESPONSE: usize = 1 << 20;

/// Where the EST server is: `https://HOST[:PORT]/PATH` plus an optional label.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    host_header: HeaderValue,
    base_path: String,
    url: String,
}

impl Endpoint {
    /// Parses the EST base URL (e.g. `https://ca.example.net:8443/.well-known/est`) and
    /// appends `label` when given.
    pub fn parse(url: &str, label: Option<&str>) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("url '{url}': {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("url '{url}' must start with https://"));
        }
        let authority = uri.authority().ok_or(format!("url '{url}' has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| format!("'{host}' is neither a DNS name nor an IP address"))?;
        let mut base_path = uri.path().trim_end_matches('/').to_string();
        if let Some(label) = label.filter(|l| !l.is_empty()) {
            if !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "label '{label}': letters, digits, '-' and '_' only"
                ));
            }
            base_path = format!("{base_path}/{label}");
        }
        Ok(Self {
            port: authority.port_u16().unwrap_or(443),
            server_name,
            host_header: HeaderValue::from_str(authority.as_str())
                .map_err(|_| format!("url '{url}': host is not a valid Host header"))?,
            base_path,
            url: url.to_string(),
            host,
        })
    }

    /// The URL of an operation, for messages.
    pub fn url_of(&self, operation: &str) -> String {
        format!(
            "https://{}{}/{operation}",
            self.host_header.to_str().unwrap_or(""),
            self.base_path
        )
    }

    /// The configured base URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A client certificate chain and its private key, for mutual TLS.
pub struct Credential {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// A key (PKCS#8 PEM) and its certificate chain (DER, the client's first).
    pub fn new(key_pem: &str, chain: &[Vec<u8>]) -> Result<Self, AgentError> {
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| AgentError::Identity(format!("private key is not PEM: {e}")))?;
        Ok(Self {
            chain: chain
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect(),
            key,
        })
    }
}

/// What the server answered to an enrollment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollAnswer {
    /// `200`: the certificates of the certs-only response (DER).
    Issued(Vec<Vec<u8>>),
    /// `202`: ask again after this long.
    Pending(Duration),
    /// Any other status, with the first line of its plain-text body and Retry-After.
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// Retry-After, if present and readable.
        retry_after: Option<Duration>,
    },
}

/// A client's TLS configuration with its credential, ready for requests.
#[derive(Clone)]
pub struct TlsIdentity(Arc<ClientConfig>);

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

/// An EST client for one server and one set of trust anchors.
#[derive(Clone)]
pub struct EstClient {
    endpoint: Endpoint,
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    /// Set by [`EstClient::sharing_server_verification`].
    shared: Option<Arc<SharedVerification>>,
    timeout: Duration,
}

impl std::fmt::Debug for EstClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstClient")
            .field("url", &self.endpoint.url)
            .field("anchors", &self.roots.len())
            .finish_non_exhaustive()
    }
}

/// The process-wide crypto provider (aws-lc-rs).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl EstClient {
    /// A client verifying the server against `anchors` (DER), each request bounded by
    /// `timeout`.
    pub fn new(
        endpoint: Endpoint,
        anchors: &[Vec<u8>],
        timeout: Duration,
    ) -> Result<Self, AgentError> {
        let mut roots = RootCertStore::empty();
        for der in anchors {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| AgentError::Trust(format!("unusable trust anchor: {e}")))?;
        }
        Ok(Self {
            endpoint,
            provider: provider(),
            roots: Arc::new(roots),
            shared: None,
            timeout,
        })
    }

    /// Verifies each distinct server chain once a minute for all the TLS identities of
    /// this client, instead of on every handshake (see [`SharedVerification`]): for one
    /// process speaking for many devices. Every handshake's signature is still verified.
    pub fn sharing_server_verification(mut self) -> Result<Self, AgentError> {
        self.shared = Some(Arc::new(SharedVerification::new(
            Arc::clone(&self.roots),
            Arc::clone(&self.provider),
        )?));
        Ok(self)
    }

    /// The shared verifier, if [`EstClient::sharing_server_verification`] set one.
    pub fn shared_verification(&self) -> Option<&SharedVerification> {
        self.shared.as_deref()
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The TLS configuration of requests authenticated by `credential`: made once, it can
    /// serve many requests ([`EstClient::enroll_as`]).
    pub fn tls_identity(&self, credential: &Credential) -> Result<TlsIdentity, AgentError> {
        Ok(TlsIdentity(Arc::new(self.config(Some(credential))?)))
    }

    fn config(&self, credential: Option<&Credential>) -> Result<ClientConfig, AgentError> {
        let builder = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| AgentError::Transport(format!("TLS configuration: {e}")))?;
        let builder = match &self.shared {
            Some(shared) => {
                builder.dangerous().with_custom_certificate_verifier(
                    Arc::clone(shared) as Arc<dyn ServerCertVerifier>
                )
            }
            None => builder.with_root_certificates(Arc::clone(&self.roots)),
        };
        let mut config = match credential {
            Some(c) => builder
                .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
                .map_err(|e| AgentError::Identity(format!("client key unusable for TLS: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// `GET cacerts`: the CA certificates (DER) the server publishes.
    pub async fn cacerts(&self) -> Result<Vec<Vec<u8>>, AgentError> {
        let config = self.config(None)?;
        cacerts_with(&self.endpoint, Arc::new(config), self.timeout).await
    }

    /// `GET cacerts` without verifying the server: only for the bootstrap, whose result is
    /// trusted only through a pinned fingerprint.
    pub async fn cacerts_unverified(
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<Vec<Vec<u8>>, AgentError> {
        let provider = provider();
        let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| AgentError::Transport(format!("TLS configuration: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedLater(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        cacerts_with(endpoint, Arc::new(config), timeout).await
    }

    /// `simpleenroll` or `simplereenroll` of a DER CSR, authenticated by `credential`.
    pub async fn enroll(
        &self,
        operation: Operation,
        credential: &Credential,
        csr_der: &[u8],
    ) -> Result<EnrollAnswer, AgentError> {
        self.enroll_as(&self.tls_identity(credential)?, operation, csr_der)
            .await
    }

    /// [`EstClient::enroll`] with a TLS identity made beforehand.
    pub async fn enroll_as(
        &self,
        identity: &TlsIdentity,
        operation: Operation,
        csr_der: &[u8],
    ) -> Result<EnrollAnswer, AgentError> {
        let config = Arc::clone(&identity.0);
        // RFC 7030 bodies use the RFC 2045 base64 transfer encoding: lines of 64 characters,
        // which EST servers that decode line by line (OpenSSL's base64 BIO) need.
        let body = Bytes::from(fleetca_pki::base64_lines(csr_der));
        let (status, retry_after, body) = exchange(
            &self.endpoint,
            config,
            operation.path(),
            Some(body),
            self.timeout,
        )
        .await?;
        enroll_answer(status.as_u16(), retry_after, &body)
    }
}

/// What a `simpleenroll`/`simplereenroll` answer means, from its status, `Retry-After`
/// (see [`retry_after`]) and body: sans-IO, so that the fuzz target `agent_response` runs
/// exactly what [`EstClient::enroll`] does with a server's bytes.
pub fn enroll_answer(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<EnrollAnswer, AgentError> {
    match status {
        200 => certificates(body).map(EnrollAnswer::Issued),
        202 => Ok(EnrollAnswer::Pending(
            retry_after.unwrap_or(Duration::from_secs(60)),
        )),
        other => Ok(EnrollAnswer::Refused {
            status: other,
            message: first_line(body),
            retry_after,
        }),
    }
}

async fn cacerts_with(
    endpoint: &Endpoint,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, AgentError> {
    let (status, _, body) = exchange(endpoint, config, "cacerts", None, timeout).await?;
    if status != StatusCode::OK {
        return Err(AgentError::Protocol(format!(
            "cacerts: HTTP {}: {}",
            status.as_u16(),
            first_line(&body)
        )));
    }
    certificates(&body)
}

fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(300).collect()
}

/// Retry-After: delta-seconds or an HTTP date (one in the past is zero).
pub fn retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// One request over a new TCP + TLS connection: status, Retry-After and body.
async fn exchange(
    endpoint: &Endpoint,
    config: Arc<ClientConfig>,
    operation: &str,
    csr: Option<Bytes>,
    timeout: Duration,
) -> Result<(StatusCode, Option<Duration>, Bytes), AgentError> {
    let work = async {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| {
                AgentError::Transport(format!(
                    "connect to {}:{}: {e}",
                    endpoint.host, endpoint.port
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(config)
            .connect(endpoint.server_name.clone(), tcp)
            .await
            .map_err(|e| AgentError::Transport(format!("TLS handshake: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| AgentError::Transport(format!("HTTP: {e}")))?;
        let driver = tokio::spawn(connection);
        let path = format!("{}/{operation}", endpoint.base_path);
        let request = match csr {
            Some(body) => hyper::Request::post(path)
                .header(CONTENT_TYPE, "application/pkcs10")
                .header("Content-Transfer-Encoding", "base64")
                .body(Full::new(body)),
            None => hyper::Request::get(path).body(Full::new(Bytes::new())),
        };
        let mut request = request.map_err(|e| AgentError::Transport(format!("request: {e}")))?;
        request
            .headers_mut()
            .insert(HOST, endpoint.host_header.clone());
        request
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| AgentError::Transport(format!("HTTP: {e}")))?;
        let status = response.status();
        let wait = response.headers().get(RETRY_AFTER).and_then(retry_after);
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| AgentError::Transport(format!("reading the response: {e}")))?
            .to_bytes();
        driver.abort();
        Ok((status, wait, body))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(AgentError::Transport(format!(
            "no answer from {} within {} s",
            endpoint.url_of(operation),
            timeout.as_secs()
        ))),
    }
}

/// The certificates of a base64 certs-only body.
pub fn certificates(body: &[u8]) -> Result<Vec<Vec<u8>>, AgentError> {
    let der = crate::serverkeygen::decode_base64(body)?;
    fleetca_pki::parse_certs_only(&der)
        .map_err(|e| AgentError::Protocol(format!("response is not certs-only: {e}")))
}

/// Accepts any server certificate but still checks the handshake signatures. Used only to
/// fetch `cacerts` for the bootstrap, whose content is then trusted only if it holds the
/// certificate with the pinned fingerprint.
#[derive(Debug)]
struct PinnedLater(Arc<CryptoProvider>);

impl ServerCertVerifier for PinnedLater {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;

    #[test]
    fn endpoints_parse_with_labels_and_ports() {
        let e =
            Endpoint::parse("https://127.0.0.1:8443/.well-known/est/", Some("sensors")).unwrap();
        assert_eq!(
            e.url_of("simpleenroll"),
            "https://127.0.0.1:8443/.well-known/est/sensors/simpleenroll"
        );
        let e = Endpoint::parse("https://[::1]/.well-known/est", None).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 443));
        assert!(Endpoint::parse("http://x/.well-known/est", None).is_err());
        assert!(Endpoint::parse("https://x/.well-known/est", Some("../admin")).is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(
            retry_after(&HeaderValue::from_static("120")),
            Some(Duration::from_secs(120))
        );
        let past = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(retry_after(&past), Some(Duration::ZERO));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(600));
        let d = retry_after(&HeaderValue::from_str(&soon).unwrap()).unwrap();
        assert!(
            d > Duration::from_secs(590) && d <= Duration::from_secs(600),
            "{d:?}"
        );
        assert_eq!(retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn bodies_that_are_not_certs_only_are_errors() {
        assert!(certificates(b"not base64 !").is_err());
        assert!(certificates(b"AAAA\n").is_err());
    }
}
