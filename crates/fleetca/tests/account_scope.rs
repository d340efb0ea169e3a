//! Enrollment accounts (HTTP Basic) against a real server: what serials an account may
//! enroll (issue 13, items 2 and 3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::process::Command;

use common::*;

/// `fleetca account add NAME ARGS...`; returns `name:password`.
fn account(server: &Server, name: &str, args: &[&str]) -> String {
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["account", "add", name])
            .args(args)
            .arg("--data-dir")
            .arg(server.data()),
    );
    format!("{name}:{}", String::from_utf8(out.stdout).unwrap().trim())
}

/// A simpleenroll with Basic credentials for a CSR naming `serial`.
fn enroll_as(server: &Server, user: &str, serial: &str) -> Answer {
    let key = server.work(&format!("{serial}-acct.key"));
    let csr = server.work(&format!("{serial}-acct.b64"));
    new_key(&key);
    new_csr_b64(&key, &format!("/serialNumber={serial}"), &csr);
    post_csr(server, "simpleenroll", None, &csr, &["-u", user])
}

/// Item 3: an account pattern matched substrings (`AC-[0-9]{4}` accepted `XAC-0001`).
#[test]
fn an_account_pattern_matches_the_whole_serial() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let user = account(&server, "ac", &["--serial-pattern", "AC-[0-9]{4}"]);
    for attack in ["XAC-0001", "AC-00011", "evilAC-1234zz"] {
        let a = enroll_as(&server, &user, attack);
        assert_eq!(a.status, 403, "{attack}: {}", a.text());
        assert!(
            a.text().contains("account-scope") && a.text().contains("the whole serial"),
            "{attack}: {}",
            a.text()
        );
    }
    let a = enroll_as(&server, &user, "AC-0001");
    assert_eq!(a.status, 200, "{}", a.text());
}

/// Item 2: an account without a serial pattern got a certificate for a device that already
/// had its birth and operational certificates. Now an account enrolls only devices new to
/// the inventory, each once; widening that is explicit.
#[test]
fn an_account_cannot_take_over_a_known_device() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    // The device exists: a birth certificate and an operational certificate.
    let (bk, bc) = birth(&server, "SN-0042");
    enroll(
        &server,
        "simpleenroll",
        (&bc, &bk),
        "/serialNumber=SN-0042",
        "op",
    );

    // An account needs a pattern or an explicit --any-serial.
    let out = run(Command::new(fleetca_bin())
        .args(["account", "add", "wide", "--data-dir"])
        .arg(server.data()));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--any-serial"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The attack: an any-serial account names the existing device.
    let user = account(&server, "boot", &["--any-serial"]);
    let a = enroll_as(&server, &user, "SN-0042");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("account-new-device"), "{}", a.text());
    // Also a device that has only its birth certificate.
    birth(&server, "SN-0043");
    let a = enroll_as(&server, &user, "SN-0043");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("account-new-device"), "{}", a.text());

    // The legitimate path: a new device, once.
    let a = enroll_as(&server, &user, "SN-0100");
    assert_eq!(a.status, 200, "{}", a.text());
    let a = enroll_as(&server, &user, "SN-0100");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("account-new-device"), "{}", a.text());

    // The refusal is in the decision log with the rule, and the account was audited.
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["decision", "list", "--device", "SN-0042", "--data-dir"])
            .arg(server.data()),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("account-new-device"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["audit", "list", "--data-dir"])
            .arg(server.data()),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("account-add"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Widened explicitly: --allow-known-devices enrolls a known device.
    let user = account(
        &server,
        "reboot",
        &["--serial-pattern", "SN-[0-9]{4}", "--allow-known-devices"],
    );
    let a = enroll_as(&server, &user, "SN-0100");
    assert_eq!(a.status, 200, "{}", a.text());
}
