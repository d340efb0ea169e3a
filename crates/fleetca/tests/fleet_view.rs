//! Issue 15, item 8: the fleet on the command line. `device list` with its filters and
//! paging, `device show` with the certificate lineage, `--format table|json|csv` on the
//! lists, and no panic when stdout's reader goes away (`fleetca cert list | head -1`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

fn fleetca(server: &Server, args: &[&str]) -> Output {
    let out = run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(server.data()));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// First column of each table row after the header.
fn first_column(o: &Output) -> Vec<String> {
    let text = stdout(o);
    let mut lines = text.lines();
    assert!(lines.next().unwrap_or("").starts_with("SERIAL"), "{text}");
    lines
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// Provisions `serial` through a factory station with a model and batch; returns the
/// bundle directory.
fn provision(server: &Server, cred: &(PathBuf, PathBuf), serial: &str, model: &str) -> PathBuf {
    let out_dir = server.work("bundles");
    let url = format!("https://{}", server.addr);
    let out = run(Command::new(fleetca_bin()).args([
        "factory",
        "provision",
        "--server",
        &url,
        "--ca",
        p(&server.root()),
        "--station-cert",
        p(&cred.0),
        "--station-key",
        p(&cred.1),
        "--out",
        p(&out_dir),
        "--serial",
        serial,
        "--model",
        model,
        "--batch",
        "B1",
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out_dir.join(serial)
}

fn fleet() -> Server {
    let server = Server::start();
    let stations = server.work("stations");
    fleetca(
        &server,
        &[
            "factory",
            "add-station",
            "line-f",
            "--serial-pattern",
            "SN-[0-9]+",
            "--out",
            p(&stations),
        ],
    );
    let cred = (stations.join("line-f.pem"), stations.join("line-f.key"));
    let sn1 = provision(&server, &cred, "SN-1", "m1");
    provision(&server, &cred, "SN-2", "m2");
    birth(&server, "SN-3");
    // SN-1 enrolls and renews once: birth -> operational -> renewal.
    let (op_key, op_cert) = enroll(
        &server,
        "simpleenroll",
        (&sn1.join("birth.pem"), &sn1.join("birth.key")),
        "/CN=SN-1/serialNumber=SN-1",
        "SN-1-op",
    );
    enroll(
        &server,
        "simplereenroll",
        (&op_cert, &op_key),
        "/CN=SN-1/serialNumber=SN-1",
        "SN-1-renewed",
    );
    fleetca(
        &server,
        &["device", "suspend", "SN-2", "--comment", "x, \"y\""],
    );
    server
}

#[test]
fn device_list_filters_and_pages_and_device_show_tells_the_lineage() {
    require_tools!("openssl", "curl");
    let server = fleet();
    let list = |extra: &[&str]| {
        let mut args = vec!["device", "list"];
        args.extend(extra);
        first_column(&fleetca(&server, &args))
    };
    assert_eq!(list(&[]), ["SN-1", "SN-2", "SN-3"]);
    for (filter, expected) in [
        (vec!["--model", "m1"], vec!["SN-1"]),
        (vec!["--batch", "B1"], vec!["SN-1", "SN-2"]),
        (vec!["--station", "line-f"], vec!["SN-1", "SN-2"]),
        (vec!["--status", "suspended"], vec!["SN-2"]),
        (vec!["--status", "manufactured"], vec!["SN-3"]),
        (vec!["--profile", "operational"], vec!["SN-1"]),
        (vec!["--serial-prefix", "SN-3"], vec!["SN-3"]),
        (
            vec!["--serial-prefix", "SN-", "--model", "m2"],
            vec!["SN-2"],
        ),
    ] {
        assert_eq!(list(&filter), expected, "{filter:?}");
    }
    // A list cut at its limit says so and how to go on; the next page follows.
    let page = fleetca(&server, &["device", "list", "--limit", "1"]);
    assert_eq!(first_column(&page), ["SN-1"]);
    let note = String::from_utf8_lossy(&page.stderr);
    assert!(
        note.contains("cut at its limit") && note.contains("--after SN-1"),
        "{note}"
    );
    assert_eq!(list(&["--after", "SN-1", "--limit", "1"]), ["SN-2"]);
    // The audit trail and the decision log page back by id.
    for history in ["audit", "decision"] {
        let ids = |extra: &[&str]| -> (Vec<i64>, String) {
            let mut args = vec![history, "list", "--format", "json"];
            args.extend(extra);
            let out = fleetca(&server, &args);
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let ids = json
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap())
                .collect();
            (ids, String::from_utf8_lossy(&out.stderr).into_owned())
        };
        let (all, _) = ids(&[]);
        assert!(all.len() >= 4, "{history}: {all:?}");
        let (newest, note) = ids(&["--limit", "2"]);
        assert_eq!(newest, all[all.len() - 2..], "{history}");
        let oldest_shown = newest[0].to_string();
        assert!(
            note.contains("cut at its limit") && note.contains(&format!("--before {oldest_shown}")),
            "{history}: {note}"
        );
        let (older, _) = ids(&["--limit", "2", "--before", &oldest_shown]);
        assert_eq!(older, all[all.len() - 4..all.len() - 2], "{history}");
    }
    let whole = fleetca(&server, &["device", "list"]);
    assert!(!String::from_utf8_lossy(&whole.stderr).contains("cut"));
    // A bad filter value is refused by name.
    let bad = run(Command::new(fleetca_bin())
        .args(["device", "list", "--status", "asleep", "--data-dir"])
        .arg(server.data()));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown device status 'asleep'"));

    let show = stdout(&fleetca(&server, &["device", "show", "SN-1"]));
    for needle in [
        "status:       active",
        "birth issuer: manufacturing",
        "station:      line-f",
        "model:        m1",
        "batch:        B1",
        "open escalations: none",
    ] {
        assert!(show.contains(needle), "{needle}:\n{show}");
    }
    let json: serde_json::Value = serde_json::from_slice(
        &fleetca(&server, &["device", "show", "SN-1", "--format", "json"]).stdout,
    )
    .unwrap();
    let roles: Vec<&str> = json["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["birth", "operational", "renewal"], "{json}");
    let certs = json["certificates"].as_array().unwrap();
    assert_eq!(certs[2]["renews"], certs[1]["serial"]);
    assert_eq!(certs[1]["renewed_by"], certs[2]["serial"]);
    let outcomes: Vec<&str> = json["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.len() >= 2 && outcomes.iter().all(|o| *o == "issued"),
        "{json}"
    );
    let missing = run(Command::new(fleetca_bin())
        .args(["device", "show", "SN-404", "--data-dir"])
        .arg(server.data()));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no device SN-404"));
}

#[test]
fn lists_speak_table_json_and_csv() {
    require_tools!("openssl", "curl");
    let server = fleet();
    for list in [
        vec!["cert", "list"],
        vec!["device", "list"],
        vec!["decision", "list"],
        vec!["audit", "list"],
        vec!["alerts", "list", "--all"],
    ] {
        // JSON: an array of objects.
        let mut args = list.clone();
        args.extend(["--format", "json"]);
        let json: serde_json::Value = serde_json::from_slice(&fleetca(&server, &args).stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let rows = json
            .as_array()
            .unwrap_or_else(|| panic!("{args:?}: {json}"));
        // CSV: a header row, then as many records as JSON has objects.
        let mut args = list.clone();
        args.extend(["--format", "csv"]);
        let out = fleetca(&server, &args);
        let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
        let headers = reader.headers().unwrap().clone();
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), rows.len(), "{args:?}");
        if let Some(first) = rows.first() {
            assert_eq!(
                headers.len(),
                first.as_object().unwrap().len(),
                "{args:?}: {headers:?}"
            );
        }
        // Table: a header row in capitals.
        let table = stdout(&fleetca(&server, &list));
        let header = table.lines().next().unwrap_or("");
        assert_eq!(header, header.to_uppercase(), "{list:?}: {table}");
        assert!(!header.is_empty(), "{list:?}");
    }
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(
            &fleetca(&server, &["cert", "list", "--format", "json"]).stdout
        )
        .unwrap()
        .as_array()
        .unwrap()
        .len(),
        5,
        "3 birth, 1 operational, 1 renewal"
    );
    // CSV quoting is the csv crate's: a comment with a comma and quotes reads back whole.
    let out = fleetca(&server, &["audit", "list", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let detail = reader
        .records()
        .map(Result::unwrap)
        .find(|r| r.get(3) == Some("device-suspend"))
        .unwrap();
    assert_eq!(detail.get(6), Some("comment: x, \"y\""));
}

#[test]
fn no_command_panics_when_its_reader_goes_away() {
    require_tools!("openssl", "curl");
    let server = fleet();
    for args in [
        vec!["cert", "list"],
        vec!["cert", "list", "--format", "json"],
        vec!["device", "list", "--format", "csv"],
        vec!["device", "show", "SN-1"],
        vec!["device", "show", "SN-1", "--format", "json"],
        vec!["decision", "list", "--verbose"],
        vec!["audit", "list"],
        vec!["alerts", "list", "--format", "csv"],
        vec!["cert", "show", "--help"],
        vec!["factory", "list"],
        vec!["request", "list", "--all"],
    ] {
        let mut child = Command::new(fleetca_bin())
            .args(&args)
            .arg("--data-dir")
            .arg(server.data())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command writes (as `| head -0` would).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
    }
}
