//! Pre-issuance lint: RFC 5280 structure checks on a to-be-signed certificate.
//!
//! The certificate is linted in the exact form it will be signed in (see
//! [`crate::Issuer::prepare`]); a finding stops issuance before the CA key is used.

use std::collections::HashSet;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Version;

use crate::name::{name_attributes, NameAttribute};
use crate::{LintError, PublicKeyKind};

/// What the certificate is supposed to be.
#[derive(Debug, Clone)]
pub struct LintExpectations {
    /// `true` for device and server certificates, `false` for CA certificates.
    pub end_entity: bool,
    /// The issuer's subject: the certificate's issuer must equal it.
    pub issuer_subject: Vec<NameAttribute>,
    /// The issuer's subject key identifier: the authority key identifier must equal it.
    pub issuer_key_id: Vec<u8>,
    /// The issuer's notAfter, if it has one: a certificate must not outlive its issuer.
    pub issuer_not_after: Option<OffsetDateTime>,
}

const OID_SKI: &str = "2.5.29.14";
const OID_KU: &str = "2.5.29.15";
const OID_SAN: &str = "2.5.29.17";
const OID_BC: &str = "2.5.29.19";
const OID_CRLDP: &str = "2.5.29.31";
const OID_AKI: &str = "2.5.29.35";
const OID_EKU: &str = "2.5.29.37";
const OID_NAME_CONSTRAINTS: &str = "2.5.29.30";
const OID_AIA: &str = "1.3.6.1.5.5.7.1.1";
const OID_OCSP_NOCHECK: &str = "1.3.6.1.5.5.7.48.1.5";

const END_ENTITY_EXTENSIONS: &[&str] = &[
    OID_SKI,
    OID_KU,
    OID_SAN,
    OID_BC,
    OID_CRLDP,
    OID_AKI,
    OID_EKU,
    OID_AIA,
    OID_OCSP_NOCHECK,
];
const CA_EXTENSIONS: &[&str] = &[
    OID_SKI,
    OID_KU,
    OID_BC,
    OID_CRLDP,
    OID_AKI,
    OID_AIA,
    OID_NAME_CONSTRAINTS,
    OID_EKU,
];

/// Lints a DER certificate. Returns every finding.
pub fn lint_certificate(der: &[u8], expect: &LintExpectations) -> Result<(), LintError> {
    let mut findings = Vec::new();
    match X509Certificate::from_der(der) {
        Ok((rest, cert)) => {
            if !rest.is_empty() {
                findings.push("trailing data after the certificate".to_string());
            }
            lint_parsed(&cert, expect, &mut findings);
        }
        Err(e) => findings.push(format!("does not parse as X.509: {e}")),
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(LintError { findings })
    }
}

fn lint_parsed(cert: &X509Certificate<'_>, expect: &LintExpectations, findings: &mut Vec<String>) {
    let mut fail = |s: String| findings.push(s);
    let tbs = &cert.tbs_certificate;

    if tbs.version != X509Version::V3 {
        fail("version is not v3".into());
    }

    // Serial: RFC 5280 §4.1.2.2.
    let serial = cert.raw_serial();
    match serial.first() {
        None => fail("serial number is empty".into()),
        Some(b) if *b & 0x80 != 0 => fail("serial number is negative".into()),
        Some(_) => {}
    }
    if serial.iter().all(|b| *b == 0) {
        fail("serial number is zero".into());
    }
    if serial.len() > 20 {
        fail(format!(
            "serial number is {} bytes (at most 20)",
            serial.len()
        ));
    }

    // Validity.
    let not_before = tbs.validity.not_before.to_datetime();
    let not_after = tbs.validity.not_after.to_datetime();
    if not_before >= not_after {
        fail(format!(
            "notBefore {not_before} is not before notAfter {not_after}"
        ));
    }
    if let Some(limit) = expect.issuer_not_after {
        if not_after > limit {
            fail(format!(
                "notAfter {not_after} is after the issuer's notAfter {limit}"
            ));
        }
    }

    // Names.
    match name_attributes(cert.issuer()) {
        Ok(issuer) if issuer == expect.issuer_subject => {}
        Ok(_) => fail("issuer name differs from the issuing CA's subject".into()),
        Err(e) => fail(format!("issuer name: {e}")),
    }
    let subject_empty = cert.subject().iter_attributes().next().is_none();

    // Signature algorithm: the inner and outer identifiers must agree, and not SHA-1.
    if tbs.signature != cert.signature_algorithm {
        fail("tbsCertificate.signature differs from signatureAlgorithm".into());
    }
    let sig_oid = cert.signature_algorithm.algorithm.to_id_string();
    if [
        "1.2.840.113549.1.1.5",
        "1.2.840.10045.4.1",
        "1.2.840.113549.1.1.4",
    ]
    .contains(&sig_oid.as_str())
    {
        fail(format!(
            "signature algorithm {sig_oid} is forbidden (SHA-1/MD5)"
        ));
    }

    let key_kind = match PublicKeyKind::of_parsed_spki(cert.public_key()) {
        Ok(kind) => Some(kind),
        Err(e) => {
            fail(format!("subject public key: {e}"));
            None
        }
    };

    // Extensions.
    let allowed = if expect.end_entity {
        END_ENTITY_EXTENSIONS
    } else {
        CA_EXTENSIONS
    };
    let mut seen = HashSet::new();
    let mut ski = None;
    let mut aki = None;
    let mut basic_constraints = None;
    let mut key_usage = None;
    let mut eku = None;
    let mut san_present = false;
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if !seen.insert(oid.clone()) {
            fail(format!("extension {oid} appears twice"));
        }
        if !allowed.contains(&oid.as_str()) {
            fail(format!(
                "extension {oid} is not allowed in this kind of certificate"
            ));
        }
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = Some(a.key_identifier.as_ref().map(|k| k.0.to_vec()))
            }
            ParsedExtension::BasicConstraints(bc) => {
                basic_constraints = Some((ext.critical, bc.ca, bc.path_len_constraint))
            }
            ParsedExtension::KeyUsage(ku) => key_usage = Some((ext.critical, *ku)),
            ParsedExtension::ExtendedKeyUsage(e) => eku = Some(e.any),
            ParsedExtension::SubjectAlternativeName(san) => {
                san_present = true;
                if san.general_names.is_empty() {
                    fail("subjectAltName is empty".into());
                }
                for name in &san.general_names {
                    let rendered = crate::name::render_general_name(name);
                    if let Err(e) = crate::validate_subject_alt_name(&rendered) {
                        fail(format!("subjectAltName {e}"));
                    }
                }
                if subject_empty && !ext.critical {
                    fail("subjectAltName must be critical when the subject is empty".into());
                }
            }
            ParsedExtension::ParseError { error } => {
                fail(format!("extension {oid} does not parse: {error}"))
            }
            _ => {}
        }
    }
    if subject_empty && !san_present {
        fail("certificate has neither a subject nor a subjectAltName".into());
    }

    if ski.is_none() {
        fail("subjectKeyIdentifier is missing".into());
    }
    match aki {
        None => fail("authorityKeyIdentifier is missing".into()),
        Some(None) => fail("authorityKeyIdentifier has no keyIdentifier".into()),
        Some(Some(id)) if id != expect.issuer_key_id => {
            fail("authorityKeyIdentifier differs from the issuer's subjectKeyIdentifier".into())
        }
        Some(Some(_)) => {}
    }

    match basic_constraints {
        None => fail("basicConstraints is missing".into()),
        Some((critical, ca, path_len)) => {
            if !critical {
                fail("basicConstraints is not critical".into());
            }
            if expect.end_entity && ca {
                fail("end-entity certificate has basicConstraints CA:TRUE".into());
            }
            if !expect.end_entity && !ca {
                fail("CA certificate has basicConstraints CA:FALSE".into());
            }
            if !ca && path_len.is_some() {
                fail("pathLenConstraint set on a non-CA certificate".into());
            }
        }
    }

    match key_usage {
        None => fail("keyUsage is missing".into()),
        Some((critical, ku)) => {
            if !critical {
                fail("keyUsage is not critical".into());
            }
            if let Some(kind) = key_kind {
                let bad = crate::key_usage::inapplicable_bits(&ku, kind);
                if !bad.is_empty() {
                    fail(format!(
                        "keyUsage {} does not apply to the certified {kind} key (RFC 8813, RFC 8410)",
                        bad.join(", ")
                    ));
                }
            }
            let signs_certs = ku.key_cert_sign() || ku.crl_sign();
            if expect.end_entity {
                if signs_certs {
                    fail("end-entity certificate has keyCertSign or cRLSign".into());
                }
                if !ku.digital_signature() {
                    fail("end-entity certificate lacks digitalSignature".into());
                }
            } else if !ku.key_cert_sign() || !ku.crl_sign() {
                fail("CA certificate lacks keyCertSign or cRLSign".into());
            }
        }
    }

    if expect.end_entity {
        match eku {
            None => fail("end-entity certificate has no extendedKeyUsage".into()),
            Some(true) => fail("anyExtendedKeyUsage is not allowed".into()),
            Some(false) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;
    use rcgen::{CertificateParams, DnType, IsCa, KeyIdMethod, KeyUsagePurpose};

    struct Fixture {
        issuer_params: CertificateParams,
        issuer_key: crate::SoftwareKey,
    }

    fn fixture() -> Fixture {
        let issuer_key = KeyAlgorithm::P256.generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "Lint CA");
        p.key_identifier_method = KeyIdMethod::PreSpecified(vec![7; 20]);
        Fixture {
            issuer_params: p,
            issuer_key,
        }
    }

    fn expectations(end_entity: bool) -> LintExpectations {
        LintExpectations {
            end_entity,
            issuer_subject: vec![NameAttribute {
                oid: "2.5.4.3".into(),
                value: "Lint CA".into(),
            }],
            issuer_key_id: vec![7; 20],
            issuer_not_after: None,
        }
    }

    fn good_leaf() -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "SN-1");
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[1, 2, 3]));
        p.not_before = rcgen::date_time_ymd(2026, 1, 1);
        p.not_after = rcgen::date_time_ymd(2027, 1, 1);
        p
    }

    fn sign(f: &Fixture, leaf: &CertificateParams) -> Vec<u8> {
        let subject = KeyAlgorithm::P256.generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&f.issuer_params, &f.issuer_key);
        leaf.signed_by(&subject, &issuer).unwrap().der().to_vec()
    }

    fn findings(der: &[u8], end_entity: bool) -> Vec<String> {
        match lint_certificate(der, &expectations(end_entity)) {
            Ok(()) => vec![],
            Err(e) => e.findings,
        }
    }

    #[test]
    fn a_good_leaf_passes() {
        let f = fixture();
        assert_eq!(
            findings(&sign(&f, &good_leaf()), true),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_ca_bit_on_an_end_entity_is_found() {
        let f = fixture();
        let mut p = good_leaf();
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let found = findings(&sign(&f, &p), true);
        assert!(found.iter().any(|s| s.contains("CA:TRUE")), "{found:?}");
    }

    #[test]
    fn inverted_validity_and_negative_serial_are_found() {
        let f = fixture();
        let mut p = good_leaf();
        p.not_before = rcgen::date_time_ymd(2028, 1, 1);
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x80, 1]));
        let found = findings(&sign(&f, &p), true);
        assert!(found.iter().any(|s| s.contains("notBefore")), "{found:?}");
        // rcgen encodes serials as unsigned integers, so a high bit gets a 0x00 prefix:
        // this checks that such serials are still positive and accepted.
        assert!(!found.iter().any(|s| s.contains("negative")), "{found:?}");
    }

    #[test]
    fn missing_identifiers_and_key_usage_are_found() {
        let f = fixture();
        let mut p = good_leaf();
        p.use_authority_key_identifier_extension = false;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ];
        p.extended_key_usages.clear();
        let found = findings(&sign(&f, &p), true);
        for needle in [
            "authorityKeyIdentifier is missing",
            "keyCertSign",
            "no extendedKeyUsage",
        ] {
            assert!(
                found.iter().any(|s| s.contains(needle)),
                "{needle}: {found:?}"
            );
        }
    }

    #[test]
    fn extra_extensions_and_outliving_the_issuer_are_found() {
        let f = fixture();
        let mut p = good_leaf();
        p.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[1, 2, 3],
            vec![5, 0],
        )];
        let der = sign(&f, &p);
        let mut e = expectations(true);
        e.issuer_not_after = Some(rcgen::date_time_ymd(2026, 6, 1));
        let found = lint_certificate(&der, &e).unwrap_err().findings;
        assert!(
            found.iter().any(|s| s.contains("1.2.3 is not allowed")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|s| s.contains("issuer's notAfter")),
            "{found:?}"
        );
    }

    #[test]
    fn wrong_issuer_name_is_found() {
        let f = fixture();
        let der = sign(&f, &good_leaf());
        let mut e = expectations(true);
        e.issuer_subject[0].value = "Other CA".into();
        let found = lint_certificate(&der, &e).unwrap_err().findings;
        assert!(found.iter().any(|s| s.contains("issuer name")), "{found:?}");
    }

    #[test]
    fn key_usage_that_does_not_fit_the_key_is_found() {
        let f = fixture();
        let mut p = good_leaf();
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        // sign() certifies a P-256 key: keyEncipherment is forbidden (RFC 8813).
        let found = findings(&sign(&f, &p), true);
        assert!(
            found
                .iter()
                .any(|s| s.contains("keyEncipherment does not apply to the certified p256 key")),
            "{found:?}"
        );
    }

    #[test]
    fn invalid_host_names_and_uris_are_found() {
        let f = fixture();
        let mut p = good_leaf();
        p.subject_alt_names = vec![
            rcgen::SanType::DnsName("a b.dev.example".try_into().unwrap()),
            rcgen::SanType::URI("urn:dev:serial:a b".try_into().unwrap()),
        ];
        let found = findings(&sign(&f, &p), true);
        assert!(
            found
                .iter()
                .any(|s| s.contains("dNSName 'a b.dev.example'")),
            "{found:?}"
        );
        assert!(found.iter().any(|s| s.contains("RFC 3986")), "{found:?}");
    }

    #[test]
    fn garbage_does_not_parse() {
        let found = lint_certificate(b"junk", &expectations(true))
            .unwrap_err()
            .findings;
        assert!(found[0].contains("does not parse"), "{found:?}");
    }
}
