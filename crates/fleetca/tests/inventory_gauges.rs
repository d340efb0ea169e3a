//! Issue 13, "Also": `fleetca_certificates` follows the inventory within seconds of an
//! issuance or a revocation, not at the next expiry scan (15 minutes by default; an hour
//! here, so only the fix can make the test pass).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn metrics(server: &Server) -> String {
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://{}/metrics", server.metrics_addr)));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gauge(text: &str, labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("fleetca_certificates{{{labels}}} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls /metrics until `labels` reads `want` (at most 15 s).
fn wait_for(server: &Server, labels: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = metrics(server);
        if gauge(&text, labels) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "fleetca_certificates{{{labels}}} never became {want}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_certificate_gauge_follows_enrollment_and_revocation() {
    require_tools!("openssl", "curl");
    let server = Server::start_with(|c| {
        *c = c.replace("scan_interval = \"15m\"", "scan_interval = \"1h\"");
    });
    let valid = "kind=\"operational\",status=\"valid\"";
    let revoked = "kind=\"operational\",status=\"revoked\"";
    let (bk, bc) = birth(&server, "SN-G1");
    let (_, op) = enroll(
        &server,
        "simpleenroll",
        (&bc, &bk),
        "/CN=SN-G1/serialNumber=SN-G1",
        "SN-G1-op",
    );
    wait_for(&server, valid, 1.0);
    // The birth certificate was issued by another process (the CLI): counted with it.
    wait_for(&server, "kind=\"birth\",status=\"valid\"", 1.0);

    let out = run(Command::new(fleetca_bin())
        .args([
            "cert",
            "revoke",
            &serial_of(&op),
            "--reason",
            "keyCompromise",
            "--yes",
        ])
        .arg("--data-dir")
        .arg(server.data()));
    assert!(out.status.success(), "{out:?}");
    wait_for(&server, revoked, 1.0);
    wait_for(&server, valid, 0.0);
}
