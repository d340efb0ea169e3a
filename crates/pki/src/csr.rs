use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry as oids;
use x509_parser::prelude::FromDer;

use crate::name::{display_name, name_attributes, render_general_name, NameAttribute};
use crate::{CsrError, PublicKeyKind, SERIAL_NUMBER_OID};

/// A PKCS#10 certificate signing request whose signature has been verified (proof of
/// possession of the private key). Only the fields policy looks at are kept; nothing from
/// here is copied into a certificate except the public key.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    subject: Vec<NameAttribute>,
    spki_der: Vec<u8>,
    key_kind: PublicKeyKind,
    signature_algorithm: String,
    challenge_password: Option<String>,
    extensions: RequestedExtensions,
}

/// What the request asks for in its extensionRequest attribute.
///
/// Clients commonly copy the current certificate's extensions into a renewal request
/// (authorityKeyIdentifier, cRLDistributionPoints, ...). The profile decides every
/// extension of the certificate, so such requests are harmless unless they ask for more
/// than the profile grants: the RA compares `ca`, `subject_alt_names`, `key_usages` and
/// `extended_key_usages` with the profile, refuses `unknown_critical`, and records
/// `ignored`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestedExtensions {
    /// basicConstraints with `cA` true was requested.
    pub ca: bool,
    /// subjectAltName entries, rendered as `DNS:x`, `URI:y`, ...
    pub subject_alt_names: Vec<String>,
    /// Requested keyUsage bits by RFC 5280 name (`digitalSignature`, `keyEncipherment`, ...).
    pub key_usages: Vec<String>,
    /// Requested extendedKeyUsage purposes by name (`clientAuth`, `serverAuth`, ...) or as
    /// a dotted OID when fleetca has no name for it.
    pub extended_key_usages: Vec<String>,
    /// Extensions whose values the CA decides itself and which are therefore ignored
    /// (by name, or dotted OID for unknown non-critical extensions), in request order.
    pub ignored: Vec<String>,
    /// Dotted OIDs of unknown extensions marked critical: the request cannot be honoured
    /// as asked, so it is refused.
    pub unknown_critical: Vec<String>,
}

const ACCEPTED_SIGNATURES: &[(&str, &str)] = &[
    ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256"),
    ("1.2.840.10045.4.3.3", "ecdsa-with-SHA384"),
    ("1.2.840.113549.1.1.11", "sha256WithRSAEncryption"),
    ("1.2.840.113549.1.1.12", "sha384WithRSAEncryption"),
    ("1.2.840.113549.1.1.13", "sha512WithRSAEncryption"),
    ("1.2.840.113549.1.1.10", "RSASSA-PSS"),
    ("1.3.101.112", "Ed25519"),
];

impl CertificateRequest {
    /// Parses DER, checks the signature algorithm is acceptable (no SHA-1) and verifies the
    /// signature with the request's own key.
    pub fn from_der(der: &[u8]) -> Result<Self, CsrError> {
        let (rest, csr) = X509CertificationRequest::from_der(der)
            .map_err(|e| CsrError::NotACsr(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CsrError::TrailingData);
        }
        // The algorithm first, then the key, then the algorithm's parameters: a request
        // with an unsupported key is refused for its key, whatever its PSS parameters.
        let signature_algorithm = accepted_signature_name(&csr.signature_algorithm)?;
        let info = &csr.certification_request_info;
        let key_kind =
            PublicKeyKind::of_parsed_spki(&info.subject_pki).map_err(CsrError::UnsupportedKey)?;
        // The verifier refuses these before looking at the signature: say why, rather than
        // "proof of possession failed".
        if let PublicKeyKind::Rsa { bits } = key_kind {
            if bits < 2048 {
                return Err(CsrError::KeyTooSmall { bits });
            }
        }
        check_signature_parameters(&csr.signature_algorithm)?;
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;

        let subject = name_attributes(&info.subject).map_err(CsrError::MalformedAttribute)?;
        let mut challenge_password = None;
        let mut extensions = RequestedExtensions::default();
        for attr in info.iter_attributes() {
            match attr.parsed_attribute() {
                ParsedCriAttribute::ChallengePassword(p) => {
                    challenge_password = Some(p.0.clone());
                }
                ParsedCriAttribute::ExtensionRequest(req) => {
                    for ext in &req.extensions {
                        classify_extension(ext, &mut extensions)?;
                    }
                }
                ParsedCriAttribute::UnsupportedAttribute => {}
            }
        }
        refuse_control_characters(&subject, &extensions.subject_alt_names)?;
        Ok(Self {
            subject,
            spki_der: info.subject_pki.raw.to_vec(),
            key_kind,
            signature_algorithm,
            challenge_password,
            extensions,
        })
    }

    /// A request read from another format (CRMF, see `crmf.rs`), proof of possession
    /// already checked.
    pub(crate) fn from_parts(
        subject: Vec<NameAttribute>,
        spki_der: Vec<u8>,
        key_kind: PublicKeyKind,
        signature_algorithm: String,
        extensions: RequestedExtensions,
    ) -> Self {
        Self {
            subject,
            spki_der,
            key_kind,
            signature_algorithm,
            challenge_password: None,
            extensions,
        }
    }

    /// Subject attributes as requested.
    pub fn subject(&self) -> &[NameAttribute] {
        &self.subject
    }

    /// The subject as people read it.
    pub fn subject_display(&self) -> String {
        display_name(&self.subject)
    }

    /// The requested `serialNumber` subject attribute, if any.
    pub fn subject_serial_number(&self) -> Option<&str> {
        self.subject
            .iter()
            .find(|a| a.oid == SERIAL_NUMBER_OID)
            .map(|a| a.value.as_str())
    }

    /// DER SubjectPublicKeyInfo: the only thing copied into the certificate.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The kind and size of the public key.
    pub fn key_kind(&self) -> PublicKeyKind {
        self.key_kind
    }

    /// Name of the signature algorithm.
    pub fn signature_algorithm(&self) -> &str {
        &self.signature_algorithm
    }

    /// The challengePassword attribute (used for the RFC 9266 tls-exporter binding).
    pub fn challenge_password(&self) -> Option<&str> {
        self.challenge_password.as_deref()
    }

    /// What the request asks for in extensions.
    pub fn requested_extensions(&self) -> &RequestedExtensions {
        &self.extensions
    }
}

/// The name of an accepted signature algorithm (no SHA-1; RSASSA-PSS with matching
/// parameters only).
pub(crate) fn accepted_signature(
    algorithm: &x509_parser::x509::AlgorithmIdentifier<'_>,
) -> Result<String, CsrError> {
    let name = accepted_signature_name(algorithm)?;
    check_signature_parameters(algorithm)?;
    Ok(name)
}

/// The name of an accepted signature algorithm, parameters not yet checked.
fn accepted_signature_name(
    algorithm: &x509_parser::x509::AlgorithmIdentifier<'_>,
) -> Result<String, CsrError> {
    let sig_oid = algorithm.algorithm.to_id_string();
    ACCEPTED_SIGNATURES
        .iter()
        .find(|(oid, _)| *oid == sig_oid)
        .map(|(_, name)| (*name).to_string())
        .ok_or_else(|| CsrError::UnsupportedSignatureAlgorithm(describe_oid(&sig_oid)))
}

/// RSASSA-PSS only with matching parameters (the other accepted algorithms have none to
/// check).
fn check_signature_parameters(
    algorithm: &x509_parser::x509::AlgorithmIdentifier<'_>,
) -> Result<(), CsrError> {
    if algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.10" {
        check_pss_parameters(algorithm)?;
    }
    Ok(())
}

/// Reads a DER `Extensions` (SEQUENCE OF Extension) as a request's extensions.
pub(crate) fn classify_extensions(
    der: &[u8],
    out: &mut RequestedExtensions,
) -> Result<(), CsrError> {
    use x509_parser::der_parser::asn1_rs::{FromDer as _, Sequence};
    let (rest, sequence) = Sequence::from_der(der)
        .map_err(|e| CsrError::MalformedAttribute(format!("extensions: {e}")))?;
    if !rest.is_empty() {
        return Err(CsrError::TrailingData);
    }
    let mut input: &[u8] = &sequence.content;
    while !input.is_empty() {
        let (next, ext) = x509_parser::extensions::X509Extension::from_der(input)
            .map_err(|e| CsrError::MalformedAttribute(format!("extension: {e}")))?;
        classify_extension(&ext, out)?;
        input = next;
    }
    Ok(())
}

/// Requested names with control characters are refused (they would forge log lines and
/// act on operators' terminals; no device needs them).
pub(crate) fn refuse_control_characters(
    subject: &[NameAttribute],
    subject_alt_names: &[String],
) -> Result<(), CsrError> {
    let named = subject
        .iter()
        .map(|a| (format!("subject {}", a.short_name()), a.value.as_str()))
        .chain(
            subject_alt_names
                .iter()
                .map(|n| ("subjectAltName".to_string(), n.as_str())),
        );
    for (field, value) in named {
        if let Some(c) = crate::first_control(value) {
            return Err(CsrError::ControlCharacter {
                field: format!("{field} '{}'", crate::escape_controls(value)),
                character: c.escape_default().to_string(),
            });
        }
    }
    Ok(())
}

fn classify_extension(
    ext: &x509_parser::extensions::X509Extension<'_>,
    out: &mut RequestedExtensions,
) -> Result<(), CsrError> {
    let oid = ext.oid.to_id_string();
    let ignored = match ext.parsed_extension() {
        ParsedExtension::BasicConstraints(bc) => {
            out.ca |= bc.ca;
            "basicConstraints"
        }
        ParsedExtension::SubjectAlternativeName(san) => {
            out.subject_alt_names
                .extend(san.general_names.iter().map(render_general_name));
            return Ok(());
        }
        ParsedExtension::KeyUsage(ku) => {
            out.key_usages.extend(
                KEY_USAGE_BITS
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| (ku.flags >> bit) & 1 == 1)
                    .map(|(_, name)| (*name).to_string()),
            );
            "keyUsage"
        }
        ParsedExtension::ExtendedKeyUsage(eku) => {
            out.extended_key_usages
                .extend(extended_key_usage_names(eku));
            "extendedKeyUsage"
        }
        ParsedExtension::SubjectKeyIdentifier(_) => "subjectKeyIdentifier",
        ParsedExtension::AuthorityKeyIdentifier(_) => "authorityKeyIdentifier",
        ParsedExtension::CRLDistributionPoints(_) => "cRLDistributionPoints",
        ParsedExtension::AuthorityInfoAccess(_) => "authorityInfoAccess",
        ParsedExtension::CertificatePolicies(_) => "certificatePolicies",
        ParsedExtension::NSCertType(_) => "nsCertType",
        ParsedExtension::NsCertComment(_) => "nsComment",
        ParsedExtension::ParseError { error } => {
            return Err(CsrError::MalformedAttribute(format!(
                "extension {oid}: {error}"
            )))
        }
        _ if ext.critical => {
            out.unknown_critical.push(oid);
            return Ok(());
        }
        _ => {
            out.ignored.push(oid);
            return Ok(());
        }
    };
    out.ignored.push(ignored.to_string());
    Ok(())
}

/// RSASSA-PSS as aws-lc-rs verifies it: SHA-256/384/512, MGF1 with the same hash, salt as
/// long as the hash (OpenSSL's default salt is the longest possible, which fails).
fn check_pss_parameters(
    algorithm: &x509_parser::x509::AlgorithmIdentifier<'_>,
) -> Result<(), CsrError> {
    use x509_parser::signature_algorithm::SignatureAlgorithm;
    let Ok(SignatureAlgorithm::RSASSA_PSS(params)) = SignatureAlgorithm::try_from(algorithm) else {
        return Err(CsrError::UnsupportedPssParameters(
            "missing or malformed parameters".into(),
        ));
    };
    let hash = params.hash_algorithm_oid().to_id_string();
    let (name, length) = match hash.as_str() {
        "2.16.840.1.101.3.4.2.1" => ("SHA-256".to_string(), 32),
        "2.16.840.1.101.3.4.2.2" => ("SHA-384".to_string(), 48),
        "2.16.840.1.101.3.4.2.3" => ("SHA-512".to_string(), 64),
        "1.3.14.3.2.26" => ("SHA-1".to_string(), 0),
        _ => (format!("hash {hash}"), 0),
    };
    let mgf_hash = params
        .mask_gen_algorithm()
        .map(|m| m.hash.to_id_string())
        .unwrap_or_default();
    let salt = params.salt_length();
    if length == 0 || mgf_hash != hash || salt != length {
        let mgf = if mgf_hash == hash {
            name.as_str()
        } else {
            "another hash"
        };
        return Err(CsrError::UnsupportedPssParameters(format!(
            "{name}, MGF1 with {mgf}, salt length {salt}"
        )));
    }
    Ok(())
}

/// keyUsage bit names, by bit number (RFC 5280 section 4.2.1.3).
const KEY_USAGE_BITS: [&str; 9] = [
    "digitalSignature",
    "contentCommitment",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];

fn extended_key_usage_names(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<String> {
    let named = [
        (eku.any, "anyExtendedKeyUsage"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ];
    named
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| (*name).to_string())
        .chain(eku.other.iter().map(|o| o.to_id_string()))
        .collect()
}

fn describe_oid(oid: &str) -> String {
    let known = [
        (
            oids::OID_PKCS1_SHA1WITHRSA.to_id_string(),
            "sha1WithRSAEncryption",
        ),
        ("1.2.840.10045.4.1".to_string(), "ecdsa-with-SHA1"),
        (
            oids::OID_PKCS1_MD5WITHRSAENC.to_id_string(),
            "md5WithRSAEncryption",
        ),
    ];
    known
        .iter()
        .find(|(o, _)| o == oid)
        .map(|(_, n)| format!("{n} ({oid})"))
        .unwrap_or_else(|| oid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;
    use rcgen::{CustomExtension, DistinguishedName, DnType};

    fn subject(serial: &str) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, serial);
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), serial);
        dn
    }

    #[test]
    fn a_good_request_verifies_and_exposes_what_policy_needs() {
        for alg in [
            KeyAlgorithm::P256,
            KeyAlgorithm::P384,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::Rsa2048,
        ] {
            let key = alg.generate().unwrap();
            let der = key
                .certificate_request(subject("SN-1"), vec![], &[])
                .unwrap();
            let csr = CertificateRequest::from_der(&der).unwrap();
            assert_eq!(csr.key_kind(), alg.public_key_kind());
            assert_eq!(csr.subject_serial_number(), Some("SN-1"));
            assert_eq!(csr.spki_der(), key.public_key_der());
            assert_eq!(csr.subject_display(), "CN=SN-1, serialNumber=SN-1");
            assert_eq!(csr.requested_extensions(), &RequestedExtensions::default());
        }
    }

    #[test]
    fn a_flipped_signature_bit_fails_proof_of_possession() {
        let key = KeyAlgorithm::P256.generate().unwrap();
        let mut der = key
            .certificate_request(subject("SN-1"), vec![], &[])
            .unwrap();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert_eq!(
            CertificateRequest::from_der(&der).unwrap_err(),
            CsrError::BadSignature
        );
    }

    #[test]
    fn control_characters_in_requested_names_are_refused_and_shown_escaped() {
        let key = KeyAlgorithm::P256.generate().unwrap();
        for (value, shown) in [
            ("SN-1\r\nforged", "\\r"),
            ("\u{1b}[31mred", "\\u{1b}"),
            ("nul\0", "\\u{0}"),
            ("c1\u{85}", "\\u{85}"),
        ] {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, value);
            let der = key.certificate_request(dn, vec![], &[]).unwrap();
            let err = CertificateRequest::from_der(&der).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, CsrError::ControlCharacter { .. }), "{text}");
            assert!(
                text.contains(shown) && text.contains("subject CN"),
                "{text}"
            );
            assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
        }
    }

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        assert!(matches!(
            CertificateRequest::from_der(b"hello"),
            Err(CsrError::NotACsr(_))
        ));
        assert!(matches!(
            CertificateRequest::from_der(&[]),
            Err(CsrError::NotACsr(_))
        ));
        let key = KeyAlgorithm::P256.generate().unwrap();
        let mut der = key
            .certificate_request(subject("SN-1"), vec![], &[])
            .unwrap();
        der.push(0);
        assert_eq!(
            CertificateRequest::from_der(&der).unwrap_err(),
            CsrError::TrailingData
        );
    }

    #[test]
    fn requested_ca_names_and_extensions_are_reported() {
        let key = KeyAlgorithm::P256.generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        params.distinguished_name = subject("SN-1");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.custom_extensions =
            vec![CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0])];
        let kp = rcgen::KeyPair::from_pem(&key.to_pkcs8_pem()).unwrap();
        let der = params.serialize_request(&kp).unwrap().der().to_vec();
        let csr = CertificateRequest::from_der(&der).unwrap();
        let ext = csr.requested_extensions();
        assert!(ext.ca);
        assert_eq!(ext.subject_alt_names, vec!["DNS:evil.example".to_string()]);
        assert_eq!(ext.ignored, vec!["basicConstraints", "1.2.3.4"]);
        assert!(ext.unknown_critical.is_empty());
    }

    #[test]
    fn copied_certificate_extensions_are_classified_not_refused() {
        let key = KeyAlgorithm::P256.generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.distinguished_name = subject("SN-1");
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            rcgen::ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 4, 1, 99]),
        ];
        // rcgen cannot put cRLDistributionPoints in a CSR: DistributionPoint with the URI
        // http://x, as DER.
        let mut crldp = b"\x30\x10\x30\x0e\xa0\x0c\xa0\x0a\x86\x08".to_vec();
        crldp.extend_from_slice(b"http://x");
        let mut critical = CustomExtension::from_oid_content(&[1, 2, 3, 5], vec![5, 0]);
        critical.set_criticality(true);
        params.custom_extensions = vec![
            CustomExtension::from_oid_content(&[2, 5, 29, 31], crldp),
            critical,
        ];
        let kp = rcgen::KeyPair::from_pem(&key.to_pkcs8_pem()).unwrap();
        let der = params.serialize_request(&kp).unwrap().der().to_vec();
        let ext = CertificateRequest::from_der(&der)
            .unwrap()
            .requested_extensions()
            .clone();
        assert!(!ext.ca);
        assert_eq!(ext.key_usages, vec!["digitalSignature", "keyAgreement"]);
        assert_eq!(
            ext.extended_key_usages,
            vec!["clientAuth", "1.3.6.1.4.1.99"]
        );
        for name in [
            "keyUsage",
            "extendedKeyUsage",
            "basicConstraints",
            "cRLDistributionPoints",
        ] {
            assert!(ext.ignored.iter().any(|i| i == name), "{name}: {ext:?}");
        }
        assert_eq!(ext.unknown_critical, vec!["1.2.3.5"]);
    }

    #[test]
    fn the_rfc7030_example_request_is_parsed_but_its_sha1_signature_is_refused() {
        let der =
            include_bytes!("../../../testdata/rfc7030/rfc7030-A.3-simpleenroll-request.csr.der");
        match CertificateRequest::from_der(der) {
            Err(CsrError::UnsupportedSignatureAlgorithm(name)) => {
                assert!(name.contains("sha1WithRSAEncryption"), "{name}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
