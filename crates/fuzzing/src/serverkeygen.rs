//! `serverkeygen`: the multipart answer to EST `serverkeygen` as the factory client reads
//! it ([`fleetca_agent::serverkeygen_parts`]). Input: the `Content-Type` header value, a
//! line feed, the body.

use fleetca_agent::serverkeygen_parts;

use crate::fixed;

/// The target.
pub fn run(data: &[u8]) {
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            data.get(..i).unwrap_or_default(),
            data.get(i + 1..).unwrap_or_default(),
        ),
        None => (data, &[][..]),
    };
    let content_type = String::from_utf8_lossy(content_type);
    if let Ok((key, certificates)) = serverkeygen_parts(&content_type, body) {
        let _ = fleetca_pki::SoftwareKey::from_pkcs8_der(&key);
        for der in certificates {
            let _ = fleetca_pki::CertificateInfo::from_der(&der);
        }
    }
}

/// The multipart body the EST server writes (`crates/est/src/wire.rs`), with a quoted
/// boundary, with the parts swapped, and without the key.
pub fn seeds() -> Vec<Vec<u8>> {
    let Some(pki) = fixed::pki() else {
        return Vec::new();
    };
    let Ok(certs) = fleetca_pki::certs_only(&[&pki.device_certificate]) else {
        return Vec::new();
    };
    let key = fleetca_pki::base64_lines(&pki.device_key.pkcs8_der()).replace('\n', "\r\n");
    let certs = fleetca_pki::base64_lines(&certs).replace('\n', "\r\n");
    let part = |ct: &str, b64: &str| {
        format!(
            "--B\r\nContent-Type: {ct}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            b64.trim_end()
        )
    };
    let key_part = part("application/pkcs8", &key);
    let cert_part = part("application/pkcs7-mime; smime-type=certs-only", &certs);
    [
        format!("multipart/mixed; boundary=B\n{key_part}{cert_part}--B--\r\n"),
        format!("multipart/mixed; boundary=\"B\"\n{cert_part}{key_part}--B--\r\n"),
        format!("multipart/mixed; boundary=B\n{cert_part}--B--\r\n"),
        "application/pkcs7-mime\nAAAA".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}
