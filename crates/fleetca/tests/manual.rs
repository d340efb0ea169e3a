//! Issue 15, item 11: shell completions and man pages generated from the CLI definition.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use common::*;

fn fleetca(args: &[&str]) -> std::process::Output {
    let out = run(Command::new(fleetca_bin()).args(args));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn completions_cover_every_command_and_bash_parses_them() {
    let bash = fleetca(&["completions", "bash"]).stdout;
    let text = String::from_utf8_lossy(&bash);
    for needle in [
        "_fleetca",
        "fleetca__subcmd__device__subcmd__list",
        "--serial-prefix",
        "set-quota",
        "restore",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fleetca.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = run(Command::new("bash").arg("-n").arg(&script));
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(
            !fleetca(&["completions", shell]).stdout.is_empty(),
            "{shell}"
        );
    }
    let bad = run(Command::new(fleetca_bin()).args(["completions", "tcsh"]));
    assert!(!bad.status.success());
}

#[test]
fn man_pages_are_written_for_every_command() {
    let top = String::from_utf8(fleetca(&["man"]).stdout).unwrap();
    assert!(
        top.contains(".TH fleetca") && top.contains("certificate authority"),
        "{top}"
    );
    let dir = tempfile::tempdir().unwrap();
    fleetca(&["man", "--out", dir.path().to_str().unwrap()]);
    for (page, needle) in [
        ("fleetca.1", "backup"),
        ("fleetca-device-list.1", "serial\\-prefix"),
        ("fleetca-cert-revoke.1", "keyCompromise"),
        ("fleetca-factory-set-quota.1", "quota"),
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
        assert!(text.contains(needle), "{page}: {needle}\n{text}");
    }
}
