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

#[test]
fn a_serial_that_makes_no_host_name_is_refused_by_a_dns_template() {
    require_tools!("openssl");
    let dir = Server::prepare(|config| {
        let birth = "subject_alt_names = []\nallow_key_reuse = false\nrequire_channel_binding = false\nno_expiry = false\nserver_keygen = true";
        assert!(config.contains(birth));
        *config = config.replace(
            birth,
            &birth.replace(
                "subject_alt_names = []",
                "subject_alt_names = [\"DNS:{serial}.dev.example\"]",
            ),
        );
    });
    let data = dir.path().join("data");
    let fleetca = |args: &[&str]| {
        run(std::process::Command::new(fleetca_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&data))
    };
    // The configuration loads, with a note that the requester chooses the host name.
    let check = fleetca(&["serve", "--check-config"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.contains("note: profile 'birth': subjectAltName DNS:{serial}.dev.example lets the requester choose a host name"),
        "{stdout}"
    );

    let key = dir.path().join("d.key");
    new_key(&key);
    for (serial, ok) in [("a b", false), ("x:y", false), ("SN-42", true)] {
        let csr = dir.path().join("d.csr");
        openssl(&[
            "req",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/serialNumber={serial}"),
            "-out",
            csr.to_str().unwrap(),
        ]);
        let out_file = dir.path().join("d.pem");
        let out = fleetca(&[
            "device",
            "birth",
            "--serial",
            serial,
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            out_file.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{serial}: {stderr}");
        if !ok {
            assert!(
                stderr.contains("device-serial")
                    && stderr.contains(&format!("{serial}.dev.example")),
                "{serial}: {stderr}"
            );
        }
    }
}
