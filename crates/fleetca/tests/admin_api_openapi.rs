//! Issue 16: the admin API's OpenAPI 3.1 document, served at `/api/v1/openapi.json`, is
//! valid by an independent validator (openapi-spec-validator from PyPI), and the real
//! answers of the server (every GET endpoint, the state changes, the error problems) match
//! the schemas it documents (openapi-schema-validator's OAS 3.1 dialect of JSON Schema). The
//! Python side is `admin_api_openapi.py`, run in the virtual environment `.ci/run` makes at
//! `target/openapi-venv` (or `FLEETCA_OPENAPI_VENV`). In CI (`CI` set) a missing venv fails
//! the test; elsewhere it skips, saying so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod admin_api;
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use admin_api::*;
use common::*;
use serde_json::{json, Value};

/// The venv's python, when the venv exists.
fn venv_python() -> Option<PathBuf> {
    let dir = match std::env::var_os("FLEETCA_OPENAPI_VENV") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/openapi-venv"),
    };
    let python = dir.join("bin/python");
    dir.join("bin/openapi-spec-validator")
        .exists()
        .then_some(python)
}

macro_rules! require_venv {
    () => {
        match venv_python() {
            Some(p) => p,
            None => {
                if std::env::var_os("CI").is_some() {
                    panic!("target/openapi-venv (openapi-spec-validator) is required in CI: .ci/run makes it");
                }
                eprintln!(
                    "SKIPPED: no openapi-spec-validator venv (run .ci/run, or python3 -m venv \
                     target/openapi-venv && target/openapi-venv/bin/pip install \
                     openapi-spec-validator, or set FLEETCA_OPENAPI_VENV)"
                );
                return;
            }
        }
    };
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/admin_api_openapi.py")
}

/// Runs the checker; returns (success, its report).
fn check(python: &Path, args: &[&Path], mode: &str) -> (bool, String) {
    let out = run(Command::new(python).arg(script()).arg(mode).args(args));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn sample(template: &str, r: &Reply) -> Value {
    let is_json = r.content_type().contains("json");
    json!({
        "method": r.method,
        "template": template,
        "status": r.status,
        "content_type": r.content_type(),
        "body": if is_json && !r.body.is_empty() { r.json() } else { Value::Null },
    })
}

#[test]
fn the_served_document_is_valid_openapi_3_1_and_real_answers_match_it() {
    require_tools!("openssl", "curl");
    let python = require_venv!();
    // Short-lived certificates inside a notice tier: the monitor opens an alert.
    let api = Api::start_with(short_lived_with_a_half_life_tier);
    let server = &api.server;
    let admin = api.admin();
    let viewer = api.token("openapi-viewer", "viewer");

    // Something of everything, so the lists are not empty.
    api.fleetca(&[
        "factory",
        "add-station",
        "line-o",
        "--serial-pattern",
        "SN-O[0-9]+",
        "--out",
        server.work("stations").to_str().unwrap(),
    ]);
    let mut device = Device::enroll(server, "SN-O1");
    device.renew(server);
    let other = Device::enroll(server, "SN-O2");
    let pending = Pending::start(server, "NEW-O1");
    let approval = approval_id(&api, &admin, &pending.serial);
    fleetca_ok(
        server,
        &[
            "account",
            "add",
            "acct-o",
            "--any-serial",
            "--password-stdin",
        ],
        Some("OpenApi-Account-Pass-42\n"),
    );
    api.user("openapi-user", "auditor");
    api.fleetca(&["monitor", "run-once"]);
    assert!(!api.get(&admin, "/alerts").items().is_empty());

    let doc_reply = api.send(Call::new("GET", "/openapi.json")).expect(200);
    let doc = doc_reply.json();
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1"),
        "not OpenAPI 3.1: {}",
        doc["openapi"]
    );
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("openapi.json");
    std::fs::write(&spec, &doc_reply.body).unwrap();
    let (ok, report) = check(&python, &[&spec], "spec");
    assert!(ok, "openapi-spec-validator refuses the document:\n{report}");

    let mut samples = Vec::new();
    let mut record = |template: &str, r: Reply| {
        samples.push(sample(template, &r));
        r
    };
    // State changes first, so the GETs below show their results.
    let cert = other.cert_serial();
    record(
        "/devices/{serial}/suspend",
        api.post(
            &admin,
            "/devices/SN-O2/suspend",
            json!({"comment": "openapi"}),
        ),
    )
    .expect(200);
    record(
        "/devices/{serial}/resume",
        api.post(&admin, "/devices/SN-O2/resume", json!({})),
    )
    .expect(200);
    record(
        "/certificates/{serial}/revoke",
        api.post(
            &admin,
            &format!("/certificates/{cert}/revoke"),
            json!({"reason": "superseded"}),
        ),
    )
    .expect(200);
    record(
        "/tokens",
        api.post(
            &admin,
            "/tokens",
            json!({"name": "openapi-made", "role": "viewer"}),
        ),
    )
    .expect(201);
    record(
        "/login",
        api.send(
            Call::new("POST", "/login")
                .json(&json!({"name": "openapi-user", "password": PASSWORD})),
        ),
    )
    .expect(200);

    // Every GET of the document, with real ids.
    let paths: BTreeMap<&str, String> = [
        ("/me", "/me".to_string()),
        ("/devices", "/devices?limit=5".into()),
        ("/devices/{serial}", format!("/devices/{}", device.serial)),
        ("/certificates", "/certificates?limit=5".into()),
        (
            "/certificates/{serial}",
            format!("/certificates/{}", device.cert_serial()),
        ),
        ("/approvals", "/approvals".into()),
        ("/approvals/{id}", format!("/approvals/{approval}")),
        ("/decisions", "/decisions?limit=5".into()),
        ("/stations", "/stations".into()),
        ("/accounts", "/accounts".into()),
        ("/alerts", "/alerts?state=all".into()),
        ("/reports/expiring", "/reports/expiring?within=400d".into()),
        ("/audit", "/audit?limit=20".into()),
        ("/audit/verify", "/audit/verify".into()),
        ("/stats", "/stats?days_ahead=30&days_back=30".into()),
        ("/users", "/users".into()),
        ("/tokens", "/tokens".into()),
    ]
    .into_iter()
    .collect();
    let documented_gets: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, item)| item.get("get").is_some())
        .map(|(p, _)| p.strip_prefix("/api/v1").unwrap_or(p).to_string())
        .filter(|p| p != "/openapi.json")
        .collect();
    for template in &documented_gets {
        let path = paths.get(template.as_str()).unwrap_or_else(|| {
            panic!("GET {template} is documented but this test has no call for it: add one")
        });
        record(template, api.get(&admin, path)).expect(200);
    }
    // The other representations of documented GETs.
    let cert_path = format!("/certificates/{}", device.cert_serial());
    for accept in ["application/pem-certificate-chain", "application/pkix-cert"] {
        record(
            "/certificates/{serial}",
            api.send(
                Call::new("GET", &cert_path)
                    .bearer(&admin)
                    .header("accept", accept),
            ),
        )
        .expect(200);
    }
    record(
        "/reports/expiring",
        api.send(
            Call::new("GET", "/reports/expiring?within=400d")
                .bearer(&admin)
                .header("accept", "text/csv"),
        ),
    )
    .expect(200);
    // Problems.
    record("/devices/{serial}", api.get(&admin, "/devices/SN-NOSUCH")).expect(404);
    record("/devices", api.send(Call::new("GET", "/devices"))).expect(401);
    record("/audit", api.get(&viewer, "/audit")).expect(403);
    record("/devices", api.get(&admin, "/devices?limit=100000")).expect(400);
    record(
        "/approvals/{id}/approve",
        api.post(&admin, &format!("/approvals/{approval}/approve"), json!({})),
    )
    .expect(200);
    record(
        "/approvals/{id}/approve",
        api.post(&admin, &format!("/approvals/{approval}/approve"), json!({})),
    )
    .expect(409);

    let samples_file = work.path().join("samples.json");
    std::fs::write(&samples_file, serde_json::to_vec_pretty(&samples).unwrap()).unwrap();
    let (ok, report) = check(&python, &[&spec, &samples_file], "responses");
    eprintln!("{report}");
    assert!(
        ok,
        "answers that do not match the documented schemas:\n{report}"
    );
}

/// The checker is not a rubber stamp: a document with a broken reference and an answer
/// that contradicts its schema are both refused.
#[test]
fn the_checker_refuses_a_broken_document_and_a_wrong_answer() {
    let python = require_venv!();
    let work = tempfile::tempdir().unwrap();
    let doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/api/v1/devices": {"get": {"responses": {"200": {
            "description": "devices",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}
        }}}}},
        "components": {"schemas": {"Page": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": {"type": "array", "items": {"type": "string"}},
                "next_cursor": {"type": ["string", "null"]}
            }
        }}}
    });
    let spec = work.path().join("good.json");
    std::fs::write(&spec, doc.to_string()).unwrap();
    assert!(check(&python, &[&spec], "spec").0);

    let mut broken = doc.clone();
    broken["paths"]["/api/v1/devices"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"]["$ref"] = json!("#/components/schemas/Nowhere");
    let broken_file = work.path().join("broken.json");
    std::fs::write(&broken_file, broken.to_string()).unwrap();
    let (ok, report) = check(&python, &[&broken_file], "spec");
    assert!(!ok, "a dangling $ref passed: {report}");

    let answers = json!([
        {"method": "GET", "template": "/devices", "status": 200,
         "content_type": "application/json", "body": {"items": ["a"], "next_cursor": null}},
        {"method": "GET", "template": "/devices", "status": 200,
         "content_type": "application/json", "body": {"items": [1]}}
    ]);
    let answers_file = work.path().join("answers.json");
    std::fs::write(&answers_file, answers.to_string()).unwrap();
    let (ok, report) = check(&python, &[&spec, &answers_file], "responses");
    assert!(!ok, "a wrong answer passed: {report}");
    assert!(report.contains("ok   GET /devices -> 200"), "{report}");
    assert!(report.contains("is not of type 'string'"), "{report}");
    assert!(
        report.contains("'next_cursor' is a required property"),
        "{report}"
    );
}
