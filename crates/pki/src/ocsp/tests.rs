use std::sync::Arc;

use der::Decode;
use x509_ocsp::{OcspResponse, OcspResponseStatus};

use super::*;
use crate::*;

struct Fixture {
    ca: Issuer,
    responder: Arc<OcspResponder>,
}

fn fixture() -> Fixture {
    let now = OffsetDateTime::now_utc();
    let key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let root = CaCertificate::root(key.as_ref(), &HierarchyParams::new("T"), now).unwrap();
    let ca = Issuer::new("root", root.der.clone(), key).unwrap();
    let rkey = Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let rcert =
        ocsp_responder_certificate(&ca, &rkey.public_key_der(), time::Duration::days(30), now)
            .unwrap();
    let responder =
        Arc::new(OcspResponder::new("root", ca.certificate_der(), &rcert, rkey).unwrap());
    Fixture { ca, responder }
}

fn request(ca_der: &[u8], serial: &[u8], nonce: Option<&[u8]>) -> Vec<u8> {
    build_request(
        ca_der,
        &CertificateSerial::from_slice(serial).unwrap(),
        nonce,
    )
    .unwrap()
}

#[test]
fn good_revoked_and_unknown_answers_are_signed_by_the_responder() {
    let f = fixture();
    let serial = CertificateSerial::generate();
    let der = request(
        f.ca.certificate_der(),
        serial.as_bytes(),
        Some(b"0123456789abcdef"),
    );
    let query = parse_request(&der, std::slice::from_ref(&f.responder)).unwrap();
    assert_eq!(query.certificates[0].1, Some(serial));
    assert!(!query.cacheable());
    let now = OffsetDateTime::now_utc();
    for status in [
        OcspStatus::Good,
        OcspStatus::Unknown,
        OcspStatus::Revoked {
            at: now,
            reason: RevocationReason::KeyCompromise,
        },
    ] {
        let bytes = f
            .responder
            .respond(&query, &[status], now, now + time::Duration::hours(1))
            .unwrap();
        let summary = response_status_unverified(&bytes).unwrap();
        assert_eq!(
            matches!(summary, OcspStatus::Revoked { .. }),
            matches!(status, OcspStatus::Revoked { .. })
        );
        let resp = OcspResponse::from_der(&bytes).unwrap();
        assert_eq!(resp.response_status, OcspResponseStatus::Successful);
        let basic =
            BasicOcspResponse::from_der(resp.response_bytes.unwrap().response.as_bytes()).unwrap();
        assert!(basic.nonce().is_some(), "nonce echoed");
        let single = &basic.tbs_response_data.responses[0];
        match (status, single.cert_status) {
            (OcspStatus::Good, CertStatus::Good(_))
            | (OcspStatus::Unknown, CertStatus::Unknown(_)) => {}
            (OcspStatus::Revoked { .. }, CertStatus::Revoked(info)) => {
                assert_eq!(
                    info.revocation_reason,
                    Some(x509_cert::ext::pkix::crl::CrlReason::KeyCompromise)
                )
            }
            other => panic!("{other:?}"),
        }
        // The signature verifies with the responder certificate's key.
        let tbs = der::Encode::to_der(&basic.tbs_response_data).unwrap();
        let cert = &basic.certs.as_ref().unwrap()[0];
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            spki,
        )
        .verify(&tbs, basic.signature.raw_bytes())
        .unwrap();
    }
}

#[test]
fn garbage_and_foreign_cas_are_refused_without_panicking() {
    let f = fixture();
    let responders = [Arc::clone(&f.responder)];
    assert!(matches!(
        parse_request(b"garbage", &responders),
        Err(OcspRequestError::Malformed(_))
    ));
    assert!(matches!(
        parse_request(&[], &responders),
        Err(OcspRequestError::Malformed(_))
    ));
    let other = fixture();
    let der = request(other.ca.certificate_der(), &[1, 2, 3], None);
    assert_eq!(
        parse_request(&der, &responders).unwrap_err(),
        OcspRequestError::Unauthorized
    );
    let malformed = ocsp_error_response(&OcspRequestError::Malformed("x".into()));
    assert_eq!(
        OcspResponse::from_der(&malformed).unwrap().response_status,
        OcspResponseStatus::MalformedRequest
    );
    assert_eq!(
        OcspResponse::from_der(&ocsp_try_later())
            .unwrap()
            .response_status,
        OcspResponseStatus::TryLater
    );
}

#[test]
fn responder_certificates_carry_ocsp_signing_and_nocheck() {
    let f = fixture();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let der = ocsp_responder_certificate(
        &f.ca,
        &key.public_key_der(),
        time::Duration::days(30),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.ocsp_signing && !eku.client_auth);
    assert!(cert
        .extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5"));
    assert!(cert.subject().to_string().contains("OCSP Responder"));
}
