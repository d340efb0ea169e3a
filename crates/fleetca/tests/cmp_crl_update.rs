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
        let answer = post_cmp(&server, &request, "genm.der");
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

/// genm root CA update (RFC 9483 section 4.3.2), which OpenSSL 3.0's client cannot ask for
/// either: before a root rollover the answer says "no update"; after `fleetca ca rollover
/// root` (pending for a day, so nothing else changes yet) a device that trusts the old root
/// gets the new root, the link certificate the old root signed (openssl verifies the new
/// root through it) and the reverse link; a device that already trusts the new root gets
/// no update.
#[test]
fn genm_announces_a_root_rollover_with_its_link_certificates() {
    require_tools!("openssl", "curl");
    let server = cmp_server(|_| {});
    let (birth_key, birth_cert) = birth(&server, "SN-50");
    let (op_key, op_cert) = enroll(
        &server,
        "simpleenroll",
        (&birth_cert, &birth_key),
        "/CN=SN-50/serialNumber=SN-50",
        "op",
    );
    let key = fleetca_pki::SoftwareKey::from_pkcs8_pem(&std::fs::read_to_string(&op_key).unwrap())
        .unwrap();
    let der_of = |pem: &std::path::Path| {
        openssl(&["x509", "-in", pem.to_str().unwrap(), "-outform", "DER"]).stdout
    };
    let cert_der = der_of(&op_cert);
    let old_root = der_of(&server.pki("root-ca.pem"));
    let ask = |root: &[u8]| {
        let request = fleetca_cmp::client::root_ca_update_request(
            &cert_der,
            &key,
            root,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let answer = post_cmp(&server, &request, "genm-root.der");
        assert_eq!(answer.status, 200, "{}", answer.text());
        fleetca_cmp::client::root_ca_update_of_answer(&answer.body).unwrap()
    };
    assert_eq!(ask(&old_root), None, "no rollover yet");

    // Roots are ordered by their notBefore, which has one-second resolution: the rollover
    // must not fall within the second the test's first root was made in.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    run_ok(
        std::process::Command::new(fleetca_bin())
            .args([
                "ca",
                "rollover",
                "root",
                "--activate-at",
                "1d",
                "--data-dir",
            ])
            .arg(server.data()),
    );
    // The server takes the new generations over without a restart: poll.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let update = loop {
        if let Some(update) = ask(&old_root) {
            break update;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no root update announced; server log:\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let write = |name: &str, der: &[u8]| {
        let path = server.work(name);
        std::fs::write(&path, der).unwrap();
        path
    };
    assert_eq!(
        update.new_with_new,
        der_of(&server.pki("root-ca-g2.pem")),
        "newWithNew is the new root"
    );
    let pem_of = |name: &str, der: &[u8]| {
        let file = write(&format!("{name}.der"), der);
        let pem = server.work(&format!("{name}.pem"));
        openssl(&[
            "x509",
            "-inform",
            "DER",
            "-in",
            file.to_str().unwrap(),
            "-out",
            pem.to_str().unwrap(),
        ]);
        pem
    };
    // NewWithOld: the new root's name and key, signed by the old root.
    let link = pem_of("new-with-old", update.new_with_old.as_ref().unwrap());
    let verified = openssl(&[
        "verify",
        "-CAfile",
        server.pki("root-ca.pem").to_str().unwrap(),
        link.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains(": OK"),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let names = |pem: &std::path::Path| {
        String::from_utf8_lossy(
            &openssl(&[
                "x509",
                "-in",
                pem.to_str().unwrap(),
                "-noout",
                "-subject",
                "-issuer",
            ])
            .stdout,
        )
        .into_owned()
    };
    let text = names(&link);
    assert!(
        text.contains("subject=") && text.lines().next().unwrap().contains("Root CA G2"),
        "{text}"
    );
    // OldWithNew: the old root's name, issued by the new root.
    let reverse = pem_of("old-with-new", update.old_with_new.as_ref().unwrap());
    let text = names(&reverse);
    assert!(
        text.lines().nth(1).unwrap().contains("Root CA G2")
            && !text.lines().next().unwrap().contains("Root CA G2"),
        "{text}"
    );
    // A device that already trusts the new root has nothing to learn.
    assert_eq!(ask(&update.new_with_new), None);
}
