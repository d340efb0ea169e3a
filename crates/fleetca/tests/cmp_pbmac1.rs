//! ir MAC-protected with PBMAC1 (RFC 9483 section 4.1.5, RFC 9481 section 6.1.1), the
//! scheme OpenSSL 3.0's client does not speak: the message is built with fleetca's CMP
//! client code (RustCrypto cmpv2/crmf) and POSTed with curl to a real server; the answer
//! is PBMAC1-protected with the same secret and its certificate verifies to the root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::cmp::*;
use common::*;
use fleetca_pki::KeyAlgorithm;

fn post(server: &Server, body: &[u8]) -> Answer {
    let file = server.work("request.der");
    std::fs::write(&file, body).unwrap();
    curl(
        server,
        &[
            "-H",
            "Content-Type: application/pkixcmp",
            "--data-binary",
            &format!("@{}", file.display()),
        ],
        &format!("https://{}/.well-known/cmp", server.addr),
    )
}

#[test]
fn ir_with_pbmac1() {
    require_tools!("openssl", "curl");
    let server = cmp_server(|_| {});
    let (reference, secret) = cmp_secret(&server, "SN-30");
    let key = KeyAlgorithm::P256.generate().unwrap();
    let request = fleetca_cmp::client::pbmac1_initial_request(
        &reference,
        secret.as_bytes(),
        &key,
        "CN=SN-30,serialNumber=SN-30",
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let answer = post(&server, &request);
    assert_eq!(answer.status, 200);
    // PBMAC1 with the device's secret protects the answer.
    assert_eq!(
        fleetca_cmp::client::check_mac_protection(&answer.body, secret.as_bytes()).unwrap(),
        "1.2.840.113549.1.5.14"
    );
    assert!(fleetca_cmp::client::check_mac_protection(&answer.body, b"wrong").is_err());
    let certificate = fleetca_cmp::client::issued_certificate(&answer.body).unwrap();
    let pem = server.work("pbmac1.pem");
    std::fs::write(&pem, fleetca_pki::pem_certificate(&certificate)).unwrap();
    assert_verifies(&server, &pem);

    // A second ir with the same (now used) secret: refused, the secret is consumed.
    let again = fleetca_cmp::client::pbmac1_initial_request(
        &reference,
        secret.as_bytes(),
        &key,
        "CN=SN-30,serialNumber=SN-30",
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let refused = post(&server, &again);
    assert_eq!(refused.status, 200);
    let error = fleetca_cmp::client::issued_certificate(&refused.body).unwrap_err();
    assert!(error.contains("already used"), "{error}");

    // A wrong secret: the MAC does not verify; no certificate.
    let (reference, _) = cmp_secret(&server, "SN-31");
    let wrong = fleetca_cmp::client::pbmac1_initial_request(
        &reference,
        b"not the secret",
        &key,
        "CN=SN-31,serialNumber=SN-31",
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let refused = post(&server, &wrong);
    assert!(fleetca_cmp::client::issued_certificate(&refused.body).is_err());
}
