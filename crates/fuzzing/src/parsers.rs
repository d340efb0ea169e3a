//! The first three targets: certificates (client and stored), certs-only bodies, EST
//! request bodies (base64, then the CSR parser).

use fleetca_pki::{
    base64_lines, certs_only as encode_certs_only, parse_certs_only, CertificateInfo,
    CertificateRequest,
};

use crate::fixed;

/// A DER certificate, as a client presents it or the store returns it.
pub fn certificate(data: &[u8]) {
    if let Ok(info) = CertificateInfo::from_der(data) {
        let _ = info.subject_display();
        let _ = info.device_serial();
    }
}

/// The fixed PKI's certificates.
pub fn certificate_seeds() -> Vec<Vec<u8>> {
    let Some(pki) = fixed::pki() else {
        return Vec::new();
    };
    vec![
        pki.root.certificate_der().to_vec(),
        pki.next_root.certificate_der().to_vec(),
        pki.operational.certificate_der().to_vec(),
        pki.device_certificate.clone(),
    ]
}

/// A DER CMS certs-only message (EST responses as a client reads them).
pub fn certs_only(data: &[u8]) {
    if let Ok(certificates) = parse_certs_only(data) {
        for der in certificates {
            certificate(&der);
        }
    }
}

/// Certs-only messages of one, two and four certificates.
pub fn certs_only_seeds() -> Vec<Vec<u8>> {
    let certs = certificate_seeds();
    let refs: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
    [1, 2, refs.len()]
        .iter()
        .filter_map(|&n| encode_certs_only(refs.get(..n)?).ok())
        .collect()
}

/// An EST request body: base64 with line breaks, then the CSR parser.
pub fn est_body(data: &[u8]) {
    if let Ok(der) = fleetca_est::decode_request_body(data) {
        let _ = CertificateRequest::from_der(&der);
    }
}

/// Base64 bodies of signed CSRs (the device key's, with a serialNumber and a SAN, and
/// with an empty subject), in lines of 64 (LF and CRLF) and in one line.
pub fn est_body_seeds() -> Vec<Vec<u8>> {
    use base64::Engine;
    crate::csr::example_requests()
        .iter()
        .flat_map(|der| {
            let lines = base64_lines(der);
            [
                lines.replace('\n', "\r\n").into_bytes(),
                base64::engine::general_purpose::STANDARD
                    .encode(der)
                    .into_bytes(),
                lines.into_bytes(),
            ]
        })
        .collect()
}
