//! Names in requests: control characters are refused with 400 and never reach a log or an
//! operator's terminal raw (issue 13 item 7); a subjectAltName template that renders an
//! invalid name for a serial is refused (issue 13 item 9).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::*;
use fleetca_pki::rcgen::{DistinguishedName, DnType};
use fleetca_pki::KeyAlgorithm;

fn csr_file(server: &Server, name: &str, dn: DistinguishedName) -> std::path::PathBuf {
    let key = KeyAlgorithm::P256.generate().unwrap();
    let der = key.certificate_request(dn, vec![], &[]).unwrap();
    let path = server.work(name);
    std::fs::write(&path, base64_lines(&der)).unwrap();
    path
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n')
}

#[test]
fn control_characters_in_a_csr_subject_are_refused_and_never_shown_raw() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let (birth_key, birth_cert) = birth(&server, "SN-CTL");
    for (i, cn) in [
        "SN-CTL\r\n2026-01-01T00:00:00Z  INFO forged: certificate issued",
        "\u{1b}[31mSN-CTL\u{1b}[0m",
        "SN-CTL\0",
        "SN-CTL\u{9b}2J",
    ]
    .into_iter()
    .enumerate()
    {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), "SN-CTL");
        let csr = csr_file(&server, &format!("ctl{i}.csr.b64"), dn);
        let a = post_csr(
            &server,
            "simpleenroll",
            Some((&birth_cert, &birth_key)),
            &csr,
            &[],
        );
        assert_eq!(a.status, 400, "{cn:?}: {}", a.text());
        assert!(a.text().contains("control character"), "{}", a.text());
        assert!(!has_control(&a.text()), "{:?}", a.text());
    }
    // The server still serves.
    let ok = enroll(
        &server,
        "simpleenroll",
        (&birth_cert, &birth_key),
        "/CN=SN-CTL/serialNumber=SN-CTL",
        "ctl-ok",
    );
    assert!(ok.1.exists());

    let log = server.log();
    assert!(!has_control(&log), "raw control characters in the log");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "{log}"
    );
    assert!(log.contains("control character"), "{log}");
    for args in [vec!["audit", "list"], vec!["decision", "list", "--verbose"]] {
        let out = run_ok(
            std::process::Command::new(fleetca_bin())
                .args(&args)
                .arg("--data-dir")
                .arg(server.data()),
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(!has_control(&stdout), "{args:?}: {stdout:?}");
    }
}
