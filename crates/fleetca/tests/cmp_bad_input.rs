//! CMP bad input: garbage and truncated DER, a wrong content type or method, an oversized
//! body, an unknown label. Each gets a 4xx (with a CMP error message where the body was
//! read), and the server keeps serving.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::cmp::*;
use common::*;

fn post(server: &Server, content_type: &str, body: &std::path::Path, path: &str) -> Answer {
    curl(
        server,
        &[
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            &format!("@{}", body.display()),
        ],
        &format!("https://{}{path}", server.addr),
    )
}

/// The body of an answer is a PKIMessage error with this failure info (openssl reads it).
fn assert_cmp_error(server: &Server, answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert!(
        answer
            .headers
            .to_ascii_lowercase()
            .contains("content-type: application/pkixcmp"),
        "{}",
        answer.headers
    );
    let file = server.work("answer.der");
    std::fs::write(&file, &answer.body).unwrap();
    let parsed = openssl(&["asn1parse", "-inform", "DER", "-in", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&parsed.stdout);
    // [23] error, with the statusString naming the problem.
    assert!(text.contains("cont [ 23 ]"), "{text}");
    assert!(text.contains("not a DER-encoded PKIMessage"), "{text}");
}

#[test]
fn bad_input_gets_4xx_and_the_server_keeps_serving() {
    require_tools!("openssl", "curl");
    let server = cmp_server(|_| {});
    let (birth_key, birth_cert) = birth(&server, "SN-1");

    // A real request, saved by openssl, to truncate.
    let key = server.work("k.key");
    new_key(&key);
    let ir = server.work("ir.der");
    let first = openssl_cmp(
        &server,
        &[
            "-cmd",
            "genm",
            "-cert",
            birth_cert.to_str().unwrap(),
            "-key",
            birth_key.to_str().unwrap(),
            "-infotype",
            "caCerts",
            "-reqout",
            ir.to_str().unwrap(),
        ],
    );
    assert!(first.ok, "{}", first.output);
    let whole = std::fs::read(&ir).unwrap();
    let truncated = server.work("truncated.der");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let garbage = server.work("garbage.der");
    std::fs::write(&garbage, b"this is not DER at all").unwrap();

    let cmp = "/.well-known/cmp";
    assert_cmp_error(
        &server,
        &post(&server, "application/pkixcmp", &garbage, cmp),
        400,
    );
    assert_cmp_error(
        &server,
        &post(&server, "application/pkixcmp", &truncated, cmp),
        400,
    );
    // A trailing byte after a whole message.
    let trailing = server.work("trailing.der");
    std::fs::write(&trailing, [whole.as_slice(), &[0]].concat()).unwrap();
    assert_cmp_error(
        &server,
        &post(&server, "application/pkixcmp", &trailing, cmp),
        400,
    );

    let wrong_type = post(&server, "application/octet-stream", &ir, cmp);
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.text());
    assert!(wrong_type.text().contains("application/pkixcmp"));

    let get = curl(&server, &[], &format!("https://{}{cmp}", server.addr));
    assert_eq!(get.status, 405, "{}", get.text());

    let unknown_label = post(
        &server,
        "application/pkixcmp",
        &ir,
        "/.well-known/cmp/p/nope",
    );
    assert_eq!(unknown_label.status, 404, "{}", unknown_label.text());

    let big = server.work("big.der");
    std::fs::write(&big, vec![0x30u8; 4 * 1024 * 1024]).unwrap();
    let oversized = post(&server, "application/pkixcmp", &big, cmp);
    assert_eq!(oversized.status, 413, "{}", oversized.text());

    // Still serving: the same genm again (a new transaction) works.
    let again = openssl_cmp(
        &server,
        &[
            "-cmd",
            "genm",
            "-cert",
            birth_cert.to_str().unwrap(),
            "-key",
            birth_key.to_str().unwrap(),
            "-infotype",
            "caCerts",
        ],
    );
    assert!(again.ok, "{}", again.output);
    assert!(server.alive());
}
