//! Issue 16, the role matrix: every endpoint of the admin API (one table, [`rows`]) × no
//! credentials, an API token of each role and a user's login session, against a real
//! server. Without credentials: 401 with a `WWW-Authenticate: Bearer` challenge (the
//! public endpoints excepted); with a role too small: 403 naming the least role that
//! would do (`required_role`); with enough: neither (and never a 5xx). The table must
//! cover exactly the operations of the served `/api/v1/openapi.json`, so an endpoint
//! added without a row fails here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod admin_api;
mod common;

use std::collections::BTreeSet;

use admin_api::*;
use serde_json::{json, Value};

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// No credentials needed (login, the OpenAPI document).
    Public,
    /// Any valid token or session.
    Anyone,
    /// A role (or one that includes it).
    Role(&'static str),
}

/// One endpoint, called with real ids.
struct Row {
    method: &'static str,
    /// The path as the OpenAPI document names it (`/devices/{serial}`).
    template: &'static str,
    /// The path called (ids filled in, maybe a query).
    path: String,
    body: Option<Value>,
    need: Need,
}

fn row(method: &'static str, template: &'static str, path: String, need: Need) -> Row {
    Row {
        method,
        template,
        path,
        body: None,
        need,
    }
}

fn with(mut r: Row, body: Value) -> Row {
    r.body = Some(body);
    r
}

/// The real objects the rows act on, made before the walk.
struct Ids {
    device: String,
    decommission_device: String,
    revoke_serial: String,
    approve_id: i64,
    reject_id: i64,
    station: String,
    station_to_remove: String,
    new_station_csr: String,
    account: String,
    victim_user: String,
    victim_token: String,
    login_user: String,
}

const VIEWER: Need = Need::Role("viewer");
const AUDITOR: Need = Need::Role("auditor");
const OPERATOR: Need = Need::Role("operator");
const ADMIN: Need = Need::Role("admin");

/// THE list of endpoints: every operation of the contract, once. A resource's removal
/// comes after the rows that still need it.
fn rows(ids: &Ids) -> Vec<Row> {
    let d = &ids.device;
    let st = &ids.station;
    vec![
        // Auth
        with(
            row("POST", "/login", "/login".into(), Need::Public),
            json!({"name": ids.login_user, "password": PASSWORD}),
        ),
        row("GET", "/me", "/me".into(), Need::Anyone),
        row("POST", "/logout", "/logout".into(), Need::Anyone),
        // Devices
        row(
            "GET",
            "/devices",
            "/devices?status=active&limit=5".into(),
            VIEWER,
        ),
        row("GET", "/devices/{serial}", format!("/devices/{d}"), VIEWER),
        with(
            row(
                "POST",
                "/devices/{serial}/suspend",
                format!("/devices/{d}/suspend"),
                OPERATOR,
            ),
            json!({"comment": "role matrix"}),
        ),
        with(
            row(
                "POST",
                "/devices/{serial}/resume",
                format!("/devices/{d}/resume"),
                OPERATOR,
            ),
            json!({"comment": "role matrix"}),
        ),
        with(
            row(
                "POST",
                "/devices/{serial}/force-reenroll",
                format!("/devices/{d}/force-reenroll"),
                OPERATOR,
            ),
            json!({"window": "7d"}),
        ),
        with(
            row(
                "POST",
                "/devices/{serial}/scep-challenge",
                format!("/devices/{d}/scep-challenge"),
                OPERATOR,
            ),
            json!({"expires_in": "1h"}),
        ),
        with(
            row(
                "POST",
                "/devices/{serial}/decommission",
                format!("/devices/{}/decommission", ids.decommission_device),
                OPERATOR,
            ),
            json!({"comment": "role matrix"}),
        ),
        // Certificates
        row(
            "GET",
            "/certificates",
            "/certificates?expiring_within=400d&limit=5".into(),
            VIEWER,
        ),
        row(
            "GET",
            "/certificates/{serial}",
            format!("/certificates/{}", ids.revoke_serial),
            VIEWER,
        ),
        with(
            row(
                "POST",
                "/certificates/{serial}/revoke",
                format!("/certificates/{}/revoke", ids.revoke_serial),
                OPERATOR,
            ),
            json!({"reason": "superseded", "comment": "role matrix"}),
        ),
        // Approvals
        row("GET", "/approvals", "/approvals".into(), VIEWER),
        row(
            "GET",
            "/approvals/{id}",
            format!("/approvals/{}", ids.approve_id),
            VIEWER,
        ),
        with(
            row(
                "POST",
                "/approvals/{id}/approve",
                format!("/approvals/{}/approve", ids.approve_id),
                OPERATOR,
            ),
            json!({"comment": "role matrix"}),
        ),
        with(
            row(
                "POST",
                "/approvals/{id}/reject",
                format!("/approvals/{}/reject", ids.reject_id),
                OPERATOR,
            ),
            json!({"reason": "role matrix"}),
        ),
        // Decisions
        row(
            "GET",
            "/decisions",
            format!("/decisions?device={d}"),
            VIEWER,
        ),
        // Stations
        row("GET", "/stations", "/stations".into(), VIEWER),
        with(
            row("POST", "/stations", "/stations".into(), ADMIN),
            json!({"name": "line-new", "serial_pattern": "SN-NEW-[0-9]+", "quota": 5,
                   "csr": ids.new_station_csr}),
        ),
        with(
            row(
                "POST",
                "/stations/{name}/suspend",
                format!("/stations/{st}/suspend"),
                ADMIN,
            ),
            json!({}),
        ),
        with(
            row(
                "POST",
                "/stations/{name}/resume",
                format!("/stations/{st}/resume"),
                ADMIN,
            ),
            json!({}),
        ),
        with(
            row(
                "PUT",
                "/stations/{name}/quota",
                format!("/stations/{st}/quota"),
                ADMIN,
            ),
            json!({"quota": 100}),
        ),
        row(
            "DELETE",
            "/stations/{name}",
            format!("/stations/{}", ids.station_to_remove),
            ADMIN,
        ),
        // Accounts
        row("GET", "/accounts", "/accounts".into(), ADMIN),
        with(
            row("POST", "/accounts", "/accounts".into(), ADMIN),
            json!({"name": "acct-new", "password": "Matrix-Account-Pass-42", "any_serial": true}),
        ),
        with(
            row(
                "POST",
                "/accounts/{name}/disable",
                format!("/accounts/{}/disable", ids.account),
                ADMIN,
            ),
            json!({}),
        ),
        with(
            row(
                "POST",
                "/accounts/{name}/enable",
                format!("/accounts/{}/enable", ids.account),
                ADMIN,
            ),
            json!({}),
        ),
        // Alerts, reports, audit, stats
        row("GET", "/alerts", "/alerts?state=all".into(), VIEWER),
        row(
            "GET",
            "/reports/expiring",
            "/reports/expiring?within=400d".into(),
            VIEWER,
        ),
        row("GET", "/audit", "/audit?limit=5".into(), AUDITOR),
        row("GET", "/audit/verify", "/audit/verify".into(), AUDITOR),
        row(
            "GET",
            "/stats",
            "/stats?days_ahead=30&days_back=30".into(),
            VIEWER,
        ),
        // Users
        row("GET", "/users", "/users".into(), ADMIN),
        with(
            row("POST", "/users", "/users".into(), ADMIN),
            json!({"name": "matrix-new-user", "role": "viewer", "password": PASSWORD}),
        ),
        with(
            row(
                "POST",
                "/users/{name}/disable",
                format!("/users/{}/disable", ids.victim_user),
                ADMIN,
            ),
            json!({}),
        ),
        with(
            row(
                "POST",
                "/users/{name}/enable",
                format!("/users/{}/enable", ids.victim_user),
                ADMIN,
            ),
            json!({}),
        ),
        with(
            row(
                "PUT",
                "/users/{name}/role",
                format!("/users/{}/role", ids.victim_user),
                ADMIN,
            ),
            json!({"role": "auditor"}),
        ),
        with(
            row(
                "PUT",
                "/users/{name}/password",
                format!("/users/{}/password", ids.victim_user),
                ADMIN,
            ),
            json!({"password": "Another-Strong-Password-77"}),
        ),
        row(
            "DELETE",
            "/users/{name}",
            format!("/users/{}", ids.victim_user),
            ADMIN,
        ),
        // Tokens
        row("GET", "/tokens", "/tokens".into(), ADMIN),
        with(
            row("POST", "/tokens", "/tokens".into(), ADMIN),
            json!({"name": "matrix-new-token", "role": "viewer", "expires_in": "1d"}),
        ),
        row(
            "DELETE",
            "/tokens/{name}",
            format!("/tokens/{}", ids.victim_token),
            ADMIN,
        ),
        // The description
        row("GET", "/openapi.json", "/openapi.json".into(), Need::Public),
    ]
}

/// Whether `role` includes what `need` asks for.
fn allowed(need: Need, role: &str) -> bool {
    match need {
        Need::Public | Need::Anyone => true,
        Need::Role("viewer") => true,
        Need::Role(r) => role == r || role == "admin",
    }
}

/// (column name, role, secret) for each credentialed column.
struct Column {
    name: String,
    role: &'static str,
    secret: String,
    /// A login session (a fresh one is made for the logout row).
    session_of: Option<String>,
}

fn setup(api: &Api) -> Ids {
    let server = &api.server;
    api.fleetca(&[
        "factory",
        "add-station",
        "line-m",
        "--serial-pattern",
        "SN-M[0-9]+",
        "--out",
        server.work("stations").to_str().unwrap(),
    ]);
    api.fleetca(&[
        "factory",
        "add-station",
        "line-gone",
        "--serial-pattern",
        "SN-G[0-9]+",
        "--out",
        server.work("stations").to_str().unwrap(),
    ]);
    let device = Device::enroll(server, "SN-M1");
    let decommission = Device::enroll(server, "SN-M2");
    let revoke = Device::enroll(server, "SN-M3");
    let approve = Pending::start(server, "NEW-M1");
    let reject = Pending::start(server, "NEW-M2");
    fleetca_ok(
        server,
        &[
            "account",
            "add",
            "acct-m",
            "--any-serial",
            "--password-stdin",
        ],
        Some("Matrix-Existing-Pass-42\n"),
    );
    api.user("matrix-victim", "viewer");
    api.token("matrix-victim-token", "viewer");
    let admin = api.admin();
    Ids {
        device: device.serial,
        decommission_device: decommission.serial,
        revoke_serial: revoke.cert_serial(),
        approve_id: approval_id(api, &admin, &approve.serial),
        reject_id: approval_id(api, &admin, &reject.serial),
        station: "line-m".into(),
        station_to_remove: "line-gone".into(),
        new_station_csr: station_csr(server, "line-new"),
        account: "acct-m".into(),
        victim_user: "matrix-victim".into(),
        victim_token: "matrix-victim-token".into(),
        login_user: "matrix-login".into(),
    }
}

#[test]
fn every_endpoint_answers_every_role_and_no_credentials_as_the_contract_says() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let ids = setup(&api);
    api.user(&ids.login_user, "viewer");
    let mut columns: Vec<Column> = ROLES
        .iter()
        .map(|role| Column {
            name: format!("token:matrix-{role}"),
            role,
            secret: api.token(&format!("matrix-{role}"), role),
            session_of: None,
        })
        .collect();
    // A person's session carries the user's role like a token does.
    api.user("matrix-operator", "operator");
    columns.push(Column {
        name: "user:matrix-operator".into(),
        role: "operator",
        secret: api.login("matrix-operator"),
        session_of: Some("matrix-operator".into()),
    });

    let mut failures = Vec::new();
    for r in rows(&ids) {
        // No credentials.
        let mut call = Call::new(r.method, &r.path);
        if let Some(b) = &r.body {
            call = call.json(b);
        }
        let reply = api.send(call);
        if r.need == Need::Public {
            if matches!(reply.status, 401 | 403) || reply.status >= 500 {
                failures.push(format!(
                    "{} {} without credentials: {} {}",
                    r.method,
                    r.path,
                    reply.status,
                    reply.text()
                ));
            }
        } else {
            check_unauthenticated(&reply, &mut failures);
        }
        for c in &columns {
            // Logging out ends the session: give that row a session of its own.
            let fresh;
            let secret = match (&c.session_of, r.template) {
                (Some(user), "/logout") => {
                    fresh = api.login(user);
                    fresh.as_str()
                }
                _ => c.secret.as_str(),
            };
            let mut call = Call::new(r.method, &r.path).bearer(secret);
            if let Some(b) = &r.body {
                call = call.json(b);
            }
            let reply = api.send(call);
            let what = format!("{} {} as {}", r.method, r.path, c.name);
            if allowed(r.need, c.role) {
                if matches!(reply.status, 401 | 403) || reply.status >= 500 {
                    failures.push(format!("{what}: {} {}", reply.status, reply.text()));
                }
            } else {
                let Need::Role(needed) = r.need else {
                    unreachable!()
                };
                check_forbidden(&reply, needed, &what, &mut failures);
            }
        }
    }
    // The role is checked before the input: a too-small role with a malformed body is
    // told 403, not 400 (no probing of an operation's input without the right to use it).
    let viewer = &columns[0];
    for r in rows(&ids) {
        if r.body.is_none() || allowed(r.need, viewer.role) {
            continue;
        }
        let reply = api.send(
            Call::new(r.method, &r.path)
                .bearer(&viewer.secret)
                .raw("application/json", b"{\"comment\": ".to_vec()),
        );
        let Need::Role(needed) = r.need else {
            unreachable!()
        };
        check_forbidden(
            &reply,
            needed,
            &format!("{} {} as a viewer, malformed body", r.method, r.path),
            &mut failures,
        );
    }
    // Every state-changing call, granted or refused, is in the trail with its actor and
    // source address: at least one event per such row for each column.
    let changes = rows(&ids)
        .iter()
        .filter(|r| r.method != "GET" && !matches!(r.template, "/login" | "/logout"))
        .count();
    let auditor = &columns[1].secret;
    for c in &columns {
        let events: Vec<Value> = all_pages(&api, auditor, &format!("/audit?actor={}", c.name), 200)
            .into_iter()
            .filter(|e| {
                !e["action"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("admin-log")
            })
            .collect();
        if events.len() < changes {
            failures.push(format!(
                "{}: {} audit events for {changes} state-changing endpoints",
                c.name,
                events.len()
            ));
        }
        for e in &events {
            if e["actor"] != c.name.as_str() || !e["detail"].to_string().contains("127.0.0.1") {
                failures.push(format!(
                    "{}: audit event without actor or source: {e}",
                    c.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}\nserver log:\n{}",
        failures.len(),
        failures.join("\n"),
        api.server.log()
    );
}

fn check_unauthenticated(reply: &Reply, failures: &mut Vec<String>) {
    let what = format!("{} {} without credentials", reply.method, reply.path);
    if reply.status != 401 {
        failures.push(format!("{what}: {} {}", reply.status, reply.text()));
        return;
    }
    match reply.header("www-authenticate") {
        Some(c) if c.starts_with("Bearer") && c.contains("realm=\"fleetca-admin\"") => {}
        other => failures.push(format!("{what}: WWW-Authenticate {other:?}")),
    }
    if !reply.content_type().starts_with("application/problem+json") {
        failures.push(format!("{what}: 401 as {:?}", reply.content_type()));
    }
}

fn check_forbidden(reply: &Reply, needed: &str, what: &str, failures: &mut Vec<String>) {
    if reply.status != 403 {
        failures.push(format!(
            "{what}: {} (expected 403) {}",
            reply.status,
            reply.text()
        ));
        return;
    }
    if !reply.content_type().starts_with("application/problem+json") {
        failures.push(format!("{what}: 403 as {:?}", reply.content_type()));
        return;
    }
    let p = reply.json();
    if p["required_role"] != needed || p["status"] != 403 {
        failures.push(format!("{what}: expected required_role {needed}: {p}"));
    }
}

/// The operations of the served OpenAPI document as (METHOD, path with `{}` for each
/// parameter), relative to `/api/v1`.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                ops.insert((method.to_uppercase(), normalize(path)));
            }
        }
    }
    ops
}

/// `/api/v1/devices/{serial}` → `/devices/{}`.
fn normalize(path: &str) -> String {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let re = regex::Regex::new(r"\{[^}]*\}").unwrap();
    re.replace_all(path, "{}").into_owned()
}

#[test]
fn the_matrix_covers_exactly_the_documented_operations() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let reply = api.send(Call::new("GET", "/openapi.json")).expect(200);
    let doc = reply.json();
    let documented = documented_operations(&doc);
    // The rows with placeholder ids: only their methods and templates count here.
    let ids = Ids {
        device: "x".into(),
        decommission_device: "x".into(),
        revoke_serial: "x".into(),
        approve_id: 1,
        reject_id: 1,
        station: "x".into(),
        station_to_remove: "x".into(),
        new_station_csr: String::new(),
        account: "x".into(),
        victim_user: "x".into(),
        victim_token: "x".into(),
        login_user: "x".into(),
    };
    let table: BTreeSet<(String, String)> = rows(&ids)
        .iter()
        .map(|r| (r.method.to_string(), normalize(r.template)))
        .collect();
    assert_eq!(
        table.len(),
        rows(&ids).len(),
        "a row appears twice in the table"
    );
    let missing: Vec<_> = documented.difference(&table).collect();
    // The document does not describe itself (it is the description).
    let itself = ("GET".to_string(), "/openapi.json".to_string());
    let undocumented: Vec<_> = table
        .difference(&documented)
        .filter(|op| **op != itself)
        .collect();
    assert!(
        missing.is_empty(),
        "documented operations without a row in the role matrix: {missing:?}"
    );
    assert!(
        undocumented.is_empty(),
        "rows of the role matrix that the OpenAPI document does not describe: {undocumented:?}"
    );
}
