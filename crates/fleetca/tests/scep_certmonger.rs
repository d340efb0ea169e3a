//! SCEP (RFC 8894) against a real `fleetca serve`, with certmonger as the client (an
//! independent implementation: its daemon builds, signs and encrypts the pkiMessages,
//! its `scep-submit` helper talks HTTP). Every certificate is checked with
//! `openssl verify` to the root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::certmonger::{Certmonger, SCEP_SUBMIT};
use common::*;

fn fleetca(server: &Server, args: &[&str]) -> Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(server.data()))
}

fn scep_server(manual_approval: bool) -> Server {
    Server::start_with(|config| {
        config.push_str("\n[scep]\nhttp_listen = \"127.0.0.1:0\"\n");
        if manual_approval {
            *config = config.replacen(
                "[profiles.operational]\n",
                "[profiles.operational]\nmanual_approval = \"true\"\n",
                1,
            );
        }
    })
}

fn url(server: &Server) -> String {
    format!("http://{}/scep", server.scep_addr)
}

/// A one-time challenge for `serial`, from the CLI.
fn challenge(server: &Server, serial: &str) -> String {
    let out = fleetca(server, &["scep", "challenge", "create", "--serial", serial]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(secret.len(), 40, "40 hex digits: {secret}");
    secret
}

/// `openssl verify` of `cert` to the server's root, through the operational CA.
fn verify_to_root(server: &Server, cert: &Path) {
    let out = openssl(&[
        "verify",
        "-CAfile",
        server.root().to_str().unwrap(),
        "-untrusted",
        server.pki("operational-ca.pem").to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asks certmonger for a certificate for `serial` with `challenge`; returns the key and
/// certificate files it tracks.
fn request(
    cm: &Certmonger,
    ca: &str,
    name: &str,
    serial: &str,
    challenge: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, cert) = (
        cm.file(&format!("{name}.key")),
        cm.file(&format!("{name}.pem")),
    );
    cm.getcert(&[
        "request",
        "-c",
        ca,
        "-k",
        key.to_str().unwrap(),
        "-f",
        cert.to_str().unwrap(),
        "-N",
        &format!("CN={serial},serialNumber={serial}"),
        "-L",
        challenge,
    ]);
    (key, cert)
}

fn subject_serial(cert: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-nameopt",
        "sep_multiline",
    ]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("serialNumber=").map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn certmonger_gets_the_capabilities_and_ca_certificates() {
    require_tools!("certmonger", "openssl");
    let server = scep_server(false);
    let caps = run_ok(Command::new(SCEP_SUBMIT).args(["-u", &url(&server), "-c"]));
    let caps = String::from_utf8(caps.stdout).unwrap();
    for cap in [
        "POSTPKIOperation",
        "SHA-256",
        "SHA-512",
        "AES",
        "SCEPStandard",
        "Renewal",
    ] {
        assert!(caps.lines().any(|l| l == cap), "{cap} missing: {caps}");
    }
    // GetCACert: certmonger prints the RA certificate first, then the CA chain.
    let certs = run_ok(Command::new(SCEP_SUBMIT).args(["-u", &url(&server), "-C"]));
    let pem = String::from_utf8(certs.stdout).unwrap();
    assert!(pem.matches("BEGIN CERTIFICATE").count() >= 3, "{pem}");
    let ra = server.work("ra.pem");
    let first_end = pem.find("-----END CERTIFICATE-----").unwrap() + 25;
    std::fs::write(&ra, &pem[..first_end]).unwrap();
    let text = String::from_utf8(
        openssl(&["x509", "-in", ra.to_str().unwrap(), "-noout", "-text"]).stdout,
    )
    .unwrap();
    assert!(text.contains("SCEP RA"), "{text}");
    assert!(
        text.contains("rsaEncryption"),
        "an RSA key for key transport: {text}"
    );
    assert!(text.contains("Key Encipherment"), "{text}");
    verify_to_root(&server, &ra);
    // The same over HTTPS on the EST listener.
    let tls = curl(
        &server,
        &[],
        &format!("https://{}/scep?operation=GetCACaps", server.addr),
    );
    assert_eq!(tls.status, 200);
    assert!(tls.text().contains("SCEPStandard"));
}

#[test]
fn certmonger_enrolls_with_a_challenge_and_renews_with_its_certificate() {
    require_tools!("certmonger", "openssl");
    let server = scep_server(false);
    let cm = Certmonger::start();
    cm.getcert(&["add-scep-ca", "-c", "fleetca", "-u", &url(&server)]);
    let secret = challenge(&server, "SN-SCEP-1");
    let (_, cert) = request(&cm, "fleetca", "device1", "SN-SCEP-1", &secret);
    cm.wait_for(&cert, &["MONITORING"]);
    verify_to_root(&server, &cert);
    assert_eq!(subject_serial(&cert), "SN-SCEP-1");
    let first = serial_of(&cert);
    let log = server.log();
    assert!(
        log.contains("device=SN-SCEP-1") && log.contains("client=\"secret\""),
        "enrolled by its one-time secret: {log}"
    );

    // Renewal: certmonger signs the request for its new key with the current certificate.
    cm.getcert(&["rekey", "-f", cert.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while serial_of(&cert) == first {
        assert!(std::time::Instant::now() < deadline, "{}", cm.list(&cert));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    cm.wait_for(&cert, &["MONITORING"]);
    verify_to_root(&server, &cert);
    assert_eq!(subject_serial(&cert), "SN-SCEP-1");
    let log = server.log();
    assert!(
        log.contains("operation=\"simplereenroll\" client=\"operational\""),
        "renewed as a re-enrollment by the operational certificate: {log}"
    );
    // The inventory links the renewal to the certificate it replaces.
    let shown = fleetca(&server, &["cert", "show", &serial_of(&cert)]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&first), "{shown}");
}

#[test]
fn certmonger_waits_for_a_manual_approval_then_gets_the_certificate() {
    require_tools!("certmonger", "openssl");
    let server = scep_server(true);
    let cm = Certmonger::start();
    cm.getcert(&["add-scep-ca", "-c", "fleetca", "-u", &url(&server)]);
    let secret = challenge(&server, "SN-SCEP-2");
    let (_, cert) = request(&cm, "fleetca", "device2", "SN-SCEP-2", &secret);
    // PENDING: certmonger keeps the request open (CA_WORKING) and polls.
    cm.wait_for(&cert, &["CA_WORKING"]);
    assert!(!cert.exists());
    let queue = fleetca(&server, &["request", "list"]);
    let queue = String::from_utf8_lossy(&queue.stdout).into_owned();
    let line = queue
        .lines()
        .find(|l| l.contains("SN-SCEP-2"))
        .unwrap_or_else(|| panic!("the request waits for approval: {queue}"));
    let id = line.split_whitespace().next().unwrap().to_string();
    let approved = fleetca(&server, &["request", "approve", &id]);
    assert!(approved.status.success());
    // The next poll (GetCertInitial, CertPoll in RFC 8894) gets the certificate.
    cm.getcert(&["resubmit", "-f", cert.to_str().unwrap()]);
    cm.wait_for(&cert, &["MONITORING"]);
    verify_to_root(&server, &cert);
    assert_eq!(subject_serial(&cert), "SN-SCEP-2");
    let all = fleetca(&server, &["request", "list", "--all"]);
    let all = String::from_utf8_lossy(&all.stdout).into_owned();
    assert!(
        all.lines().filter(|l| l.contains("SN-SCEP-2")).count() == 1 && all.contains("issued"),
        "one request, issued: {all}"
    );
}

/// certmonger's listing says the CA rejected the request; the server log names the
/// failInfo and the rule.
fn assert_rejected(server: &Server, cm: &Certmonger, cert: &Path, fail_info: &str, rule: &str) {
    let listing = cm.wait_for(cert, &["CA_REJECTED"]);
    assert!(!cert.exists(), "{listing}");
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("SCEP request refused")
            && l.contains(&format!("fail_info=\"{fail_info}\""))
            && l.contains(&format!("rule=\"{rule}\""))
            || l.contains(&format!("fail_info=\"{fail_info}\" rule={rule}"))),
        "{fail_info} by rule {rule} expected in:\n{log}"
    );
}

#[test]
fn certmonger_is_refused_a_wrong_or_reused_challenge_a_wrong_identity_and_a_revoked_signer() {
    require_tools!("certmonger", "openssl");
    let server = scep_server(false);
    let cm = Certmonger::start();
    cm.getcert(&["add-scep-ca", "-c", "fleetca", "-u", &url(&server)]);

    // A challenge nobody created.
    let (_, wrong) = request(&cm, "fleetca", "wrong", "SN-SCEP-3", "0123456789abcdef");
    assert_rejected(&server, &cm, &wrong, "badRequest", "scep-challenge");

    // A challenge used once already (by another key of the same device).
    let secret = challenge(&server, "SN-SCEP-3");
    let (_, first) = request(&cm, "fleetca", "first", "SN-SCEP-3", &secret);
    cm.wait_for(&first, &["MONITORING"]);
    let (_, reused) = request(&cm, "fleetca", "reused", "SN-SCEP-3", &secret);
    assert_rejected(&server, &cm, &reused, "badRequest", "scep-challenge");

    // A challenge for one device, a request for another: the RA's identity rule.
    let other = challenge(&server, "SN-SCEP-4");
    let (_, mismatch) = request(&cm, "fleetca", "mismatch", "SN-SCEP-5", &other);
    let listing = cm.wait_for(&mismatch, &["CA_REJECTED"]);
    assert!(!mismatch.exists(), "{listing}");
    let log = server.log();
    let refused = log
        .lines()
        .find(|l| l.contains("SCEP request refused") && l.contains("SN-SCEP-5"))
        .unwrap_or_else(|| panic!("the mismatch is logged: {log}"));
    assert!(
        refused.contains("fail_info=\"badRequest\"") && refused.contains("rule=\"subject\""),
        "{refused}"
    );
    // The RA's decision log has it too, with the rule.
    let decisions = fleetca(&server, &["decision", "list"]);
    let decisions = String::from_utf8_lossy(&decisions.stdout).into_owned();
    assert!(
        decisions
            .lines()
            .any(|l| l.contains("SN-SCEP-4") && l.contains("denied") && l.contains("subject:")),
        "{decisions}"
    );

    // The first certificate revoked: its renewal is refused.
    let revoked = fleetca(
        &server,
        &[
            "cert",
            "revoke",
            &serial_of(&first),
            "--reason",
            "keyCompromise",
            "--yes",
        ],
    );
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    cm.getcert(&["rekey", "-f", first.to_str().unwrap()]);
    // certmonger keeps the certificate it has (MONITORING) and shows the rejection.
    let listing = cm.wait_for_text(&first, &["ca-error:"]);
    assert!(listing.contains("not permitted"), "{listing}");
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("SCEP request refused")
            && l.contains("message_type=\"PKCSReq\"")
            && l.contains("revoked")),
        "the revoked signer is named in the refusal: {log}"
    );
    // The server still serves.
    let caps = run_ok(Command::new(SCEP_SUBMIT).args(["-u", &url(&server), "-c"]));
    assert!(String::from_utf8_lossy(&caps.stdout).contains("AES"));
}
