//! A running server through an operational CA rollover: it switches to the new
//! generation at its activation time without a restart, `/cacerts` carries both
//! generations and the root, a certificate of the old generation still authenticates and
//! renews onto the new one, and the old generation's CRL and OCSP keep answering for its
//! certificates (a revocation shows up in its own CRL). Checked with `curl` and `openssl`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn all_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn issuer_of(pem: &Path) -> String {
    all_text(&openssl(&["x509", "-in", p(pem), "-noout", "-issuer"]))
}

/// `/cacerts` as PEM at `out`, and its subjects.
fn cacerts(server: &Server, out: &Path) -> String {
    let a = curl(server, &[], &server.est("cacerts"));
    assert_eq!(a.status, 200, "{}", a.text());
    certs_only_to_pem(&a.body, out);
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("subject="))
        .collect::<Vec<_>>()
        .join("\n")
}

fn crl_text(server: &Server, name: &str, out: &Path) -> String {
    let a = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            p(out),
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{}/crl/{name}.crl", server.status_addr)));
    assert_eq!(String::from_utf8_lossy(&a.stdout), "200", "/crl/{name}.crl");
    String::from_utf8(openssl(&["crl", "-inform", "DER", "-in", p(out), "-noout", "-text"]).stdout)
        .unwrap()
}

fn ocsp(server: &Server, issuer: &Path, cert: &Path) -> String {
    all_text(&run(Command::new("openssl")
        .args(["ocsp", "-issuer", p(issuer), "-CAfile", p(&server.root())])
        .args(["-cert", p(cert), "-url"])
        .arg(format!("http://{}/ocsp", server.status_addr))))
}

#[test]
fn a_server_switches_generations_and_keeps_the_old_one_answering() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let subj = |s: &str| format!("/CN={s}/serialNumber={s}");
    // Two devices with operational certificates of generation 1.
    let (bk1, bc1) = birth(&server, "SN-ROLL-1");
    let (k1, c1) = enroll(
        &server,
        "simpleenroll",
        (&bc1, &bk1),
        &subj("SN-ROLL-1"),
        "r1-g1",
    );
    let (bk2, bc2) = birth(&server, "SN-ROLL-2");
    let (_, c2) = enroll(
        &server,
        "simpleenroll",
        (&bc2, &bk2),
        &subj("SN-ROLL-2"),
        "r2-g1",
    );
    assert!(issuer_of(&c1)
        .trim_end()
        .ends_with("CN = Test Fleet Operational CA"));

    let out = run(Command::new(fleetca_bin())
        .args([
            "ca",
            "rollover",
            "operational",
            "--activate-at",
            "3s",
            "--data-dir",
        ])
        .arg(server.data()));
    assert!(out.status.success(), "{}", all_text(&out));

    // The running server switches by itself (no restart, no SIGHUP).
    let bundle = server.work("cacerts.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    let subjects = loop {
        let subjects = cacerts(&server, &bundle);
        if subjects.contains("Operational CA G2") {
            break subjects;
        }
        assert!(
            Instant::now() < deadline,
            "never switched:\n{subjects}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // The issuing generation, the older still-valid one, and the root.
    let mut listed: Vec<&str> = subjects.lines().collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "subject=O = Test Fleet, CN = Test Fleet Operational CA",
            "subject=O = Test Fleet, CN = Test Fleet Operational CA G2",
            "subject=O = Test Fleet, CN = Test Fleet Root CA",
        ]
    );
    assert!(
        server.log().contains("CA generations changed"),
        "{}",
        server.log()
    );

    // A generation-1 certificate still authenticates and renews onto generation 2.
    let (_, c1b) = enroll(
        &server,
        "simplereenroll",
        (&c1, &k1),
        &subj("SN-ROLL-1"),
        "r1-g2",
    );
    let issuer = issuer_of(&c1b);
    assert!(issuer.contains("Operational CA G2"), "{issuer}");
    // Both chains verify against the root, with the bundle /cacerts gave.
    for cert in [&c1, &c1b] {
        let v = all_text(&openssl(&[
            "verify",
            "-CAfile",
            p(&server.root()),
            "-untrusted",
            p(&bundle),
            p(cert),
        ]));
        assert!(v.contains(": OK"), "{v}");
    }
    // New devices get generation 2 as well.
    let (bk3, bc3) = birth(&server, "SN-ROLL-3");
    let (_, c3) = enroll(
        &server,
        "simpleenroll",
        (&bc3, &bk3),
        &subj("SN-ROLL-3"),
        "r3",
    );
    assert!(issuer_of(&c3).contains("Operational CA G2"));

    // Revoking a generation-1 certificate: it appears in generation 1's CRL (signed by
    // generation 1), and generation 1's OCSP responder says revoked.
    let serial = serial_of(&c2);
    let out = run(Command::new(fleetca_bin())
        .args([
            "cert",
            "revoke",
            &serial,
            "--reason",
            "keyCompromise",
            "--yes",
            "--data-dir",
        ])
        .arg(server.data()));
    assert!(out.status.success(), "{}", all_text(&out));
    let crl1 = server.work("op-1.crl");
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = crl_text(&server, "operational-1", &crl1);
        if text.to_lowercase().replace(':', "").contains(&serial) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "revocation never in the CRL:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        text.contains("Issuer: O = Test Fleet, CN = Test Fleet Operational CA\n"),
        "{text}"
    );
    let v = all_text(&run(Command::new("openssl").args([
        "crl",
        "-inform",
        "DER",
        "-in",
        p(&crl1),
        "-noout",
        "-verify",
        "-CAfile",
        p(&server.pki("operational-ca.pem")),
    ])));
    assert!(v.contains("verify OK"), "{v}");
    // The current URL serves the issuing generation's CRL; its own URL too.
    let current = crl_text(&server, "operational", &server.work("op.crl"));
    assert!(
        current.contains("CN = Test Fleet Operational CA G2"),
        "{current}"
    );
    let second = crl_text(&server, "operational-2", &server.work("op-2.crl"));
    assert!(
        second.contains("CN = Test Fleet Operational CA G2"),
        "{second}"
    );

    let old = ocsp(&server, &server.pki("operational-ca.pem"), &c2);
    assert!(old.contains("Response verify OK"), "{old}");
    assert!(old.contains(": revoked"), "{old}");
    let new = ocsp(&server, &server.pki("operational-ca-g2.pem"), &c1b);
    assert!(new.contains("Response verify OK"), "{new}");
    assert!(new.contains(": good"), "{new}");
}

/// An issuing generation that ends before a profile's validity: the certificate ends with
/// its issuer (never after it), and the recorded decision says the validity was shortened.
#[test]
fn a_certificate_never_outlives_its_issuing_generation_and_the_decision_says_so() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let out = run(Command::new(fleetca_bin())
        .args([
            "ca",
            "rollover",
            "operational",
            "--validity",
            "2h",
            "--data-dir",
        ])
        .arg(server.data()));
    assert!(out.status.success(), "{}", all_text(&out));
    let bundle = server.work("cacerts.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cacerts(&server, &bundle).contains("Operational CA G2") {
        assert!(Instant::now() < deadline, "never switched");
        std::thread::sleep(Duration::from_millis(300));
    }
    let subj = "/CN=SN-SHORT-1/serialNumber=SN-SHORT-1";
    let (bk, bc) = birth(&server, "SN-SHORT-1");
    let (_, cert) = enroll(&server, "simpleenroll", (&bc, &bk), subj, "short");
    let end = |pem: &Path| {
        all_text(&openssl(&["x509", "-noout", "-enddate", "-in", p(pem)]))
            .trim()
            .to_string()
    };
    // The 90-day profile gave way to the 2-hour CA.
    assert_eq!(end(&cert), end(&server.pki("operational-ca-g2.pem")));
    let out = run(Command::new(fleetca_bin())
        .args(["decision", "list", "--format", "json", "--data-dir"])
        .arg(server.data()));
    let decisions = all_text(&out);
    assert!(decisions.contains("issuer-validity"), "{decisions}");
    assert!(
        decisions.contains("validity shortened to the end of operational CA generation 2"),
        "{decisions}"
    );
}
