//! Issue 16: the admin API's resources and verbs behave as the contract says, against a
//! real server whose devices enroll over EST: the device detail's certificate lineage after
//! a real renewal, the device actions and their effect on EST, revocation seen by the API,
//! OCSP and the CRL, approvals honoured by the device's next poll, stations made from a
//! CSR, enrollment accounts, the certificate in three representations, the statistics and
//! the expiring report as JSON and CSV.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod admin_api;
mod common;

use std::path::Path;
use std::process::Command;

use admin_api::*;
use common::*;
use serde_json::{json, Value};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The serial of a device item (the contract names the field of the summary `serial`;
/// the store calls it `serial_number`).
fn device_serial(item: &Value) -> String {
    item["serial"]
        .as_str()
        .or_else(|| item["serial_number"].as_str())
        .unwrap_or_else(|| panic!("no serial in {item}"))
        .to_string()
}

/// A renewal attempt with the device's current certificate: the EST status.
fn try_renew(server: &Server, d: &Device, name: &str) -> u16 {
    let key = server.work(&format!("{name}.key"));
    let csr = server.work(&format!("{name}.csr.b64"));
    new_key(&key);
    new_csr_b64(&key, &format!("/CN={0}/serialNumber={0}", d.serial), &csr);
    post_csr(
        server,
        "simplereenroll",
        Some((d.cert.as_path(), d.key.as_path())),
        &csr,
        &[],
    )
    .status
}

#[test]
fn device_detail_shows_the_lineage_and_the_device_actions_take_effect_over_est() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let server = &api.server;
    let viewer = api.token("res-viewer", "viewer");
    let operator = api.token("res-operator", "operator");
    let mut d = Device::enroll(server, "SN-R1");
    let first_operational = d.cert_serial();
    d.renew(server);
    let renewal = d.cert_serial();
    Device::enroll(server, "SN-R2");
    Device::enroll(server, "SN-X1");

    // Listing with filters.
    let listed: Vec<String> = api
        .get(&viewer, "/devices?serial_prefix=SN-R")
        .items()
        .iter()
        .map(device_serial)
        .collect();
    assert_eq!(listed, ["SN-R1", "SN-R2"], "ordered by serial, filtered");
    assert_eq!(
        api.get(&viewer, "/devices?status=suspended").items().len(),
        0
    );

    // Detail: birth → operational → renewal, oldest first, linked.
    let detail = api.get(&viewer, "/devices/SN-R1").expect(200).json();
    assert_eq!(detail["device"]["status"], "active", "{detail}");
    let certs = detail["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 3, "{detail}");
    assert_eq!(certs[0]["kind"], "birth");
    assert_eq!(certs[0]["serial"], d.birth_serial());
    assert_eq!(certs[1]["kind"], "operational");
    assert_eq!(certs[1]["serial"], first_operational, "{detail}");
    assert_eq!(certs[1]["replaced_by"], renewal.as_str());
    assert_eq!(certs[2]["serial"], renewal);
    assert_eq!(certs[2]["replaces"], first_operational.as_str());
    for c in certs {
        for field in ["issuer", "profile", "not_before", "not_after", "status"] {
            assert!(!c[field].is_null(), "{field} missing: {c}");
        }
        assert_eq!(c["status"], "valid", "{c}");
    }
    let decisions = detail["decisions"].as_array().unwrap();
    assert!(decisions.len() >= 2, "enroll and renewal decided: {detail}");
    assert!(
        decisions.iter().all(|d| d.to_string().contains("rule")),
        "every decision with its rule results: {detail}"
    );
    assert!(detail["open_escalations"].as_array().unwrap().is_empty());

    // Suspend: the device cannot renew; resume: it can.
    let r = api.post(
        &operator,
        "/devices/SN-R1/suspend",
        json!({"comment": "CHG-10"}),
    );
    r.expect(200);
    assert_eq!(
        api.get(&viewer, "/devices/SN-R1").json()["device"]["status"],
        "suspended"
    );
    let listed = api.get(&viewer, "/devices?status=suspended").items();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_ne!(try_renew(server, &d, "r1-while-suspended"), 200);
    api.post(&operator, "/devices/SN-R1/resume", json!({}))
        .expect(200);
    assert_eq!(
        api.get(&viewer, "/devices/SN-R1").json()["device"]["status"],
        "active"
    );
    d.renew(server);

    // Force re-enrollment: a date in the window, shown in the detail.
    let r = api.post(
        &operator,
        "/devices/SN-R1/force-reenroll",
        json!({"window": "3d"}),
    );
    let until = r.expect(200).json()["until"].as_str().unwrap().to_string();
    assert!(
        until.ends_with('Z') && until.contains('T'),
        "RFC 3339: {until}"
    );
    let detail = api.get(&viewer, "/devices/SN-R1").json();
    assert!(!detail["reenroll_forced_until"].is_null(), "{detail}");

    // Decommission: every certificate revoked, cessationOfOperation; renewal refused.
    let r = api.post(
        &operator,
        "/devices/SN-R1/decommission",
        json!({"comment": "scrapped"}),
    );
    r.expect(200);
    let detail = api.get(&viewer, "/devices/SN-R1").json();
    assert_eq!(detail["device"]["status"], "decommissioned");
    for c in detail["certificates"].as_array().unwrap() {
        assert_eq!(c["status"], "revoked", "{c}");
        assert_eq!(c["revocation_reason"], "cessationOfOperation", "{c}");
        assert!(!c["revoked_at"].is_null());
    }
    assert_ne!(try_renew(server, &d, "r1-after-decommission"), 200);
    // Suspending a decommissioned device is a state conflict, not a server error.
    api.post(&operator, "/devices/SN-R1/suspend", json!({}))
        .problem(409);
    api.audit_verifies();
}

#[test]
fn revocation_with_a_reason_shows_in_the_api_ocsp_and_the_crl() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let server = &api.server;
    let operator = api.token("rev-operator", "operator");
    let d = Device::enroll(server, "SN-V1");
    let serial = d.cert_serial();
    let path = format!("/certificates/{serial}");
    assert_eq!(api.get(&operator, &path).json()["status"], "valid");

    // keyCompromise must be confirmed.
    let problem = api
        .post(
            &operator,
            &format!("{path}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .problem(400);
    assert!(problem.to_string().contains("/confirm"), "{problem}");
    // Not an RFC 5280 reason.
    let problem = api
        .post(
            &operator,
            &format!("{path}/revoke"),
            json!({"reason": "fellOffTheTruck"}),
        )
        .problem(400);
    assert!(problem.to_string().contains("/reason"), "{problem}");
    api.post(
        &operator,
        &format!("{path}/revoke"),
        json!({"reason": "keyCompromise", "confirm": true, "comment": "key on a forum"}),
    )
    .expect(200);
    let c = api.get(&operator, &path).json();
    assert_eq!(c["status"], "revoked", "{c}");
    assert_eq!(c["revocation_reason"], "keyCompromise", "{c}");
    api.post(
        &operator,
        &format!("{path}/revoke"),
        json!({"reason": "superseded"}),
    )
    .problem(409);
    let revoked = api.get(&operator, "/certificates?status=revoked").items();
    assert!(
        revoked.iter().any(|c| c["serial"] == serial.as_str()),
        "{revoked:?}"
    );

    // The status services say so too.
    let ocsp = run(Command::new("openssl")
        .args([
            "ocsp",
            "-issuer",
            p(&server.pki("operational-ca.pem")),
            "-CAfile",
            p(&server.root()),
            "-cert",
            p(&d.cert),
        ])
        .arg("-url")
        .arg(format!("http://{}/ocsp", server.status_addr)));
    let ocsp = String::from_utf8_lossy(&ocsp.stdout);
    assert!(ocsp.contains(": revoked"), "{ocsp}");
    assert!(ocsp.contains("keyCompromise"), "{ocsp}");
    let upper = serial.to_uppercase();
    let crl = server.work("op.crl");
    let mut text = String::new();
    for _ in 0..50 {
        run_ok(
            Command::new("curl")
                .args(["-sS", "--max-time", "10", "-o", p(&crl)])
                .arg(format!("http://{}/crl/operational.crl", server.status_addr)),
        );
        text = String::from_utf8_lossy(
            &openssl(&["crl", "-inform", "DER", "-in", p(&crl), "-noout", "-text"]).stdout,
        )
        .into_owned();
        if text.contains(&upper) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(text.contains(&upper), "{serial} not on the CRL:\n{text}");
    api.audit_verifies();
}

#[test]
fn an_approved_request_is_issued_on_the_next_poll_and_a_rejected_one_is_refused() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let server = &api.server;
    let viewer = api.token("appr-viewer", "viewer");
    let operator = api.token("appr-operator", "operator");
    let yes = Pending::start(server, "NEW-A1");
    let no = Pending::start(server, "NEW-A2");

    let pending = api.get(&viewer, "/approvals?state=pending").items();
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert!(
        pending[0]["id"].as_i64() < pending[1]["id"].as_i64(),
        "oldest first"
    );
    let yes_id = approval_id(&api, &viewer, &yes.serial);
    let no_id = approval_id(&api, &viewer, &no.serial);
    let one = api
        .get(&viewer, &format!("/approvals/{yes_id}"))
        .expect(200)
        .json();
    assert!(one.to_string().contains("NEW-A1"), "{one}");
    assert!(
        one.to_string().contains("decisions"),
        "the decisions that reference it: {one}"
    );

    // Still waiting before the decision.
    assert_eq!(yes.poll(server).status, 202);
    api.post(
        &operator,
        &format!("/approvals/{yes_id}/approve"),
        json!({"comment": "known batch"}),
    )
    .expect(200);
    let issued = yes.poll(server);
    assert_eq!(issued.status, 200, "{}", issued.text());
    let cert = server.work("NEW-A1-approved.pem");
    certs_only_to_pem(&issued.body, &cert);
    let subject = openssl(&["x509", "-in", p(&cert), "-noout", "-subject"]).stdout;
    assert!(String::from_utf8_lossy(&subject).contains("NEW-A1"));
    // Decided once.
    api.post(
        &operator,
        &format!("/approvals/{yes_id}/approve"),
        json!({}),
    )
    .problem(409);
    api.post(
        &operator,
        &format!("/approvals/{yes_id}/reject"),
        json!({"reason": "late"}),
    )
    .problem(409);

    // Rejecting needs a reason.
    let problem = api
        .post(&operator, &format!("/approvals/{no_id}/reject"), json!({}))
        .problem(400);
    assert!(problem.to_string().contains("/reason"), "{problem}");
    api.post(
        &operator,
        &format!("/approvals/{no_id}/reject"),
        json!({"reason": "not one of ours"}),
    )
    .expect(200);
    let refused = no.poll(server);
    assert!(
        (400..500).contains(&refused.status),
        "{} {}",
        refused.status,
        refused.text()
    );
    let decided = api.get(&viewer, &format!("/approvals/{no_id}")).json();
    assert!(decided.to_string().contains("not one of ours"), "{decided}");
    assert!(api
        .get(&viewer, "/approvals?state=pending")
        .items()
        .is_empty());
    let decisions = api.get(&viewer, "/decisions?device=NEW-A1").items();
    assert!(!decisions.is_empty());
    assert!(
        decisions.iter().all(|d| d.to_string().contains("NEW-A1")),
        "{decisions:?}"
    );
    api.audit_verifies();
}

#[test]
fn stations_are_added_from_a_csr_and_suspended_resumed_limited_and_removed() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let server = &api.server;
    let admin = api.admin();
    let csr = station_csr(server, "line-s1");
    let body = json!({"name": "line-s1", "serial_pattern": "SN-S[0-9]+", "quota": 3, "csr": csr});
    let r = api.post(&admin, "/stations", body.clone());
    let made = r.expect(201).json();
    let chain = made["certificate_chain"].as_str().unwrap();
    assert_eq!(
        chain.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "{made}"
    );
    // The station's certificate is for the key that never left here.
    let chain_file = server.work("line-s1-chain.pem");
    std::fs::write(&chain_file, chain).unwrap();
    let cert_key = openssl(&["x509", "-in", p(&chain_file), "-noout", "-pubkey"]).stdout;
    let own_key = openssl(&[
        "pkey",
        "-in",
        p(&server.work("station-line-s1.key")),
        "-pubout",
    ])
    .stdout;
    assert_eq!(cert_key, own_key);
    api.post(&admin, "/stations", body).problem(409);

    let station = |name: &str| {
        api.get(&admin, "/stations")
            .rows()
            .into_iter()
            .find(|s| s.to_string().contains(&format!("\"{name}\"")))
    };
    let s = station("line-s1").unwrap();
    assert_eq!(s["quota"], 3, "{s}");
    assert_eq!(s["issued"], 0, "{s}");
    assert_eq!(s["remaining"], 3, "{s}");

    api.put(&admin, "/stations/line-s1/quota", json!({"quota": 10}))
        .done();
    assert_eq!(station("line-s1").unwrap()["quota"], 10);
    api.put(&admin, "/stations/line-s1/quota", json!({"quota": null}))
        .done();
    assert!(station("line-s1").unwrap()["quota"].is_null());
    api.post(&admin, "/stations/line-s1/suspend", json!({}))
        .done();
    assert_eq!(station("line-s1").unwrap()["status"], "suspended");
    api.post(&admin, "/stations/line-s1/resume", json!({}))
        .done();
    assert_eq!(station("line-s1").unwrap()["status"], "active");
    let r = api.delete(&admin, "/stations/line-s1");
    assert!(matches!(r.status, 200 | 204), "{}", r.text());
    let gone = station("line-s1");
    assert!(
        gone.is_none() || gone.as_ref().unwrap()["status"] == "removed",
        "{gone:?}"
    );
    api.post(&admin, "/stations/line-nope/suspend", json!({}))
        .problem(404);
    api.audit_verifies();
}

/// A data directory from before the registration CA existed: stations cannot be added
/// through the API, and the problem says what to run.
#[test]
fn adding_a_station_without_a_registration_ca_says_what_to_run() {
    require_tools!("openssl", "curl");
    let dir = Server::prepare(|config| {
        *config = config
            .lines()
            .filter(|l| !l.starts_with("registration_"))
            .collect::<Vec<_>>()
            .join("\n");
    });
    for f in ["registration-ca.pem", "registration-ca.key"] {
        std::fs::remove_file(dir.path().join("data/pki").join(f)).unwrap();
    }
    let api = Api::serve(dir);
    let admin = api.admin();
    let csr = station_csr(&api.server, "line-old");
    let body = json!({"name": "line-old", "serial_pattern": "SN-O[0-9]+", "csr": csr});
    let problem = api.post(&admin, "/stations", body).problem(409);
    assert!(problem.to_string().contains("add-station"), "{problem}");
    assert!(api.get(&admin, "/stations").rows().is_empty());
}

#[test]
fn enrollment_accounts_are_created_listed_disabled_and_enabled() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let server = &api.server;
    let admin = api.admin();
    let password = "Enroll-Api-Password-77";
    api.post(
        &admin,
        "/accounts",
        json!({"name": "acct-a", "password": password, "serial_pattern": "SN-AC[0-9]+",
               "label": null}),
    )
    .expect(201);
    api.post(
        &admin,
        "/accounts",
        json!({"name": "acct-a", "password": password, "any_serial": true}),
    )
    .problem(409);
    let weak = api
        .post(
            &admin,
            "/accounts",
            json!({"name": "acct-weak", "password": "short", "any_serial": true}),
        )
        .problem(400);
    assert!(weak.to_string().contains("/password"), "{weak}");
    let listed = api.get(&admin, "/accounts").expect(200);
    assert!(listed.text().contains("acct-a"), "{}", listed.text());
    assert!(
        !listed.text().contains(password),
        "the password is never shown"
    );

    let enroll = |serial: &str| {
        let key = server.work(&format!("{serial}.key"));
        let csr = server.work(&format!("{serial}.csr.b64"));
        new_key(&key);
        new_csr_b64(&key, &format!("/serialNumber={serial}"), &csr);
        let user = format!("acct-a:{password}");
        post_csr(server, "simpleenroll", None, &csr, &["-u", &user]).status
    };
    api.post(&admin, "/accounts/acct-a/disable", json!({}))
        .done();
    assert_eq!(enroll("SN-AC1"), 401, "a disabled account enrolls nothing");
    api.post(&admin, "/accounts/acct-a/enable", json!({}))
        .done();
    assert_eq!(enroll("SN-AC2"), 200);
    api.post(&admin, "/accounts/acct-nope/disable", json!({}))
        .problem(404);
    api.audit_verifies();
}

#[test]
fn a_certificate_is_served_as_json_pem_or_der_by_its_accept_header() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let server = &api.server;
    let viewer = api.token("neg-viewer", "viewer");
    let d = Device::enroll(server, "SN-N1");
    let serial = d.cert_serial();
    let path = format!("/certificates/{serial}");
    let with_accept = |accept: &str| {
        api.send(
            Call::new("GET", &path)
                .bearer(&viewer)
                .header("accept", accept),
        )
    };

    let default = api.get(&viewer, &path).expect(200).json();
    assert_eq!(default["serial"], serial);
    assert_eq!(
        default["device"]
            .as_str()
            .or(default["device_serial"].as_str()),
        Some("SN-N1")
    );
    let j = with_accept("application/json").expect(200);
    assert!(j.content_type().starts_with("application/json"));

    let pem = with_accept("application/pem-certificate-chain").expect(200);
    assert!(pem
        .content_type()
        .starts_with("application/pem-certificate-chain"));
    let served = server.work("served.pem");
    std::fs::write(&served, &pem.body).unwrap();
    assert_eq!(serial_of(&served), serial);
    let der_of = |pem_file: &Path| openssl(&["x509", "-in", p(pem_file), "-outform", "DER"]).stdout;
    assert_eq!(der_of(&served), der_of(&d.cert));

    let der = with_accept("application/pkix-cert").expect(200);
    assert!(der.content_type().starts_with("application/pkix-cert"));
    assert_eq!(der.body, der_of(&d.cert));

    with_accept("text/plain").problem(406);
    api.get(&viewer, "/certificates/00deadbeef").problem(404);
}

#[test]
fn stats_and_the_expiring_report_in_json_and_csv() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let server = &api.server;
    let viewer = api.token("stats-viewer", "viewer");
    let operator = api.token("stats-operator", "operator");
    Device::enroll(server, "SN-T1");
    Device::enroll(server, "SN-T2");
    Device::enroll(server, "SN-T3");
    api.post(&operator, "/devices/SN-T3/suspend", json!({}))
        .expect(200);
    Pending::start(server, "NEW-T1");

    let stats = api
        .get(&viewer, "/stats?days_ahead=100&days_back=7")
        .expect(200)
        .json();
    let by_status = &stats["devices_by_status"];
    assert_eq!(by_status["active"], 2, "{stats}");
    assert_eq!(by_status["suspended"], 1, "{stats}");
    let operational: i64 = stats["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "operational")
        .map(|c| c["count"].as_i64().unwrap())
        .sum();
    assert_eq!(operational, 3, "{stats}");
    let expiring: i64 = stats["expiring_per_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_i64().unwrap())
        .sum();
    // SN-T3's certificate is on hold while it is suspended: not counted as expiring.
    assert_eq!(
        expiring, 2,
        "the 90-day certificates expire within 100 days: {stats}"
    );
    let days = stats["requests_per_day"].as_array().unwrap();
    let issued: i64 = days.iter().map(|d| d["issued"].as_i64().unwrap()).sum();
    let pending: i64 = days.iter().map(|d| d["pending"].as_i64().unwrap()).sum();
    assert!(issued >= 3, "{stats}");
    assert!(pending >= 1, "{stats}");
    assert!(stats["failing_devices"].is_array(), "{stats}");
    api.get(&viewer, "/stats?days_ahead=0").problem(400);
    api.get(&viewer, "/stats?days_back=401").problem(400);

    let report = api.get(&viewer, "/reports/expiring?within=100d").items();
    let devices: Vec<String> = report
        .iter()
        .map(|r| {
            r.to_string()
                .split('"')
                .find(|s| s.starts_with("SN-T"))
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for d in ["SN-T1", "SN-T2"] {
        assert!(devices.iter().any(|x| x == d), "{d}: {report:?}");
    }
    assert!(api
        .get(&viewer, "/reports/expiring?within=30d")
        .items()
        .is_empty());

    // CSV, by Accept and by ?format=csv: the same columns as `fleetca report expiring`.
    let csv = api
        .send(
            Call::new("GET", "/reports/expiring?within=100d")
                .bearer(&viewer)
                .header("accept", "text/csv"),
        )
        .expect(200);
    assert!(csv.content_type().starts_with("text/csv"));
    let by_query = api
        .get(&viewer, "/reports/expiring?within=100d&format=csv")
        .expect(200);
    assert!(by_query.content_type().starts_with("text/csv"));
    let cli = api.fleetca(&["report", "expiring", "--within", "100d", "--format", "csv"]);
    let cli = String::from_utf8_lossy(&cli.stdout).into_owned();
    let header = |t: &str| t.lines().next().unwrap_or_default().to_string();
    assert_eq!(
        header(&csv.text()),
        header(&cli),
        "API:\n{}\nCLI:\n{cli}",
        csv.text()
    );
    assert_eq!(csv.text().lines().count(), cli.lines().count());
    assert_eq!(by_query.text(), csv.text());
    for d in ["SN-T1", "SN-T2"] {
        assert!(csv.text().contains(d), "{}", csv.text());
    }
}

#[test]
fn escalations_are_listed_as_alerts_and_in_the_device_detail() {
    require_tools!("openssl", "curl");
    let api = Api::start_with(short_lived_with_a_half_life_tier);
    let viewer = api.token("alerts-viewer", "viewer");
    Device::enroll(&api.server, "SN-E1");
    assert!(api.get(&viewer, "/alerts").items().is_empty());
    api.fleetca(&["monitor", "run-once"]);

    let open = api.get(&viewer, "/alerts").items();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["device"], "SN-E1", "{open:?}");
    assert_eq!(open[0]["tier"], "notice", "{open:?}");
    assert_eq!(open[0]["state"], "open", "{open:?}");
    assert_eq!(api.get(&viewer, "/alerts?state=all").items().len(), 1);
    assert!(api
        .get(&viewer, "/alerts?state=resolved")
        .items()
        .is_empty());
    assert_eq!(api.get(&viewer, "/alerts?device=SN-E1").items().len(), 1);
    assert!(api
        .get(&viewer, "/alerts?device=SN-NONE")
        .items()
        .is_empty());
    let detail = api.get(&viewer, "/devices/SN-E1").expect(200).json();
    let escalations = detail["open_escalations"].as_array().unwrap();
    assert_eq!(escalations.len(), 1, "{detail}");
    assert_eq!(escalations[0]["id"], open[0]["id"]);
    let stats = api.get(&viewer, "/stats").expect(200).json();
    assert!(
        stats.to_string().contains("SN-E1")
            || !stats["expiring_per_day"].as_array().unwrap().is_empty(),
        "{stats}"
    );
}
