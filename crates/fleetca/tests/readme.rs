//! Runs the README's walkthrough, Factory and CA rollover sections exactly as written (only the three variables that name the
//! binary, the data directory and the server address are pointed at this test's server),
//! so the README cannot rot.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::process::Command;

use common::*;

/// The shell code of the README section between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
fn section(name: &str) -> String {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find(&format!("<!-- {name}:begin -->"))
        .expect("begin marker");
    let end = readme
        .find(&format!("<!-- {name}:end -->"))
        .expect("end marker");
    let section = &readme[start..end];
    let mut script = String::new();
    let mut in_block = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            script.push_str(line);
            script.push('\n');
        }
    }
    script
}

/// Runs a README section with bash in a fresh directory, its `FLEETCA=`, `DATA=` and
/// server-address (`EST=`/`SERVER=`, port 8443) lines pointed at `server`; returns
/// (success, stdout, stderr).
fn run_section(name: &str, server: &Server) -> (bool, String, String) {
    let script = section(name);
    for var in ["FLEETCA=", "DATA="] {
        assert_eq!(
            script.lines().filter(|l| l.starts_with(var)).count(),
            1,
            "{var} must be set once in the {name} section"
        );
    }
    let port = server.addr.rsplit(':').next().unwrap();
    let script: String = script
        .lines()
        .map(|l| {
            if l.starts_with("FLEETCA=") {
                format!("FLEETCA={}", fleetca_bin().display())
            } else if l.starts_with("DATA=") {
                format!("DATA={}", server.data().display())
            } else if l.starts_with("EST=") || l.starts_with("SERVER=") {
                l.replace(":8443", &format!(":{port}"))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let work = tempfile::tempdir().unwrap();
    let out = run(Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(work.path()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let (ok, stdout, stderr) = run_section("walkthrough", &server);
    assert!(
        ok,
        "walkthrough failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    // What a reader is told to expect.
    assert!(
        stdout.contains("subject=CN = SN-0001, serialNumber = SN-0001"),
        "{stdout}"
    );
    assert!(
        stdout.contains("issuer=O = Test Fleet, CN = Test Fleet Operational CA"),
        "{stdout}"
    );
    assert!(stdout.contains("device-new.pem: OK"), "{stdout}");
    let listed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("SN-0001"))
        .collect();
    assert_eq!(listed.len(), 3, "birth + operational + renewal: {stdout}");
    assert_eq!(listed.iter().filter(|l| l.contains(" birth ")).count(), 1);
}

#[test]
fn the_readme_factory_section_runs_as_written() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let (ok, stdout, stderr) = run_section("factory", &server);
    assert!(
        ok,
        "factory section failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for file in ["agent.toml", "birth.key", "birth.pem", "chain.pem"] {
        assert!(
            stdout.contains(file),
            "{file} missing from the bundle listing: {stdout}"
        );
    }
    let station = stdout
        .lines()
        .find(|l| l.starts_with("line-1"))
        .expect("station line");
    assert!(
        station.contains(" 4 ") && station.contains(" 996 "),
        "{station}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("station:line-1") && l.contains("granted"))
            .count(),
        4,
        "{stdout}"
    );
    assert!(stderr.contains("provisioned 3 device(s)"), "{stderr}");
}

#[test]
fn the_readme_ca_rollover_section_runs_as_written() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let (ok, stdout, stderr) = run_section("ca-rollover", &server);
    assert!(
        ok,
        "ca-rollover section failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("operational CA generation 2 created"),
        "{stderr}"
    );
    let states = |line: &str| {
        stdout
            .lines()
            .filter(|l| l.starts_with("operational"))
            .any(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ") == line)
    };
    // First listing: generation 2 pending; second: active, generation 1 retiring.
    assert!(states("operational 2 pending"), "{stdout}");
    assert!(states("operational 2 active"), "{stdout}");
    assert!(states("operational 1 retiring"), "{stdout}");
    assert!(
        stdout.contains("CN = Test Fleet Operational CA G2"),
        "{stdout}"
    );
    assert!(stdout.contains("CN = Test Fleet Root CA"), "{stdout}");
    // The root rollover: pending for a week, with every issuing CA re-certified under it.
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == ["root", "2", "pending"]),
        "{stdout}"
    );
    assert!(states("operational 3 pending"), "{stdout}");
    assert!(stderr.contains("link certificate"), "{stderr}");
}

/// The `fleetca init` synopsis under "What `fleetca init` creates" lists exactly the
/// options `fleetca init --help` accepts (it lacked --listen and --status-listen).
#[test]
fn the_readme_init_synopsis_lists_the_options_of_init_help() {
    fn options(text: &str) -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(str::to_string)
            .collect()
    }
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("`fleetca init --data-dir DIR")
        .expect("the init synopsis");
    let synopsis = &readme[start + 1..];
    let synopsis = &synopsis[..synopsis.find('`').unwrap()];
    let help = run_ok(Command::new(fleetca_bin()).args(["init", "--help"]));
    let help = String::from_utf8(help.stdout).unwrap();
    // Option lines start with the flag; descriptions may mention others.
    let flags: String = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .map(|l| format!("--{} ", l.split_whitespace().next().unwrap_or_default()))
        .collect();
    let mut expected = options(&flags);
    expected.remove("--help");
    assert!(expected.contains("--status-listen"), "{help}");
    assert_eq!(
        options(synopsis),
        expected,
        "README: {synopsis}\nhelp: {help}"
    );
}
