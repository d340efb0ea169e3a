//! `ocsp_request` and `ocsp_get`: OCSP requests as the responder receives them, against
//! two fixed CAs (see [`crate::fixed`]) so that requests can name them and reach
//! `respond()`; every signed answer is parsed back. `ocsp_get` first runs the `GET
//! /ocsp/<url-encoded base64>` front end that anyone can reach without logging in.

use der::{Decode, Encode};
use fleetca_pki::{
    build_ocsp_request, ocsp_error_response, ocsp_response_status, parse_ocsp_request,
    CertificateSerial, OcspStatus, RevocationReason,
};
use time::{Duration, OffsetDateTime};
use x509_ocsp::{BasicOcspResponse, OcspResponse};

use crate::fixed;

/// The status the fuzz responder gives a serial: good, revoked, on hold or unknown, by
/// the serial's last byte (the inventory lookup is the store's business, not a parser's).
fn status_of(serial: Option<&CertificateSerial>, now: OffsetDateTime) -> OcspStatus {
    match serial.and_then(|s| s.as_bytes().last()).map(|b| b % 4) {
        Some(0) => OcspStatus::Good,
        Some(1) => OcspStatus::Revoked {
            at: now - Duration::days(1),
            reason: RevocationReason::Unspecified,
        },
        Some(2) => OcspStatus::Revoked {
            at: now - Duration::hours(1),
            reason: RevocationReason::CertificateHold,
        },
        _ => OcspStatus::Unknown,
    }
}

/// What the responder does with a DER OCSP request (`Publisher::answer` without the
/// store and the cache): parse, find the CA, sign an answer that repeats the CertIDs and
/// the nonce; then the answer is read back as a client would.
pub fn answer(der: &[u8]) {
    let Some(pki) = fixed::pki() else {
        return;
    };
    let query = match parse_ocsp_request(der, &pki.responders) {
        Ok(q) => q,
        Err(e) => {
            let refusal = ocsp_error_response(&e);
            assert!(
                OcspResponse::from_der(&refusal).is_ok(),
                "an OCSP error response does not parse"
            );
            return;
        }
    };
    let _ = (query.cacheable(), query.shared_answer_key());
    let Some(responder) = pki.responders.get(query.responder) else {
        unreachable!("parse_ocsp_request returned responder {}", query.responder);
    };
    let now = OffsetDateTime::now_utc();
    let statuses: Vec<OcspStatus> = query
        .certificates
        .iter()
        .map(|(_, serial)| status_of(serial.as_ref(), now))
        .collect();
    let Ok(signed) = responder.respond(&query, &statuses, now, now + Duration::hours(1)) else {
        return;
    };
    // fleetca signed it: a client must be able to read it.
    if let Err(e) = ocsp_response_status(&signed) {
        unreachable!("a signed OCSP answer does not parse back: {e}");
    }
    let basic = OcspResponse::from_der(&signed)
        .ok()
        .and_then(|r| r.response_bytes)
        .and_then(|b| BasicOcspResponse::from_der(b.response.as_bytes()).ok());
    let Some(basic) = basic else {
        unreachable!("a signed OCSP answer holds no BasicOCSPResponse");
    };
    let data = &basic.tbs_response_data;
    assert_eq!(
        data.responses.len(),
        query.certificates.len(),
        "one SingleResponse per CertID asked"
    );
    for (single, (id, _)) in data.responses.iter().zip(&query.certificates) {
        assert!(
            single.cert_id.to_der().ok() == id.to_der().ok(),
            "the answer repeats the CertID as asked"
        );
    }
    let echoed = data
        .response_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id.to_string() == "1.3.6.1.5.5.7.48.1.2")
        .map(|e| e.extn_value.as_bytes().to_vec());
    assert_eq!(echoed, query.nonce, "the nonce is echoed as sent");
}

/// `ocsp_request`: a DER OCSP request (POST body).
pub fn request(data: &[u8]) {
    answer(data);
}

/// `ocsp_get`: the path after `/ocsp/` of a GET request (a URI path is ASCII), decoded as
/// the front end does, then answered like a POST body.
pub fn get(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = fleetca_publish::ocsp_get_request(path);
    answer(decoded.as_deref().unwrap_or_default());
}

/// Requests for both fixed CAs, with and without a nonce, for serials of every status;
/// and one for a CA the responder does not serve.
pub fn request_seeds() -> Vec<Vec<u8>> {
    let Some(pki) = fixed::pki() else {
        return Vec::new();
    };
    let mut seeds = Vec::new();
    let serials = [
        vec![0x10],
        vec![0x01, 0x02, 0x03, 0x41],
        vec![0x7f; 20],
        pki.device_info.serial.as_bytes().to_vec(),
    ];
    let cas = [
        pki.root.certificate_der(),
        pki.next_root.certificate_der(),
        pki.operational.certificate_der(),
    ];
    for ca in cas {
        for (i, bytes) in serials.iter().enumerate() {
            let Some(serial) = CertificateSerial::from_slice(bytes) else {
                continue;
            };
            let nonce = [0x5a; 16];
            let nonce = (i % 2 == 1).then_some(&nonce[..]);
            if let Ok(der) = build_ocsp_request(ca, &serial, nonce) {
                seeds.push(der);
            }
        }
    }
    seeds
}

/// The request seeds as GET paths: base64, percent-encoded as RFC 6960 Appendix A.1
/// clients send them (some escape only `/`, `+` and `=`; some nothing).
pub fn get_seeds() -> Vec<Vec<u8>> {
    use base64::Engine;
    let mut seeds = Vec::new();
    for (i, der) in request_seeds().iter().enumerate() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let path = if i % 2 == 0 {
            b64.replace('%', "%25")
                .replace('/', "%2F")
                .replace('+', "%2B")
                .replace('=', "%3D")
        } else {
            b64
        };
        seeds.push(path.into_bytes());
    }
    seeds
}
