//! TLS for the EST server: rustls with the aws-lc-rs provider, TLS 1.2 and 1.3, client
//! certificates requested but optional.
//!
//! The handshake verifies that a client holds the key of the certificate it presents
//! (CertificateVerify). Whether that certificate chains to a CA fleetca trusts, and for
//! what, is decided per request by [`crate::auth`], which can then answer with a precise
//! HTTP status ("certificate expired", "unknown CA") instead of a bare TLS alert. No handler
//! can read the presented chain except through that authenticator.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// Errors building the TLS configuration.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// rustls refused the certificate, key or settings.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

#[derive(Debug)]
struct DeferredClientAuth {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Chain, validity and purpose are checked per request (see the module comment);
        // here only that it is a certificate at all.
        webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The key-exchange groups an operator may name, by their TLS names (RFC 8446 and
/// draft-ietf-tls-ecdhe-mlkem), in the provider's default order (rustls is built without
/// `prefer-post-quantum`, so the hybrid comes last).
pub const KEY_EXCHANGE_GROUPS: &[&str] = &["X25519", "secp256r1", "secp384r1", "X25519MLKEM768"];

/// The group named `name` (one of [`KEY_EXCHANGE_GROUPS`]).
pub fn key_exchange_group(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    use rustls::crypto::aws_lc_rs::kx_group;
    match name {
        "X25519MLKEM768" => Some(kx_group::X25519MLKEM768),
        "X25519" => Some(kx_group::X25519),
        "secp256r1" => Some(kx_group::SECP256R1),
        "secp384r1" => Some(kx_group::SECP384R1),
        _ => None,
    }
}

/// The server's TLS configuration. `hint_subjects` are the DER subjects of the CAs whose
/// certificates clients should present (sent in CertificateRequest). `groups` are the
/// key-exchange groups offered (empty: the provider's default, all four of
/// [`KEY_EXCHANGE_GROUPS`]). Among the enabled groups the client's preference decides (rustls), so an
/// operator who wants devices off the hybrid leaves it out.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    hint_subjects: Vec<Vec<u8>>,
    groups: &[&'static dyn SupportedKxGroup],
) -> Result<ServerConfig, TlsSetupError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if !groups.is_empty() {
        provider.kx_groups = groups.to_vec();
    }
    // Prefer the AES-128-GCM suites (with ignore_client_order below): as suitable for
    // device traffic as the AES-256/SHA-384 ones and cheaper per handshake. All of
    // aws-lc-rs's default suites stay enabled; only their order changes.
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    let provider = Arc::new(provider);
    let verifier = DeferredClientAuth {
        hints: hint_subjects
            .into_iter()
            .map(DistinguishedName::from)
            .collect(),
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    // No session resumption: every request proves possession of its client certificate's
    // key in a full handshake, and no node keeps sessions another node cannot see. A
    // device enrolls weeks apart, so a ticket would never be used; issuing one cost every
    // handshake an encoding, a cache insert and a record.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(config)
}

/// The provider's signature algorithms, for verifying client chains per request.
pub(crate) fn verification_algorithms() -> WebPkiSupportedAlgorithms {
    CryptoProvider::get_default()
        .map(|p| p.signature_verification_algorithms)
        .unwrap_or(rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms)
}
