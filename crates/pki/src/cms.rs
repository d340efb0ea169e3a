//! CMS certs-only ("degenerate" SignedData, RFC 5652 / RFC 7030 §4.1.3): the EST wire
//! format for certificates.

use base64::Engine;
use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use der::asn1::SetOfVec;
use der::{Decode, Encode};

use crate::PkiError;

const ID_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");

/// Encodes certificates (DER) as a certs-only CMS SignedData, DER. The SET OF is sorted as
/// DER requires, so clients must not rely on the order (RFC 7030 does not promise one).
pub fn certs_only(certificates: &[&[u8]]) -> Result<Vec<u8>, PkiError> {
    let enc = |e: der::Error| PkiError::Encoding(format!("CMS: {e}"));
    let choices = certificates
        .iter()
        .map(|der| {
            x509_cert::Certificate::from_der(der)
                .map(CertificateChoices::Certificate)
                .map_err(|e| PkiError::MalformedCertificate(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(SetOfVec::try_from(choices).map_err(enc)?)),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    let info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: der::Any::encode_from(&signed).map_err(enc)?,
    };
    info.to_der().map_err(enc)
}

/// Extracts the certificates (DER) from a certs-only CMS message.
pub fn parse_certs_only(message: &[u8]) -> Result<Vec<Vec<u8>>, PkiError> {
    let bad = |e: der::Error| PkiError::MalformedCertificate(format!("CMS certs-only: {e}"));
    let info = ContentInfo::from_der(message).map_err(bad)?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(PkiError::MalformedCertificate(format!(
            "CMS content type is {}, not signedData",
            info.content_type
        )));
    }
    let signed: SignedData = info.content.decode_as().map_err(bad)?;
    let mut out = Vec::new();
    for choice in signed.certificates.iter().flat_map(|set| set.0.iter()) {
        if let CertificateChoices::Certificate(cert) = choice {
            out.push(cert.to_der().map_err(bad)?);
        }
    }
    Ok(out)
}

/// base64 (standard alphabet, padded) with a line break after every 64 characters: the
/// body of PEM and of EST messages.
pub fn base64_lines(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 1);
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// PEM encoding of a DER certificate.
pub fn pem_certificate(der: &[u8]) -> String {
    format!(
        "-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----\n",
        base64_lines(der)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_only_round_trips_our_own_certificates() {
        let key = crate::KeyAlgorithm::P256.generate().unwrap();
        let root = crate::CaCertificate::root(
            &key,
            &crate::HierarchyParams::new("Test"),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let msg = certs_only(&[&root.der]).unwrap();
        assert_eq!(parse_certs_only(&msg).unwrap(), vec![root.der.clone()]);
    }

    #[test]
    fn the_rfc7030_simpleenroll_response_decodes() {
        let der = include_bytes!("../../../testdata/rfc7030/rfc7030-A.3-simpleenroll-response.der");
        let certs = parse_certs_only(der).unwrap();
        assert_eq!(certs.len(), 1);
        crate::CertificateInfo::from_der(&certs[0]).unwrap();
    }

    #[test]
    fn garbage_and_other_content_types_are_refused() {
        assert!(parse_certs_only(b"\x30\x03\x02\x01\x01").is_err());
        assert!(parse_certs_only(b"").is_err());
    }
}
