//! Issue 13 item 10: HTTP Basic password guessing is limited per account and per source
//! (in memory, per node), counted in a metric; `account add` refuses weak passwords given
//! on stdin. Sources are modelled with curl bound to other loopback addresses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::process::Command;

use common::*;

const PASSWORD: &str = "kW8-vQ2p#Lm9-Zt4";

/// simpleenroll with Basic credentials from `source`.
fn login(server: &Server, source: &str, user: &str, password: &str) -> Answer {
    let csr = server.work("login.csr.b64");
    if !csr.exists() {
        let key = server.work("login.key");
        new_key(&key);
        new_csr_b64(&key, "/CN=SN-PW1/serialNumber=SN-PW1", &csr);
    }
    post_csr(
        server,
        "simpleenroll",
        None,
        &csr,
        &["--interface", source, "-u", &format!("{user}:{password}")],
    )
}

fn retry_after(a: &Answer) -> u64 {
    a.headers
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("429 without Retry-After: {}", a.headers))
}

fn metric(server: &Server, line_prefix: &str) -> f64 {
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://{}/metrics", server.metrics_addr)));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_guessing_burst_is_held_back_and_the_account_keeps_working_for_its_clients() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    assert!(account_add(&server, "factory", PASSWORD).status.success());

    // The factory's own client logs in from 127.0.0.1 (any answer but 401/429 means the
    // password was accepted; the rules decide the rest).
    let ok = login(&server, "127.0.0.1", "factory", PASSWORD);
    assert!(![401, 429].contains(&ok.status), "{ok:?}");

    // An attacker at 127.0.0.2 guesses: 401 at first, then 429 with a growing
    // Retry-After, without the password being checked.
    let mut unauthorized = 0;
    let mut held = None;
    for i in 0..40 {
        let a = login(&server, "127.0.0.2", "factory", &format!("guess-{i}"));
        match a.status {
            401 => unauthorized += 1,
            429 => {
                assert!(a.text().contains("for this account"), "{}", a.text());
                let wait = retry_after(&a);
                if wait >= 4 {
                    held = Some(a);
                    break;
                }
                // A patient attacker waits out the back-off, which then doubles.
                std::thread::sleep(std::time::Duration::from_secs(wait));
            }
            s => panic!("unexpected {s}: {}", a.text()),
        }
    }
    assert!(held.is_some(), "40 wrong guesses were never held back");
    assert!(unauthorized >= 5, "the first 5 failures are answered 401");
    // Held: even the right password is refused from the attacker's address now.
    let a = login(&server, "127.0.0.2", "factory", PASSWORD);
    assert_eq!(a.status, 429, "{}", a.text());
    // The account's own client still gets in; an address that never logged in waits.
    let ok = login(&server, "127.0.0.1", "factory", PASSWORD);
    assert!(![401, 429].contains(&ok.status), "{ok:?}");
    let fresh = login(&server, "127.0.0.3", "factory", PASSWORD);
    assert_eq!(fresh.status, 429, "{}", fresh.text());

    // One source guessing many names is held as a source.
    let mut source_held = false;
    for i in 0..60 {
        let a = login(&server, "127.0.0.4", &format!("name{i}"), "wrong-password");
        if a.status == 429 {
            assert!(a.text().contains("from this address"), "{}", a.text());
            let wait = retry_after(&a);
            if wait >= 4 {
                source_held = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs(wait));
        } else {
            assert_eq!(a.status, 401, "{}", a.text());
        }
    }
    assert!(source_held, "60 names from one source were never held back");

    let failures = metric(
        &server,
        "fleetca_est_password_attempts_total{result=\"failure\"}",
    );
    let held_account = metric(
        &server,
        "fleetca_est_password_attempts_total{result=\"held_account\"}",
    );
    let held_source = metric(
        &server,
        "fleetca_est_password_attempts_total{result=\"held_source\"}",
    );
    let success = metric(
        &server,
        "fleetca_est_password_attempts_total{result=\"success\"}",
    );
    assert!(failures >= 16.0, "failures {failures}");
    assert!(held_account >= 3.0, "held_account {held_account}");
    assert!(held_source >= 1.0, "held_source {held_source}");
    assert!(success >= 2.0, "success {success}");
    assert!(server.alive());
}

#[test]
fn account_add_refuses_weak_passwords_on_stdin() {
    let server = Server::start();
    for (password, why) in [
        ("short1A!", "fewer than 12 characters"),
        ("alllowercaseletters", "three of"),
        ("Aa1Aa1Aa1Aa1", "8 different characters"),
        ("Station-Secret-7", "account name"),
    ] {
        let out = account_add(&server, "station", password);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{password}: {err}"
        );
    }
    let out = account_add(&server, "station", PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
