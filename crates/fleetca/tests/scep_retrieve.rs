//! SCEP GetCert, GetCRL and CertPoll against a real `fleetca serve`. certmonger (an
//! independent client) enrolls the device; it does not send GetCert or GetCRL, so those
//! messages are built with `fleetca_scep::client`, signed with the key and certificate
//! certmonger obtained. The CRL is checked with `openssl crl`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::certmonger::Certmonger;
use common::*;
use fleetca_scep::client::{self, RequestSigner};
use fleetca_scep::MessageType;

fn fleetca(server: &Server, args: &[&str]) -> Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(server.data()))
}

/// certmonger enrolls `serial`; returns its certificate (DER) and key (PKCS#8 DER).
fn enrolled(server: &Server, cm: &Certmonger, serial: &str) -> (Vec<u8>, Vec<u8>) {
    let out = fleetca(server, &["scep", "challenge", "create", "--serial", serial]);
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (key, cert) = (
        cm.file(&format!("{serial}.key")),
        cm.file(&format!("{serial}.pem")),
    );
    cm.getcert(&[
        "request",
        "-c",
        "fleetca",
        "-k",
        key.to_str().unwrap(),
        "-f",
        cert.to_str().unwrap(),
        "-N",
        &format!("CN={serial},serialNumber={serial}"),
        "-L",
        &secret,
    ]);
    cm.wait_for(&cert, &["MONITORING"]);
    (der_of(&cert), pkcs8_of(&key))
}

fn der_of(pem: &Path) -> Vec<u8> {
    openssl(&["x509", "-in", pem.to_str().unwrap(), "-outform", "DER"]).stdout
}

fn pkcs8_of(key: &Path) -> Vec<u8> {
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        key.to_str().unwrap(),
        "-outform",
        "DER",
    ])
    .stdout
}

/// Sends a PKIOperation of `kind` with `content`, signed by (`cert`, `key`); reads the reply.
fn operation(
    server: &Server,
    kind: MessageType,
    transaction: &str,
    content: &[u8],
    (cert, key): (&[u8], &[u8]),
) -> client::Reply {
    let ra = server.pki("scep-ra.pem");
    let signer = RequestSigner {
        certificate_der: cert,
        key_pkcs8: key,
    };
    let message = client::pki_message(
        kind,
        transaction,
        &client::nonce(),
        content,
        signer,
        &der_of(&ra),
    )
    .unwrap();
    let file = server.work("op.der");
    std::fs::write(&file, &message).unwrap();
    let answer = curl(
        server,
        &[
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", file.display()),
        ],
        &format!("http://{}/scep?operation=PKIOperation", server.scep_addr),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    client::read_reply(&answer.body, signer).unwrap()
}

#[test]
fn get_cert_get_crl_and_cert_poll_answer_the_device_and_refuse_others() {
    require_tools!("certmonger", "openssl", "curl");
    let server = Server::start_with(|c| c.push_str("\n[scep]\nhttp_listen = \"127.0.0.1:0\"\n"));
    let cm = Certmonger::start();
    cm.getcert(&[
        "add-scep-ca",
        "-c",
        "fleetca",
        "-u",
        &format!("http://{}/scep", server.scep_addr),
    ]);
    let (cert, key) = enrolled(&server, &cm, "SN-GET-1");
    let (other_cert, other_key) = enrolled(&server, &cm, "SN-GET-2");
    let me = (cert.as_slice(), key.as_slice());

    // GetCert of its own certificate: SUCCESS, the certificate.
    let reply = operation(
        &server,
        MessageType::GetCert,
        "get-1",
        &client::issuer_and_serial(&cert).unwrap(),
        me,
    );
    assert_eq!(reply.status, "0", "{reply:?}");
    assert_eq!(reply.certificates, vec![cert.clone()]);
    assert_eq!(reply.transaction_id, "get-1");
    // Another device's certificate: FAILURE badRequest.
    let reply = operation(
        &server,
        MessageType::GetCert,
        "get-2",
        &client::issuer_and_serial(&other_cert).unwrap(),
        me,
    );
    assert_eq!(
        (reply.status.as_str(), reply.fail_info.as_deref()),
        ("2", Some("2"))
    );
    assert!(
        server.log().contains("rule=\"scep-get-cert\""),
        "{}",
        server.log()
    );
    // The other device may have its own.
    let reply = operation(
        &server,
        MessageType::GetCert,
        "get-3",
        &client::issuer_and_serial(&other_cert).unwrap(),
        (other_cert.as_slice(), other_key.as_slice()),
    );
    assert_eq!(reply.status, "0");

    // GetCRL: the operational CA's published CRL, which openssl reads.
    let reply = operation(
        &server,
        MessageType::GetCrl,
        "crl-1",
        &client::issuer_and_serial(&cert).unwrap(),
        me,
    );
    assert_eq!(reply.status, "0", "{reply:?}");
    let crl = server.work("ca.crl");
    std::fs::write(&crl, &reply.crls[0]).unwrap();
    let text = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl.to_str().unwrap(),
        "-noout",
        "-issuer",
    ]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("Operational CA"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    // CertPoll of a transaction nobody started: FAILURE badCertId.
    let reply = operation(
        &server,
        MessageType::CertPoll,
        "no-such-transaction",
        b"\x30\x00",
        me,
    );
    assert_eq!(
        (reply.status.as_str(), reply.fail_info.as_deref()),
        ("2", Some("4"))
    );
    // An unknown message type: FAILURE badRequest.
    let reply = operation(&server, MessageType::Other, "x", b"", me);
    assert_eq!(
        (reply.status.as_str(), reply.fail_info.as_deref()),
        ("2", Some("2"))
    );
    // The certificate certmonger got verifies to the root.
    let pem = cm.file("SN-GET-1.pem");
    let out = openssl(&[
        "verify",
        "-CAfile",
        server.root().to_str().unwrap(),
        "-untrusted",
        server.pki("operational-ca.pem").to_str().unwrap(),
        pem.to_str().unwrap(),
    ]);
    assert!(out.status.success());
}
