//! Key usage bits that apply to a key algorithm.
//!
//! RFC 8813 section 3 (ECDSA/ECDH keys): digitalSignature, nonRepudiation, keyAgreement,
//! keyCertSign, cRLSign, and encipherOnly/decipherOnly with keyAgreement; keyEncipherment
//! and dataEncipherment MUST NOT be set. RFC 8410 section 5 (Ed25519): digitalSignature,
//! nonRepudiation, keyCertSign, cRLSign only. RFC 4055/3279 (RSA): no keyAgreement. A
//! profile that lists a bit the certified key cannot use issues the certificate without it
//! (see [`crate::CertificateProfile::key_usages_for`]); the lint refuses a certificate
//! that carries one.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use crate::{KeyUsage, PublicKeyKind};

impl KeyUsage {
    /// Whether this bit may be set in a certificate for a key of `kind`.
    pub fn applies_to(self, kind: PublicKeyKind) -> bool {
        let rsa = matches!(kind, PublicKeyKind::Rsa { .. });
        let ec = matches!(kind, PublicKeyKind::EcP256 | PublicKeyKind::EcP384);
        match self {
            Self::DigitalSignature | Self::ContentCommitment => true,
            Self::KeyEncipherment => rsa,
            Self::KeyAgreement => ec,
        }
    }
}

/// The keyUsage bits of a parsed certificate that its key cannot use, by RFC 5280 name.
pub(crate) fn inapplicable_bits(
    ku: &x509_parser::extensions::KeyUsage,
    kind: PublicKeyKind,
) -> Vec<&'static str> {
    let rsa = matches!(kind, PublicKeyKind::Rsa { .. });
    let ec = matches!(kind, PublicKeyKind::EcP256 | PublicKeyKind::EcP384);
    let mut bad = Vec::new();
    if ku.key_encipherment() && !rsa {
        bad.push("keyEncipherment");
    }
    if ku.data_encipherment() && !rsa {
        bad.push("dataEncipherment");
    }
    if ku.key_agreement() && !ec {
        bad.push("keyAgreement");
    }
    if (ku.encipher_only() || ku.decipher_only()) && !(ec && ku.key_agreement()) {
        bad.push("encipherOnly/decipherOnly");
    }
    bad
}

/// Checks that a DER certificate's keyUsage fits its public key (used at start-up to
/// re-issue certificates written by older versions). `Err` names the offending bits.
pub fn key_usage_fits_key(der: &[u8]) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not X.509: {e}"))?;
    let kind = PublicKeyKind::of_parsed_spki(cert.public_key())?;
    for ext in cert.extensions() {
        if let ParsedExtension::KeyUsage(ku) = ext.parsed_extension() {
            let bad = inapplicable_bits(ku, kind);
            if !bad.is_empty() {
                return Err(format!(
                    "keyUsage {} does not apply to a {kind} key",
                    bad.join(", ")
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encipherment_is_for_rsa_and_key_agreement_for_ec() {
        let rsa = PublicKeyKind::Rsa { bits: 2048 };
        assert!(KeyUsage::KeyEncipherment.applies_to(rsa));
        assert!(!KeyUsage::KeyEncipherment.applies_to(PublicKeyKind::EcP256));
        assert!(!KeyUsage::KeyEncipherment.applies_to(PublicKeyKind::Ed25519));
        assert!(KeyUsage::KeyAgreement.applies_to(PublicKeyKind::EcP384));
        assert!(!KeyUsage::KeyAgreement.applies_to(PublicKeyKind::Ed25519));
        assert!(!KeyUsage::KeyAgreement.applies_to(rsa));
        for kind in [rsa, PublicKeyKind::EcP256, PublicKeyKind::Ed25519] {
            assert!(KeyUsage::DigitalSignature.applies_to(kind));
        }
    }

    #[test]
    fn a_profile_with_key_encipherment_gives_it_to_rsa_keys_only() {
        use crate::*;
        use std::sync::Arc;
        let now = time::OffsetDateTime::now_utc();
        let ca_key = KeyAlgorithm::P256.generate().unwrap();
        let root = CaCertificate::root(&ca_key, &HierarchyParams::new("KU"), now).unwrap();
        let issuer = Issuer::new("operational", root.der, Arc::new(ca_key)).unwrap();
        let mut profile = CertificateProfile::default_operational();
        profile.key_usages = vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment];
        assert!(profile.notes().iter().any(|n| n.contains("keyEncipherment")
            && n.contains("p256")
            && !n.contains("rsa2048")));
        for (alg, expect_ke) in [
            (KeyAlgorithm::Rsa2048, true),
            (KeyAlgorithm::P256, false),
            (KeyAlgorithm::Ed25519, false),
        ] {
            let device = alg.generate().unwrap();
            let order = IssuanceOrder {
                device_serial: "SN-1".into(),
                spki_der: device.public_key_der(),
            };
            let prepared = issuer.prepare(&profile, &order, now).unwrap();
            let der = issuer.issue(prepared).unwrap().der;
            key_usage_fits_key(&der).unwrap();
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature());
            assert_eq!(ku.key_encipherment(), expect_ke, "{alg:?}");
        }
    }
}
