//! `basic_auth`: the HTTP Basic `Authorization` header value of an EST request, as the
//! server reads it before checking the password.

/// The target.
pub fn run(data: &[u8]) {
    if let Ok((name, _password)) = fleetca_est::parse_basic_authorization(data) {
        // RFC 7617: the user-id is everything before the first colon.
        assert!(!name.contains(':'), "an account name with a colon");
    }
}

/// Well-formed and broken headers.
pub fn seeds() -> Vec<Vec<u8>> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    [
        format!("Basic {}", b64("factory-1:correct horse")),
        format!("basic {}", b64("name:pass:with:colons")),
        format!("BASIC  {} ", b64(":")),
        format!("Basic {}", b64("no colon")),
        "Bearer abc".to_string(),
        "Basic !!!".to_string(),
        "Basic".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([b"Basic \xff\xfe".to_vec()])
    .collect()
}
