//! The `serverkeygen` answer (RFC 7030 §4.4.2): a `multipart/mixed` body with the private
//! key (`application/pkcs8`) and the certificate (`application/pkcs7-mime`
//! certs-only), each base64. The device agent generates its own keys; this parser serves the
//! factory client (`fleetca factory provision --server-keygen`) and lives here, with the
//! other EST client code, so that it can be fuzzed (`fuzz/`, target `serverkeygen`).

use base64::Engine;

use crate::est::certificates;
use crate::AgentError;

/// The private key (PKCS#8 DER) and certificates of a `serverkeygen` multipart answer
/// whose `Content-Type` header is `content_type`.
pub fn serverkeygen_parts(
    content_type: &str,
    body: &[u8],
) -> Result<(Vec<u8>, Vec<Vec<u8>>), AgentError> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(|| AgentError::Protocol(format!("answer is not multipart: {content_type}")))?;
    let text = std::str::from_utf8(body)
        .map_err(|_| AgentError::Protocol("multipart answer is not text".into()))?;
    let mut key = None;
    let mut certs = None;
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let head = head.to_ascii_lowercase();
        if head.contains("application/pkcs8") {
            key = Some(decode_base64(content.as_bytes())?);
        } else if head.contains("application/pkcs7-mime") {
            certs = Some(certificates(content.as_bytes())?);
        }
    }
    match (key, certs) {
        (Some(k), Some(c)) => Ok((k, c)),
        _ => Err(AgentError::Protocol(
            "multipart answer lacks the key or the certificate".into(),
        )),
    }
}

/// Base64 with the line breaks of RFC 2045 (any ASCII white space) ignored.
pub(crate) fn decode_base64(body: &[u8]) -> Result<Vec<u8>, AgentError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| AgentError::Protocol(format!("response is not base64: {e}")))
}
