//! Smoke test of `fleetca bench enroll` against a real server: every simulated device
//! enrolls and re-enrolls, and the inventory holds what the bench minted and the server
//! issued. Speed is measured by running the bench, never asserted here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

#[test]
fn bench_enroll_enrolls_and_reenrolls_every_device() {
    let server = common::Server::start();
    let url = format!("https://{}/.well-known/est", server.addr);
    let out = common::run_ok(
        Command::new(common::fleetca_bin())
            .args(["bench", "enroll", "--url", &url, "--ca"])
            .arg(server.root())
            .arg("--data-dir")
            .arg(server.data())
            .args(["--devices", "20", "--concurrency", "4"]),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("requests: 40 ok, 0 failed"),
        "unexpected report:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("errors: none"), "{report}");

    let list = common::run_ok(
        Command::new(common::fleetca_bin())
            .args(["cert", "list", "--limit", "100000", "--data-dir"])
            .arg(server.data()),
    );
    let list = String::from_utf8_lossy(&list.stdout);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .filter(|cols: &Vec<&str>| cols.get(1).is_some_and(|d| d.starts_with("bench-")))
        .collect();
    let kind = |k: &str| rows.iter().filter(|cols| cols[2] == k).count();
    assert_eq!(kind("birth"), 20, "{list}");
    assert_eq!(kind("operational"), 40, "{list}");
    let devices: std::collections::BTreeSet<&str> = rows.iter().map(|cols| cols[1]).collect();
    assert_eq!(devices.len(), 20, "{list}");
    // Each device's first operational certificate was renewed by the second.
    let renewed = rows
        .iter()
        .filter(|cols| cols[2] == "operational" && cols.last() != Some(&"-"))
        .count();
    assert_eq!(renewed, 20, "{list}");
}
