//! Issue 15, item 11: the systemd unit in examples/ is hardened as documented, its
//! command line is one `fleetca` accepts, and `systemd-analyze verify` accepts the unit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleetca.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn setting<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_server_unit_is_hardened_and_its_command_line_is_valid() {
    let unit = unit();
    for (key, value) in [
        ("User", "fleetca"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("ReadWritePaths", "/var/lib/fleetca"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(setting(&unit, key), [value], "{key}");
    }
    // ExecStart is a command fleetca accepts: check it against an initialised directory.
    let exec = setting(&unit, "ExecStart");
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(args[0], "/usr/local/bin/fleetca");
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let out = run(Command::new(fleetca_bin())
        .args(args[1..].iter().map(|a| {
            if *a == "/var/lib/fleetca" {
                data.to_str().unwrap()
            } else {
                a
            }
        }))
        .arg("--check-config"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_analyze_verifies_the_server_unit() {
    if !have("systemd-analyze") {
        if std::env::var_os("CI").is_some() {
            panic!("systemd-analyze is required in CI (install systemd in .ci/run)");
        }
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    }
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleetca.service");
    std::fs::write(
        &path,
        unit().replace("/usr/local/bin/fleetca", fleetca_bin().to_str().unwrap()),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}
