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
