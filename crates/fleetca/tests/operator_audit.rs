//! Issue 15, item 7: every state-changing operator command appends an audit event with
//! its actor (`cli:<os user>`) and the operator's comment or reason; irreversible commands
//! ask on a terminal and refuse without one unless given `--yes`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::{Command, Output};

use common::*;

const USER: &str = "ops-auditor";

/// `fleetca ARGS --data-dir DATA` run as OS user `user` (no terminal on stdin).
fn fleetca_as(server: &Server, user: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(fleetca_bin());
    cmd.args(args).arg("--data-dir").arg(server.data());
    cmd.env_remove("USER").env_remove("LOGNAME");
    if let Some(u) = user {
        cmd.env("USER", u);
    }
    run(&mut cmd)
}

fn ok(server: &Server, args: &[&str]) -> Output {
    let out = fleetca_as(server, Some(USER), args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A first enrollment of `serial` with its birth certificate: (status, key, csr, birth).
fn first_enrollment(server: &Server, serial: &str) -> (u16, std::path::PathBuf) {
    let (birth_key, birth_cert) = birth(server, serial);
    let key = server.work(&format!("{serial}.key"));
    let csr = server.work(&format!("{serial}.csr.b64"));
    new_key(&key);
    new_csr_b64(&key, &format!("/CN={serial}/serialNumber={serial}"), &csr);
    let a = post_csr(
        server,
        "simpleenroll",
        Some((birth_cert.as_path(), birth_key.as_path())),
        &csr,
        &[],
    );
    (a.status, birth_cert)
}

fn request_id(server: &Server, serial: &str) -> String {
    let list = text(&ok(server, &["request", "list"]));
    list.lines()
        .find(|l| l.contains(serial))
        .unwrap_or_else(|| panic!("{list}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn every_operator_command_is_audited_with_its_actor_and_reason() {
    require_tools!("openssl", "curl");
    // Every operational enrollment waits for a person: approve and reject have work.
    let server = Server::start_with(|config| {
        *config = config.replacen(
            "[profiles.operational]\n",
            "[profiles.operational]\nmanual_approval = \"true\"\n",
            1,
        );
    });
    let (status, _) = first_enrollment(&server, "SN-AU1");
    assert_eq!(status, 202);
    let (status, birth2) = first_enrollment(&server, "SN-AU2");
    assert_eq!(status, 202);
    let approve = request_id(&server, "SN-AU1");
    let reject = request_id(&server, "SN-AU2");
    let birth2_serial = serial_of(&birth2);

    let ca_key = server.work("vendor.key");
    let ca_cert = server.work("vendor.pem");
    new_key(&ca_key);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        ca_key.to_str().unwrap(),
        "-subj",
        "/CN=Vendor IDevID CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-out",
        ca_cert.to_str().unwrap(),
    ]);
    let stations = server.work("stations");
    let stations = stations.to_str().unwrap();

    // (command, action in the trail, what the trail must say)
    let steps: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec![
                "request",
                "approve",
                &approve,
                "--comment",
                "CHG-1 known batch",
            ],
            "request-approve",
            "CHG-1 known batch",
        ),
        (
            vec!["request", "reject", &reject, "--reason", "not one of ours"],
            "request-reject",
            "reason: not one of ours",
        ),
        (
            vec!["device", "suspend", "SN-AU1", "--comment", "CHG-2 stolen?"],
            "device-suspend",
            "CHG-2 stolen?",
        ),
        (
            vec!["device", "resume", "SN-AU1", "--comment", "CHG-3 found"],
            "device-resume",
            "CHG-3 found",
        ),
        (
            vec![
                "device",
                "force-reenroll",
                "SN-AU1",
                "--comment",
                "CHG-4 rekey",
            ],
            "device-force-reenroll",
            "CHG-4 rekey",
        ),
        (
            vec![
                "cert",
                "revoke",
                &birth2_serial,
                "--reason",
                "keyCompromise",
                "--yes",
                "--comment",
                "CHG-5 key on a forum",
            ],
            "cert-revoke",
            "reason keyCompromise; comment: CHG-5 key on a forum",
        ),
        (
            vec![
                "device",
                "decommission",
                "SN-AU1",
                "--yes",
                "--comment",
                "CHG-6 scrapped",
            ],
            "device-decommission",
            "reason cessationOfOperation; comment: CHG-6 scrapped",
        ),
        (
            vec![
                "factory",
                "add-station",
                "line-au",
                "--serial-pattern",
                "SN-[0-9]+",
                "--quota",
                "10",
                "--out",
                stations,
                "--comment",
                "CHG-7 new line",
            ],
            "station-add",
            "CHG-7 new line",
        ),
        (
            vec!["factory", "suspend", "line-au", "--comment", "CHG-8 audit"],
            "station-suspend",
            "CHG-8 audit",
        ),
        (
            vec!["factory", "resume", "line-au", "--comment", "CHG-9 ok"],
            "station-resume",
            "CHG-9 ok",
        ),
        (
            vec![
                "factory",
                "set-quota",
                "line-au",
                "500",
                "--comment",
                "CHG-10 ramp",
            ],
            "station-set-quota",
            "quota 500; comment: CHG-10 ramp",
        ),
        (
            vec![
                "factory",
                "remove",
                "line-au",
                "--yes",
                "--comment",
                "CHG-11 closed",
            ],
            "station-remove",
            "CHG-11 closed",
        ),
        (
            vec![
                "account",
                "add",
                "bootstrap",
                "--any-serial",
                "--comment",
                "CHG-12",
            ],
            "account-add",
            "comment: CHG-12",
        ),
        (
            vec![
                "trust",
                "add-manufacturer",
                "vendor",
                ca_cert.to_str().unwrap(),
                "--comment",
                "CHG-13 supplier",
            ],
            "trust-add-manufacturer",
            "CHG-13 supplier",
        ),
    ];
    for (args, _, _) in &steps {
        ok(&server, args);
    }
    // A refused change is audited too, as refused.
    let out = fleetca_as(&server, Some(USER), &["device", "resume", "SN-AU1"]);
    assert!(!out.status.success());

    let actor = format!("cli:{USER}");
    let audit = text(&ok(
        &server,
        &["audit", "list", "--actor", &actor, "--limit", "100"],
    ));
    for (args, action, detail) in &steps {
        let line = audit
            .lines()
            .find(|l| l.contains(&format!(" {action} ")) && l.contains(detail))
            .unwrap_or_else(|| panic!("{args:?}: no '{action}' event with '{detail}' in\n{audit}"));
        assert!(line.contains(&actor) && line.contains("granted"), "{line}");
    }
    let refused = audit
        .lines()
        .filter(|l| l.contains(" device-resume ") && l.contains("refused"))
        .count();
    assert_eq!(refused, 1, "{audit}");
    // Birth certificates issued from the CLI name the operator too.
    let all = text(&ok(&server, &["audit", "list", "--limit", "100"]));
    assert!(
        all.lines()
            .any(|l| l.contains(" birth ") && l.contains(" cli:") && l.contains("SN-AU1")),
        "{all}"
    );
    // Nothing under the old anonymous actor, and the chain holds.
    let old = text(&ok(&server, &["audit", "list", "--actor", "admin"]));
    assert_eq!(old.lines().skip(1).count(), 0, "only the header: {old}");
    assert!(text(&ok(&server, &["audit", "verify"])).contains("audit chain intact"));
}

#[test]
fn without_user_or_logname_the_actor_is_the_uid() {
    let server = Server::start();
    let out = fleetca_as(
        &server,
        None,
        &["account", "add", "uidacct", "--any-serial"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit = text(&ok(&server, &["audit", "list"]));
    let line = audit
        .lines()
        .find(|l| l.contains("account-add"))
        .unwrap_or_else(|| panic!("{audit}"));
    assert!(line.contains(" cli:uid"), "{line}");
}

#[test]
fn irreversible_commands_refuse_without_a_terminal_unless_given_yes() {
    require_tools!("openssl");
    let server = Server::start();
    let (_, cert) = birth(&server, "SN-IR1");
    let serial = serial_of(&cert);
    for args in [
        vec!["device", "decommission", "SN-IR1"],
        vec!["cert", "revoke", &serial, "--reason", "keyCompromise"],
    ] {
        let out = fleetca_as(&server, Some(USER), &args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot be undone") && err.contains("add --yes"),
            "{args:?}: {err}"
        );
    }
    // Nothing changed and nothing was recorded.
    let certs = text(&ok(&server, &["cert", "list", "--device", "SN-IR1"]));
    assert!(certs.contains("valid"), "{certs}");
    let audit = text(&ok(
        &server,
        &["audit", "list", "--actor", &format!("cli:{USER}")],
    ));
    assert!(
        !audit.contains("decommission") && !audit.contains("cert-revoke"),
        "{audit}"
    );
    // With --yes it goes ahead.
    ok(&server, &["device", "decommission", "SN-IR1", "--yes"]);
    let certs = text(&ok(&server, &["cert", "list", "--device", "SN-IR1"]));
    assert!(certs.contains("revoked"), "{certs}");
}
