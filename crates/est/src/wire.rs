//! EST message encoding (RFC 7030 §4, RFC 8951): base64 bodies, content types.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Response;

use fleetca_pki::base64_lines;

use crate::EstError;

/// Accepts padded and unpadded base64 (RFC 8951 asks for tolerance).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Checks the request's content type is `application/pkcs10` (parameters ignored).
pub(crate) fn require_pkcs10(headers: &HeaderMap) -> Result<(), EstError> {
    let value = headers
        .get(CONTENT_TYPE)
        .ok_or_else(|| {
            EstError::UnsupportedMediaType(
                "missing Content-Type; send the CSR as application/pkcs10".into(),
            )
        })?
        .to_str()
        .unwrap_or("");
    let media = value.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/pkcs10") {
        Ok(())
    } else {
        Err(EstError::UnsupportedMediaType(format!(
            "Content-Type '{media}' is not supported; send the CSR as application/pkcs10"
        )))
    }
}

/// Decodes a base64 request body (line breaks and surrounding whitespace allowed; a PEM
/// armour is tolerated) into DER.
pub fn decode_body(body: &[u8]) -> Result<Vec<u8>, EstError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        EstError::BadRequest(
            "request body is not base64 text (RFC 8951 requires base64-encoded DER)".into(),
        )
    })?;
    let mut cleaned = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") || line.starts_with("-----END ") {
            continue;
        }
        cleaned.extend(line.chars().filter(|c| !c.is_ascii_whitespace()));
    }
    if cleaned.is_empty() {
        return Err(EstError::BadRequest(
            "request body is empty; send a base64-encoded PKCS#10 CSR".into(),
        ));
    }
    LENIENT.decode(cleaned.as_bytes()).map_err(|e| {
        EstError::BadRequest(format!(
            "request body is not valid base64 ({e}); RFC 8951 requires base64-encoded DER"
        ))
    })
}

/// A 200 response with a base64 body of `content_type`.
pub(crate) fn base64_response(content_type: &'static str, der: &[u8]) -> Response<Full<Bytes>> {
    let body = base64_lines(der);
    let len = body.len();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// The RFC 7030 §4.4.2 `serverkeygen` answer: `multipart/mixed` with the private key
/// (`application/pkcs8`) and the certificate (certs-only), both base64.
pub(crate) fn serverkeygen_response(
    pkcs8_der: &[u8],
    certs_only_der: &[u8],
) -> Response<Full<Bytes>> {
    const BOUNDARY: &str = "fleetca-serverkeygen-boundary";
    let body = format!(
        "--{BOUNDARY}\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--{BOUNDARY}\r\nContent-Type: {PKCS7_CERTS_ONLY}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--{BOUNDARY}--\r\n",
        base64_lines(pkcs8_der).replace('\n', "\r\n").trim_end(),
        base64_lines(certs_only_der).replace('\n', "\r\n").trim_end(),
    );
    let len = body.len();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("multipart/mixed; boundary=fleetca-serverkeygen-boundary"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

/// Certs-only responses (`cacerts`, `simpleenroll`, `simplereenroll`).
pub(crate) const PKCS7_CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";
/// `csrattrs` responses.
pub(crate) const CSRATTRS: &str = "application/csrattrs";

/// RFC 7030 §4.2.3: the request was accepted but not yet processed (manual approval); the
/// client retries the same request after `retry_after` seconds.
pub(crate) fn accepted(retry_after: u64, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_string())));
    *response.status_mut() = hyper::StatusCode::ACCEPTED;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_with_or_without_line_breaks_padding_and_armour() {
        let der = vec![0x30u8, 0x03, 0x02, 0x01, 0x05];
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        assert_eq!(decode_body(b64.as_bytes()).unwrap(), der);
        assert_eq!(
            decode_body(b64.trim_end_matches('=').as_bytes()).unwrap(),
            der
        );
        let wrapped = format!("{}\r\n{}\r\n", &b64[..4], &b64[4..]);
        assert_eq!(decode_body(wrapped.as_bytes()).unwrap(), der);
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
        );
        assert_eq!(decode_body(pem.as_bytes()).unwrap(), der);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let err = decode_body(b"").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = decode_body(b"!!!not base64!!!").unwrap_err().to_string();
        assert!(err.contains("not valid base64"), "{err}");
        let err = decode_body(&[0x30, 0x82, 0xff]).unwrap_err().to_string();
        assert!(err.contains("not base64"), "{err}");
    }

    /// Stable-toolchain stand-in for the `est_body` fuzz target: random and mutated bodies
    /// must produce `Ok` or a `BadRequest`, never a panic.
    #[test]
    fn mutated_bodies_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seed = b"MIIBCzCBsgIBADAmMQ8wDQYDVQQDDAZTTi0wMDExEzARBgNVBAUTClNOLTAwMDEw\nWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR=\n";
        for _ in 0..5000 {
            let mut body = seed.to_vec();
            for _ in 0..(next() % 8) {
                let i = (next() as usize) % body.len();
                body[i] = next() as u8;
            }
            body.truncate((next() as usize) % (body.len() + 1));
            match decode_body(&body) {
                Ok(_) | Err(EstError::BadRequest(_)) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn content_type_parameters_are_ignored() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/pkcs10; charset=utf-8"),
        );
        require_pkcs10(&h).unwrap();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(matches!(
            require_pkcs10(&h),
            Err(EstError::UnsupportedMediaType(_))
        ));
        assert!(require_pkcs10(&HeaderMap::new()).is_err());
    }

    #[test]
    fn responses_wrap_at_64_columns_and_set_length() {
        let der = vec![7u8; 200];
        let r = base64_response(PKCS7_CERTS_ONLY, &der);
        let len: usize = r.headers()[CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = base64_lines(&der);
        assert_eq!(len, body.len());
        assert!(body.lines().all(|l| l.len() <= 64));
        assert_eq!(body.lines().next().unwrap().len(), 64);
    }
}
