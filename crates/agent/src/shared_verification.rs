//! Verification of the server's certificate chain shared by the many devices one process
//! speaks for (a gateway, or `fleetca bench fleet`'s simulated fleet).
//!
//! A device verifies the EST server's chain on every handshake, on its own processor. A
//! process holding the TLS identities of thousands of devices would verify the very same
//! chain thousands of times a minute. [`SharedVerification`] verifies each distinct chain
//! (the same server name, end-entity and intermediates, byte for byte) with webpki once,
//! and accepts it again for at most [`REMEMBER_FOR`] and never past the earliest notAfter
//! in it. The server's handshake signature is still verified on every handshake (it signs
//! that handshake's transcript), and a chain that failed is never remembered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::AgentError;

/// How long a verified chain is accepted without verifying it again.
pub const REMEMBER_FOR: u64 = 60;

/// Distinct chains remembered at once; a server presents one chain (two during a
/// certificate renewal), so this bound is only reached by a misbehaving server.
const MAX_CHAINS: usize = 16;

/// A webpki server verifier that remembers the chains it verified (see the module).
#[derive(Debug)]
pub struct SharedVerification {
    inner: Arc<WebPkiServerVerifier>,
    /// SHA-256 of (server name, chain) → the Unix second after which it is verified again.
    verified: Mutex<HashMap<[u8; 32], u64>>,
    /// Chains verified by webpki (not answered from memory), for tests and reports.
    verifications: AtomicU64,
}

impl SharedVerification {
    /// Verifies servers against `roots` with `provider`'s algorithms.
    pub fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, AgentError> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| AgentError::Trust(format!("server verifier: {e}")))?;
        Ok(Self {
            inner,
            verified: Mutex::new(HashMap::new()),
            verifications: AtomicU64::new(0),
        })
    }

    /// How many chains webpki verified so far (each distinct chain once per
    /// [`REMEMBER_FOR`], plus every chain that failed).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

/// The memory's key: the server name and every certificate, each length-prefixed so that
/// no two different inputs share an encoding.
fn chain_key(
    server_name: &ServerName<'_>,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let name = server_name.to_str();
    for part in std::iter::once(name.as_bytes())
        .chain(std::iter::once(end_entity.as_ref()))
        .chain(intermediates.iter().map(|c| c.as_ref()))
    {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// The earliest notAfter (Unix seconds) of the chain; `None` if a certificate does not
/// parse (then nothing is remembered; webpki accepted it, so this does not happen).
fn earliest_not_after(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<u64> {
    std::iter::once(end_entity)
        .chain(intermediates)
        .map(|der| {
            X509Certificate::from_der(der.as_ref())
                .ok()
                .and_then(|(_, c)| u64::try_from(c.validity().not_after.timestamp()).ok())
        })
        .try_fold(u64::MAX, |min, t| t.map(|t| min.min(t)))
}

impl ServerCertVerifier for SharedVerification {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = chain_key(server_name, end_entity, intermediates);
        let at = now.as_secs();
        let remembered = self
            .verified
            .lock()
            .map(|m| m.get(&key).is_some_and(|until| at < *until))
            .unwrap_or(false);
        if remembered {
            return Ok(ServerCertVerified::assertion());
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let (Some(not_after), Ok(mut m)) = (
            earliest_not_after(end_entity, intermediates),
            self.verified.lock(),
        ) {
            m.retain(|_, until| at < *until);
            if m.len() >= MAX_CHAINS {
                m.clear();
            }
            // Valid through notAfter inclusive (RFC 5280), so accepted while at <= not_after.
            let until = at
                .saturating_add(REMEMBER_FOR)
                .min(not_after.saturating_add(1));
            m.insert(key, until);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    struct Pki {
        roots: Arc<RootCertStore>,
        server: CertificateDer<'static>,
        intermediate: CertificateDer<'static>,
        server_not_after: u64,
    }

    /// A root, an issuing CA and a server certificate for `localhost` valid until
    /// `not_after` (Unix seconds).
    fn pki(not_after: i64) -> Pki {
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root = ca("root").self_signed(&root_key).unwrap();
        let root_issuer = rcgen::Issuer::new(ca("root"), root_key);
        let ca_key = KeyPair::generate().unwrap();
        let intermediate = ca("issuing").signed_by(&ca_key, &root_issuer).unwrap();
        let ca_issuer = rcgen::Issuer::new(ca("issuing"), ca_key);
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.not_before = time::OffsetDateTime::from_unix_timestamp(0).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        let server = p
            .signed_by(&KeyPair::generate().unwrap(), &ca_issuer)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(root.der().clone()).unwrap();
        Pki {
            roots: Arc::new(roots),
            server: server.der().clone(),
            intermediate: intermediate.der().clone(),
            server_not_after: u64::try_from(not_after).unwrap(),
        }
    }

    fn verifier(roots: &Arc<RootCertStore>) -> SharedVerification {
        SharedVerification::new(
            Arc::clone(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .unwrap()
    }

    fn name(s: &str) -> ServerName<'static> {
        ServerName::try_from(s.to_string()).unwrap()
    }

    fn verify(
        v: &SharedVerification,
        p: &Pki,
        server_name: &str,
        at: u64,
    ) -> Result<ServerCertVerified, rustls::Error> {
        v.verify_server_cert(
            &p.server,
            std::slice::from_ref(&p.intermediate),
            &name(server_name),
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at)),
        )
    }

    #[test]
    fn a_chain_is_verified_once_per_period_and_again_after_it() {
        let p = pki(4_000_000_000);
        let v = verifier(&p.roots);
        let t = 1_800_000_000;
        for dt in [0, 1, REMEMBER_FOR - 1] {
            verify(&v, &p, "localhost", t + dt).unwrap();
        }
        assert_eq!(v.verifications(), 1, "the same chain within the period");
        verify(&v, &p, "localhost", t + REMEMBER_FOR).unwrap();
        assert_eq!(v.verifications(), 2, "verified again after the period");
    }

    #[test]
    fn another_chain_or_name_is_verified_on_its_own() {
        let (a, b) = (pki(4_000_000_000), pki(4_000_000_000));
        let v = verifier(&a.roots);
        let t = 1_800_000_000;
        verify(&v, &a, "localhost", t).unwrap();
        // b's chain ends in another root: refused, every time, never remembered.
        for _ in 0..2 {
            assert!(verify(&v, &b, "localhost", t).is_err());
        }
        assert_eq!(v.verifications(), 3);
        // The remembered chain, presented for a name it does not carry.
        assert!(verify(&v, &a, "example.com", t).is_err());
        assert_eq!(v.verifications(), 4);
    }

    #[test]
    fn nothing_is_accepted_past_the_chains_not_after() {
        let t: u64 = 1_800_000_000;
        let p = pki(1_800_000_010);
        let v = verifier(&p.roots);
        verify(&v, &p, "localhost", t).unwrap();
        verify(&v, &p, "localhost", p.server_not_after).unwrap();
        assert_eq!(v.verifications(), 1);
        let expired = verify(&v, &p, "localhost", p.server_not_after + 1);
        assert!(expired.is_err(), "expired: {expired:?}");
        assert_eq!(v.verifications(), 2);
    }
}
