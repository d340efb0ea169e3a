//! Runs the README's walkthrough, Factory, CA rollover and CMP sections exactly as written (only the three variables that name the
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
/// server-address (`EST=`/`SERVER=`, port 8443; any variable set to an address with the
/// admin API's port 8444) lines pointed at `server`; returns (success, stdout, stderr).
fn run_section(name: &str, server: &Server) -> (bool, String, String) {
    run_section_with_env(name, server, &[])
}

/// [`run_section`] with extra environment variables (a client daemon's address), and the
/// `SCEP=` line (port 8081) pointed at the server's SCEP listener.
fn run_section_with_env(
    name: &str,
    server: &Server,
    env: &[(String, String)],
) -> (bool, String, String) {
    let script = section(name);
    for var in ["FLEETCA=", "DATA="] {
        assert_eq!(
            script.lines().filter(|l| l.starts_with(var)).count(),
            1,
            "{var} must be set once in the {name} section"
        );
    }
    let port = server.addr.rsplit(':').next().unwrap();
    let admin_port = (!server.admin_addr.is_empty())
        .then(|| server.admin_addr.rsplit(':').next().unwrap().to_string());
    let assignment = regex::Regex::new(r"^[A-Z_][A-Z0-9_]*=").unwrap();
    let script: String = script
        .lines()
        .map(|l| {
            if l.starts_with("FLEETCA=") {
                format!("FLEETCA={}", fleetca_bin().display())
            } else if l.starts_with("DATA=") {
                format!("DATA={}", server.data().display())
            } else if l.starts_with("EST=") || l.starts_with("SERVER=") {
                l.replace(":8443", &format!(":{port}"))
            } else if l.starts_with("SCEP=") {
                l.replace("127.0.0.1:8081", &server.scep_addr)
            } else if let (Some(admin), true) = (&admin_port, assignment.is_match(l)) {
                l.replace(":8444", &format!(":{admin}"))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let work = tempfile::tempdir().unwrap();
    let out = run(Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .envs(env.iter().map(|(k, v)| (k, v)))
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

#[test]
fn the_readme_scep_section_runs_as_written() {
    require_tools!("certmonger", "openssl", "curl");
    let server = Server::start_with(|config| {
        config.push_str("\n[scep]\nhttp_listen = \"127.0.0.1:0\"\n");
    });
    let certmonger = common::certmonger::Certmonger::start();
    let (ok, stdout, stderr) = run_section_with_env("scep", &server, &certmonger.environment());
    assert!(
        ok,
        "scep section failed\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        server.log()
    );
    assert!(stdout.contains("SCEPStandard"), "{stdout}");
    assert_eq!(
        stdout.matches("device.pem: OK").count(),
        2,
        "enrolled and renewed: {stdout}"
    );
    assert!(
        stdout.contains("subject=CN = SN-0100, serialNumber = SN-0100"),
        "{stdout}"
    );
    let log = server.log();
    assert!(
        log.contains("operation=\"simpleenroll\" client=\"secret\""),
        "{log}"
    );
    assert!(
        log.contains("operation=\"simplereenroll\" client=\"operational\""),
        "{log}"
    );
}

#[test]
fn the_readme_scep_legacy_section_runs_as_written() {
    require_tools!("scepclient", "openssl", "curl");
    let server = Server::start_with(|config| {
        common::scep::add_legacy_profile(config, "old-gear", true);
    });
    let (ok, stdout, stderr) = run_section_with_env("scep-legacy", &server, &[]);
    assert!(
        ok,
        "scep-legacy section failed\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        server.log()
    );
    assert!(
        stdout.lines().any(|l| l == "DES3") && stdout.lines().any(|l| l == "SHA-1"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("dev/cert.pem: OK").count(),
        2,
        "enrolled and renewed: {stdout}"
    );
    let log = server.log();
    for message_type in ["PKCSReq", "RenewalReq"] {
        assert!(
            log.lines().any(|l| l.contains("SCEP request answered")
                && l.contains(&format!("message_type=\"{message_type}\""))
                && l.contains("cipher=\"DES-CBC\"")
                && l.contains("status=\"SUCCESS\"")),
            "{message_type}: {log}"
        );
    }
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

/// Issue 16: the README's "Admin API" curl examples, run as written against a server with
/// the admin API: a token made with the CLI, the expiring report as JSON and CSV, a
/// revocation, and an approval; then the waiting device's next poll gets its certificate.
#[test]
fn the_readme_admin_api_section_runs_as_written() {
    require_tools!("openssl", "curl", "jq");
    let dir = Server::prepare(|config| {
        let from = "[profiles.operational]\n";
        assert!(config.contains(from));
        *config = config.replacen(
            from,
            "[profiles.operational]\nmanual_approval = \"device.serial.startsWith('NEW-')\"\n",
            1,
        );
    });
    let server = Server::spawn_with(dir, Vec::new(), &["--admin-listen", "127.0.0.1:0"]);
    // A device with an operational certificate (the one that expires first), and one
    // whose first enrollment waits for approval.
    let (birth_key, birth_cert) = birth(&server, "SN-RA1");
    let (_, operational) = enroll(
        &server,
        "simpleenroll",
        (birth_cert.as_path(), birth_key.as_path()),
        "/CN=SN-RA1/serialNumber=SN-RA1",
        "SN-RA1-op",
    );
    let (wait_key, wait_cert) = birth(&server, "NEW-RA2");
    let key = server.work("NEW-RA2.key");
    let csr = server.work("NEW-RA2.csr.b64");
    new_key(&key);
    new_csr_b64(&key, "/CN=NEW-RA2/serialNumber=NEW-RA2", &csr);
    let poll = || {
        post_csr(
            &server,
            "simpleenroll",
            Some((wait_cert.as_path(), wait_key.as_path())),
            &csr,
            &[],
        )
    };
    assert_eq!(poll().status, 202);

    let (ok, stdout, stderr) = run_section("admin-api", &server);
    assert!(
        ok,
        "admin-api section failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(
        stdout.contains("\"actor\":\"token:ops-automation\""),
        "{stdout}"
    );
    // The CSV report's header row.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(',') && l.contains("serial")),
        "{stdout}"
    );

    // The revoked certificate is the operational one; the approved device gets its own.
    let revoked = serial_of(&operational);
    let list = run_ok(
        Command::new(fleetca_bin())
            .args(["cert", "list", "--device", "SN-RA1", "--data-dir"])
            .arg(server.data()),
    );
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let line = list
        .lines()
        .find(|l| l.contains(&revoked))
        .unwrap_or_else(|| panic!("{revoked} not listed: {list}"));
    assert!(line.contains("revoked"), "{line}");
    let issued = poll();
    assert_eq!(issued.status, 200, "{}", issued.text());
    let pem = server.work("NEW-RA2.pem");
    certs_only_to_pem(&issued.body, &pem);
    let subject = openssl(&["x509", "-in", pem.to_str().unwrap(), "-noout", "-subject"]);
    assert!(String::from_utf8_lossy(&subject.stdout).contains("NEW-RA2"));
}

/// Issue 19: the README's "CMP" section, run as written with `openssl cmp` against a server
/// with `[cmp] enabled`: ir with a birth certificate, kur, ir with a one-time secret, genm
/// and rr; every certificate verifies to the root.
#[test]
fn the_readme_cmp_section_runs_as_written() {
    require_tools!("openssl");
    let server = common::cmp::cmp_server(|_| {});
    let (ok, stdout, stderr) = run_section("cmp", &server);
    assert!(
        ok,
        "cmp section failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for cert in ["device.pem: OK", "device2.pem: OK", "line.pem: OK"] {
        assert!(stdout.contains(cert), "{stdout}");
    }
    let printed = format!("{stdout}{stderr}");
    assert!(printed.contains("id-it-caCerts"), "{printed}");
    assert!(printed.contains("revocation accepted"), "{printed}");
}
