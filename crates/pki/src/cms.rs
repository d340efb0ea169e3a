//! CMS certs-only ("degenerate" SignedData, RFC 5652 / RFC 7030 §4.1.3): the EST wire
//! format for certificates.

use base64::Engine;
use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{EncapsulatedContentInfo, SignedData};
use der::asn1::SetOfVec;
use der::{Decode, Encode};

use crate::PkiError;

const ID_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");

/// RFC 5652 SignedData with its certificates kept as encoded: a certs-only message wraps
/// certificates without decoding them (the `cms` crate's `SignedData` holds them decoded,
/// and decoding an issued certificate to re-encode it was ~4% of a renewal's server CPU).
#[derive(der::Sequence)]
struct CertsOnlySignedData<'a> {
    version: CmsVersion,
    digest_algorithms: SetOfVec<der::asn1::AnyRef<'a>>,
    encap_content_info: EncapsulatedContentInfo,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    certificates: SetOfVec<der::asn1::AnyRef<'a>>,
    signer_infos: SetOfVec<der::asn1::AnyRef<'a>>,
}

/// Encodes certificates (DER) as a certs-only CMS SignedData, DER. The SET OF is sorted as
/// DER requires, so clients must not rely on the order (RFC 7030 does not promise one).
/// Each certificate must be one DER value (a SEQUENCE); its contents are not parsed.
pub fn certs_only(certificates: &[&[u8]]) -> Result<Vec<u8>, PkiError> {
    let enc = |e: der::Error| PkiError::Encoding(format!("CMS: {e}"));
    let certificates = certificates
        .iter()
        .map(|der| {
            der::asn1::AnyRef::from_der(der)
                .ok()
                .filter(|c| der::Tagged::tag(c) == der::Tag::Sequence)
                .ok_or_else(|| {
                    PkiError::MalformedCertificate("not a DER certificate (SEQUENCE)".into())
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signed = CertsOnlySignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: SetOfVec::try_from(certificates).map_err(enc)?,
        signer_infos: SetOfVec::new(),
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
    use cms::signed_data::{CertificateSet, SignerInfos};

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

    /// One certificate wrapped as encoded gives the same bytes as the `cms` crate's typed
    /// SignedData with the certificate decoded.
    #[test]
    fn certs_only_encodes_as_the_typed_cms_signed_data() {
        let key = crate::KeyAlgorithm::P256.generate().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let der = crate::CaCertificate::root(&key, &crate::HierarchyParams::new("T"), now)
            .unwrap()
            .der;
        let choice =
            CertificateChoices::Certificate(x509_cert::Certificate::from_der(&der).unwrap());
        let typed = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::new(),
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent: None,
            },
            certificates: Some(CertificateSet(SetOfVec::try_from(vec![choice]).unwrap())),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::new()),
        };
        let expected = ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: der::Any::encode_from(&typed).unwrap(),
        }
        .to_der()
        .unwrap();
        assert_eq!(certs_only(&[&der]).unwrap(), expected);
    }

    /// Several certificates: all of them, in the order X.690 §11.6 gives a DER SET OF
    /// (ascending encodings), whatever the order asked. (The typed `SetOfVec` of decoded
    /// certificates orders them by their fields, which need not be that order.)
    #[test]
    fn certs_only_sorts_several_certificates_by_their_encoding() {
        let now = time::OffsetDateTime::now_utc();
        let ders: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                let key = crate::KeyAlgorithm::P256.generate().unwrap();
                let name = format!("CA {i}");
                crate::CaCertificate::root(&key, &crate::HierarchyParams::new(&name), now)
                    .unwrap()
                    .der
            })
            .collect();
        let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
        let message = certs_only(&refs).unwrap();
        // The certificates as they are on the wire: the [0] field's contents, one by one.
        #[derive(der::Sequence)]
        struct Raw<'a> {
            version: CmsVersion,
            digest_algorithms: der::asn1::AnyRef<'a>,
            encap_content_info: der::asn1::AnyRef<'a>,
            certificates: der::asn1::AnyRef<'a>,
            signer_infos: der::asn1::AnyRef<'a>,
        }
        let info = ContentInfo::from_der(&message).unwrap();
        let raw: Raw<'_> = info.content.decode_as().unwrap();
        let mut reader = der::SliceReader::new(raw.certificates.value()).unwrap();
        let mut wire = Vec::new();
        while !der::Reader::is_finished(&reader) {
            let cert: der::asn1::AnyRef<'_> = der::Decode::decode(&mut reader).unwrap();
            wire.push(cert.to_der().unwrap());
        }
        let mut sorted = ders.clone();
        sorted.sort();
        assert_eq!(wire, sorted);
        let mut back = parse_certs_only(&message).unwrap();
        back.sort();
        assert_eq!(back, sorted);
        let reversed: Vec<&[u8]> = refs.iter().rev().copied().collect();
        assert_eq!(certs_only(&reversed).unwrap(), certs_only(&refs).unwrap());
    }

    #[test]
    fn certs_only_refuses_what_is_not_one_der_sequence() {
        for bad in [
            &b""[..],
            b"\x02\x01\x01",
            b"\x30\x03\x02\x01\x01\x00",
            b"\x30\x05",
        ] {
            assert!(certs_only(&[bad]).is_err(), "{bad:?}");
        }
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
