//! Lint first, then sign exactly the bytes that were linted.
//!
//! rcgen builds a certificate and signs it in one call. To lint a certificate before any
//! CA signature over it exists, fleetca has rcgen build it "signed" by a [`LintKey`]: the
//! CA's public key and signature algorithm, and a placeholder instead of a signature (no
//! private key, no cryptography). The result is linted; then the CA signs the linted
//! `tbsCertificate` itself and the certificate is assembled from those very bytes
//! ([`Linted::sign`]). What is signed is what was linted by construction, with one
//! serialization and one signature per certificate (a throwaway key's real signature and a
//! second serialization, compared byte for byte, cost ~10% of a keep-alive renewal).

use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Encode, Sequence};

use crate::PkiError;

/// What the lint's certificate carries in place of a signature. Never a valid signature of
/// anything; the certificate that holds it is linted and dropped, never returned or stored.
const PLACEHOLDER_SIGNATURE: &[u8] = b"fleetca: not signed, for the pre-issuance lint only";

/// The issuing CA's public half as rcgen's signing key for the lint: the CA's public key
/// and signature algorithm (so the certificate names them exactly as the CA's signature
/// will), and a placeholder signature.
#[derive(Debug)]
pub(crate) struct LintKey {
    public_key: Vec<u8>,
    algorithm: &'static rcgen::SignatureAlgorithm,
}

impl LintKey {
    /// The lint key of `ca_key`.
    pub(crate) fn of(ca_key: &(impl rcgen::PublicKeyData + ?Sized)) -> Self {
        Self {
            public_key: ca_key.der_bytes().to_vec(),
            algorithm: ca_key.algorithm(),
        }
    }
}

impl rcgen::PublicKeyData for LintKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

impl rcgen::SigningKey for LintKey {
    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(PLACEHOLDER_SIGNATURE.to_vec())
    }
}

/// RFC 5280 §4.1's Certificate, its parts kept as encoded (§5.1's CertificateList has the
/// same three).
#[derive(Sequence)]
pub(crate) struct CertificateParts<'a> {
    pub(crate) tbs_certificate: AnyRef<'a>,
    pub(crate) signature_algorithm: AnyRef<'a>,
    pub(crate) signature_value: BitStringRef<'a>,
}

/// A certificate that passed the lint, with a placeholder where the CA's signature goes.
#[derive(Debug)]
pub(crate) struct Linted {
    der: Vec<u8>,
}

impl Linted {
    /// Wraps the lint's certificate (built with a [`LintKey`]; the caller linted it).
    pub(crate) fn new(der: Vec<u8>) -> Self {
        Self { der }
    }

    /// The linted tbsCertificate, DER.
    #[cfg(test)]
    pub(crate) fn tbs(&self) -> Result<Vec<u8>, PkiError> {
        let parts = CertificateParts::from_der(&self.der).map_err(encoding)?;
        parts.tbs_certificate.to_der().map_err(encoding)
    }

    /// Signs the linted tbsCertificate with `ca_key` and returns the certificate: the
    /// linted tbsCertificate and signatureAlgorithm, byte for byte, and the signature.
    pub(crate) fn sign(
        &self,
        ca_key: &(impl rcgen::SigningKey + ?Sized),
    ) -> Result<Vec<u8>, PkiError> {
        let parts = CertificateParts::from_der(&self.der).map_err(encoding)?;
        let tbs = parts.tbs_certificate.to_der().map_err(encoding)?;
        let signature = ca_key.sign(&tbs)?;
        CertificateParts {
            signature_value: BitStringRef::from_bytes(&signature).map_err(encoding)?,
            ..parts
        }
        .to_der()
        .map_err(encoding)
    }
}

fn encoding(e: der::Error) -> PkiError {
    PkiError::Encoding(format!("certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;
    use crate::*;

    /// For every CA key type: the issued certificate carries exactly the linted
    /// tbsCertificate, its signature verifies with the CA's key, and the lint's
    /// certificate never carried a signature.
    #[test]
    fn the_ca_signs_exactly_the_linted_tbs() {
        let now = time::OffsetDateTime::now_utc();
        for alg in [
            KeyAlgorithm::P256,
            KeyAlgorithm::P384,
            KeyAlgorithm::Rsa2048,
            KeyAlgorithm::Ed25519,
        ] {
            let ca_key = alg.generate().unwrap();
            let root = CaCertificate::root(&ca_key, &HierarchyParams::new("L"), now).unwrap();
            let (_, root_cert) = X509Certificate::from_der(&root.der).unwrap();
            root_cert.verify_signature(None).unwrap();
            let issuer = Issuer::new("operational", root.der.clone(), Arc::new(ca_key)).unwrap();
            let order = IssuanceOrder {
                device_serial: "SN-L1".into(),
                spki_der: KeyAlgorithm::P256.generate().unwrap().public_key_der(),
            };
            let profile = CertificateProfile::default_operational();
            let prepared = issuer.prepare(&profile, &order, now).unwrap();
            let linted_tbs = prepared.linted.tbs().unwrap();
            let (_, lint_cert) = X509Certificate::from_der(&prepared.linted.der).unwrap();
            assert_eq!(
                lint_cert.signature_value.data.as_ref(),
                PLACEHOLDER_SIGNATURE
            );
            let der = issuer.issue(prepared).unwrap().der;
            let (rest, cert) = X509Certificate::from_der(&der).unwrap();
            assert!(rest.is_empty());
            assert_eq!(
                cert.tbs_certificate.as_ref(),
                linted_tbs.as_slice(),
                "{alg:?}"
            );
            assert_eq!(cert.signature_algorithm, cert.tbs_certificate.signature);
            cert.verify_signature(Some(root_cert.public_key()))
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }
    }

    /// fuzz/regressions/csr/serial-with-question-mark: a subject whose serialNumber holds
    /// `?` (a PrintableString character the DER writer asserts on) panicked in `prepare`.
    /// It is refused with an encoding error now, for a device serial and for any other
    /// PrintableString attribute, and nothing is signed.
    #[test]
    fn a_question_mark_in_a_printable_string_is_refused_not_a_panic() {
        let now = time::OffsetDateTime::now_utc();
        let ca_key = KeyAlgorithm::P256.generate().unwrap();
        let root = CaCertificate::root(&ca_key, &HierarchyParams::new("Q"), now).unwrap();
        let issuer = Issuer::new("operational", root.der, Arc::new(ca_key)).unwrap();
        let order = IssuanceOrder {
            device_serial: "SN?1".into(),
            spki_der: KeyAlgorithm::P256.generate().unwrap().public_key_der(),
        };
        let profile = CertificateProfile::default_operational();
        let err = issuer.prepare(&profile, &order, now).unwrap_err();
        assert!(
            matches!(&err, PkiError::Encoding(m) if m.contains("'?'")),
            "{err}"
        );
        assert!(validate_device_serial("SN?1").is_err());
        assert!(validate_device_serial("SN-1 (A+B)/C:D=E,F.'").is_ok());
    }
}
