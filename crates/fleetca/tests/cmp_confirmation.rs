//! CMP confirmation (RFC 9483 section 4.1.1): a certificate whose certConf never arrives is
//! revoked (cessationOfOperation) once `[cmp] confirm_timeout` passed, and that is audited;
//! an implicitly confirmed one stays valid.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cmp::*;
use common::*;

fn p(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

fn audit(server: &Server) -> String {
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["audit", "list", "--limit", "200", "--data-dir"])
            .arg(server.data()),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn unconfirmed_certificates_are_revoked_and_implicit_confirmation_is_final() {
    require_tools!("openssl");
    let server = cmp_server(|config| config.push_str("confirm_timeout = \"10s\"\n"));
    let (birth_key, birth_cert) = birth(&server, "SN-1");
    let key = server.work("u.key");
    let cert = server.work("u.pem");
    new_key(&key);
    // No certConf, no implicit confirmation asked: the certificate waits for a confirmation
    // that never comes.
    let unconfirmed = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-cert",
            p(&birth_cert),
            "-key",
            p(&birth_key),
            "-extracerts",
            p(&server.pki("manufacturing-ca.pem")),
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-1/serialNumber=SN-1",
            "-certout",
            p(&cert),
            "-disable_confirm",
        ],
    );
    assert!(unconfirmed.ok, "{}", unconfirmed.output);
    assert!(
        !unconfirmed.output.contains("CERTCONF"),
        "{}",
        unconfirmed.output
    );
    let serial = serial_of(&cert);

    // The other device asks for implicit confirmation: granted, nothing to wait for.
    let (birth_key2, birth_cert2) = birth(&server, "SN-2");
    let key2 = server.work("i.key");
    let cert2 = server.work("i.pem");
    new_key(&key2);
    let implicit = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-cert",
            p(&birth_cert2),
            "-key",
            p(&birth_key2),
            "-extracerts",
            p(&server.pki("manufacturing-ca.pem")),
            "-newkey",
            p(&key2),
            "-subject",
            "/CN=SN-2/serialNumber=SN-2",
            "-certout",
            p(&cert2),
            "-implicit_confirm",
        ],
    );
    assert!(implicit.ok, "{}", implicit.output);
    assert!(!implicit.output.contains("CERTCONF"), "{}", implicit.output);

    // The server checks every 15 s: within a minute the first certificate is revoked.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let trail = audit(&server);
        if trail.contains("cmp-unconfirmed-revoke") && trail.contains(&serial) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not revoked:\n{trail}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let show = |serial: &str| {
        let out = run_ok(
            Command::new(fleetca_bin())
                .args(["device", "show", serial, "--data-dir"])
                .arg(server.data()),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(audit(&server).contains("cessationOfOperation"));
    let operational = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("operational"))
            .map(str::to_string)
            .unwrap_or_default()
    };
    let first = operational(&show("SN-1"));
    assert!(
        first.contains(&serial) && first.contains("revoked"),
        "{first}"
    );
    let second = operational(&show("SN-2"));
    assert!(
        second.contains(&serial_of(&cert2)) && second.contains("valid"),
        "{second}"
    );
}
