//! genm CRL update retrieval (RFC 9483 section 4.3.4), which OpenSSL 3.0's client cannot
//! ask for by name: a genm with id-it-crlStatusList built with fleetca's CMP client code,
//! signed by a device's operational certificate, POSTed with curl to a real server; the
//! genp carries the published CRLs, which openssl verifies with the CA certificates and
//! which list the certificate the device revoked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::cmp::*;
use common::*;

#[test]
fn genm_returns_the_current_crls() {
    require_tools!("openssl", "curl");
    let server = cmp_server(|_| {});
    let (birth_key, birth_cert) = birth(&server, "SN-40");
    let (op_key, op_cert) = enroll(
        &server,
        "simpleenroll",
        (&birth_cert, &birth_key),
        "/CN=SN-40/serialNumber=SN-40",
        "op",
    );
    // A second device's certificate revoked, to be listed.
    let (b2_key, b2_cert) = birth(&server, "SN-41");
    let (_, revoked) = enroll(
        &server,
        "simpleenroll",
        (&b2_cert, &b2_key),
        "/CN=SN-41/serialNumber=SN-41",
        "revoked",
    );
    let revoked_serial = serial_of(&revoked);
    run_ok(
        std::process::Command::new(fleetca_bin())
            .args([
                "cert",
                "revoke",
                &revoked_serial,
                "--reason",
                "keyCompromise",
                "--yes",
                "--data-dir",
            ])
            .arg(server.data()),
    );

    let key = fleetca_pki::SoftwareKey::from_pkcs8_pem(&std::fs::read_to_string(&op_key).unwrap())
        .unwrap();
    let cert_der = openssl(&["x509", "-in", op_cert.to_str().unwrap(), "-outform", "DER"]).stdout;
    let ca_der = openssl(&[
        "x509",
        "-in",
        server.pki("operational-ca.pem").to_str().unwrap(),
        "-outform",
        "DER",
    ])
    .stdout;

    // The CRL is rebuilt after the revocation within the publisher's refresh: poll.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let request = fleetca_cmp::client::crl_update_request(
            &cert_der,
            &key,
            &ca_der,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let file = server.work("genm.der");
        std::fs::write(&file, &request).unwrap();
        let answer = curl(
            &server,
            &[
                "-H",
                "Content-Type: application/pkixcmp",
                "--data-binary",
                &format!("@{}", file.display()),
            ],
            &format!("https://{}/.well-known/cmp", server.addr),
        );
        assert_eq!(answer.status, 200);
        let crls = fleetca_cmp::client::crls_of_answer(&answer.body).unwrap();
        assert_eq!(crls.len(), 2, "operational and manufacturing CRLs");
        let crl_file = server.work("operational.crl");
        std::fs::write(&crl_file, &crls[0]).unwrap();
        let text = openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            crl_file.to_str().unwrap(),
            "-CAfile",
            server.pki("operational-ca.pem").to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        let printed = String::from_utf8_lossy(&text.stdout).to_uppercase();
        assert!(String::from_utf8_lossy(&text.stderr).contains("verify OK"));
        if printed.contains(&revoked_serial.to_uppercase()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{printed}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
