//! Issue 16: bad input on every body-taking endpoint of the admin API gets the right 4xx
//! as an RFC 9457 problem whose `status` matches: malformed JSON, wrong types and unknown
//! fields (400 naming the field by JSON pointer), a body over 64 KiB (413), another content
//! type (415); unknown serials, ids and names (404); bad queries (400); an approval decided
//! twice (409). Failed logins and bad tokens repeated from one source are answered 429 with
//! `Retry-After` and audited without the secret. Afterwards the server still serves and
//! `fleetca audit verify` passes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod admin_api;
mod common;

use std::net::{IpAddr, Ipv4Addr};

use admin_api::*;
use serde_json::{json, Value};

/// A body-taking endpoint: (method, path, a valid body, (a field, a value of the wrong
/// type for it)).
struct BodyEndpoint {
    method: &'static str,
    path: String,
    valid: Value,
    wrong: (&'static str, Value),
}

fn endpoint(
    method: &'static str,
    path: impl Into<String>,
    valid: Value,
    wrong: (&'static str, Value),
) -> BodyEndpoint {
    BodyEndpoint {
        method,
        path: path.into(),
        valid,
        wrong,
    }
}

/// Every endpoint that takes a JSON body, on real objects.
fn body_endpoints(cert: &str, approval: i64) -> Vec<BodyEndpoint> {
    vec![
        endpoint(
            "POST",
            "/login",
            json!({"name": "bad-input-user", "password": PASSWORD}),
            ("name", json!(5)),
        ),
        endpoint(
            "POST",
            "/devices/SN-B1/suspend",
            json!({"comment": "x"}),
            ("comment", json!(5)),
        ),
        endpoint(
            "POST",
            "/devices/SN-B1/resume",
            json!({"comment": "x"}),
            ("comment", json!(["x"])),
        ),
        endpoint(
            "POST",
            "/devices/SN-B1/decommission",
            json!({"comment": "x"}),
            ("reason", json!(7)),
        ),
        endpoint(
            "POST",
            "/devices/SN-B1/force-reenroll",
            json!({"window": "7d"}),
            ("window", json!(7)),
        ),
        endpoint(
            "POST",
            "/devices/SN-B1/scep-challenge",
            json!({"expires_in": "1h"}),
            ("expires_in", json!(3600)),
        ),
        endpoint(
            "POST",
            format!("/certificates/{cert}/revoke"),
            json!({"reason": "superseded"}),
            ("reason", json!(1)),
        ),
        endpoint(
            "POST",
            format!("/approvals/{approval}/approve"),
            json!({"comment": "x"}),
            ("comment", json!({"a": 1})),
        ),
        endpoint(
            "POST",
            format!("/approvals/{approval}/reject"),
            json!({"reason": "x"}),
            ("reason", json!(true)),
        ),
        endpoint(
            "POST",
            "/stations",
            json!({"name": "line-b", "serial_pattern": "SN-B[0-9]+", "csr": "x"}),
            ("quota", json!("ten")),
        ),
        endpoint(
            "POST",
            "/stations/line-b0/suspend",
            json!({}),
            ("comment", json!(1)),
        ),
        endpoint(
            "POST",
            "/stations/line-b0/resume",
            json!({}),
            ("comment", json!(1)),
        ),
        endpoint(
            "PUT",
            "/stations/line-b0/quota",
            json!({"quota": 5}),
            ("quota", json!("ten")),
        ),
        endpoint(
            "POST",
            "/accounts",
            json!({"name": "acct-b", "password": "Bad-Input-Pass-42", "any_serial": true}),
            ("any_serial", json!("yes")),
        ),
        endpoint(
            "POST",
            "/accounts/acct-b0/disable",
            json!({}),
            ("comment", json!(1)),
        ),
        endpoint(
            "POST",
            "/accounts/acct-b0/enable",
            json!({}),
            ("comment", json!(1)),
        ),
        endpoint(
            "POST",
            "/users",
            json!({"name": "user-b", "role": "viewer", "password": PASSWORD}),
            ("role", json!(3)),
        ),
        endpoint(
            "POST",
            "/users/bad-input-user/disable",
            json!({}),
            ("comment", json!(1)),
        ),
        endpoint(
            "POST",
            "/users/bad-input-user/enable",
            json!({}),
            ("comment", json!(1)),
        ),
        endpoint(
            "PUT",
            "/users/bad-input-user/role",
            json!({"role": "viewer"}),
            ("role", json!(["admin"])),
        ),
        endpoint(
            "PUT",
            "/users/bad-input-user/password",
            json!({"password": "Another-Strong-Password-77"}),
            ("password", json!(12345)),
        ),
        endpoint(
            "POST",
            "/tokens",
            json!({"name": "token-b", "role": "viewer"}),
            ("expires_in", json!(90)),
        ),
    ]
}

#[test]
fn every_body_taking_endpoint_refuses_bad_bodies_with_the_right_problem() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let server = &api.server;
    let admin = api.admin();
    let d = Device::enroll(server, "SN-B1");
    let pending = Pending::start(server, "NEW-B1");
    let approval = approval_id(&api, &admin, &pending.serial);
    api.fleetca(&[
        "factory",
        "add-station",
        "line-b0",
        "--serial-pattern",
        "SN-B[0-9]+",
        "--out",
        server.work("stations").to_str().unwrap(),
    ]);
    fleetca_ok(
        server,
        &[
            "account",
            "add",
            "acct-b0",
            "--any-serial",
            "--password-stdin",
        ],
        Some("Bad-Input-Existing-42\n"),
    );
    api.user("bad-input-user", "viewer");

    let mut failures = Vec::new();
    let mut unclosed = Vec::new();
    let mut check = |what: &str, r: Reply, status: u16, pointer: Option<&str>| {
        let ok_problem = r.status == status
            && r.content_type().starts_with("application/problem+json")
            && serde_json::from_slice::<Value>(&r.body)
                .map(|p| p["status"] == status)
                .unwrap_or(false);
        if !ok_problem {
            failures.push(format!(
                "{} {} {what}: expected a {status} problem, got {} {:?}: {}",
                r.method,
                r.path,
                r.status,
                r.content_type(),
                r.text()
            ));
            return;
        }
        if let Some(ptr) = pointer {
            if !r.text().contains(ptr) {
                failures.push(format!(
                    "{} {} {what}: no pointer {ptr}: {}",
                    r.method,
                    r.path,
                    r.text()
                ));
            }
        }
    };
    for e in body_endpoints(&d.cert_serial(), approval) {
        let call = || Call::new(e.method, &e.path).bearer(&admin);
        check(
            "malformed JSON",
            api.send(call().raw("application/json", b"{\"comment\": ".to_vec())),
            400,
            None,
        );
        check(
            "not an object",
            api.send(call().raw("application/json", b"[1, 2]".to_vec())),
            400,
            None,
        );
        let mut wrong = e.valid.clone();
        wrong[e.wrong.0] = e.wrong.1.clone();
        check(
            "wrong type",
            api.send(call().json(&wrong)),
            400,
            Some(&format!("\"/{}\"", e.wrong.0)),
        );
        let mut unknown = e.valid.clone();
        unknown["frobnicate"] = json!(1);
        check(
            "unknown field",
            api.send(call().json(&unknown)),
            400,
            Some("frobnicate"),
        );
        let mut huge = e.valid.clone();
        huge["padding"] = json!("x".repeat(70 * 1024));
        // The server answers 413 before reading the body, says `Connection: close`, and
        // reads the rest away before closing, so a client still writing gets the answer
        // (not a reset), over reqwest's kept-alive connections as over curl.
        let reply = api.send(call().json(&huge));
        let closes = reply
            .headers
            .get("connection")
            .and_then(|v| v.to_str().ok())
            == Some("close");
        let (method, path) = (reply.method.clone(), reply.path.clone());
        check("oversized", reply, 413, None);
        if !closes {
            unclosed.push(format!("{method} {path}: 413 without Connection: close"));
        }
        check(
            "oversized (curl)",
            api.send_curl(call().json(&huge)),
            413,
            None,
        );
        check(
            "wrong content type",
            api.send(call().raw("text/plain", serde_json::to_vec(&e.valid).unwrap())),
            415,
            None,
        );
        check(
            "form content type",
            api.send(call().raw("application/x-www-form-urlencoded", b"comment=x".to_vec())),
            415,
            None,
        );
    }
    failures.extend(unclosed);
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    still_serving(&api, &admin);
}

/// The table above is every operation of the served document that takes a request body.
#[test]
fn the_body_table_covers_every_documented_request_body() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let doc = api
        .send(Call::new("GET", "/openapi.json"))
        .expect(200)
        .json();
    let re = regex::Regex::new(r"\{[^}]*\}").unwrap();
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_some() {
                let path = path.strip_prefix("/api/v1").unwrap_or(path);
                documented.insert((
                    method.to_uppercase(),
                    re.replace_all(path, "{}").into_owned(),
                ));
            }
        }
    }
    // The table's paths with their real names made templates again.
    let names =
        regex::Regex::new(r"/(SN-B1|0badc0ffee|42|line-b0|acct-b0|bad-input-user)(/|$)").unwrap();
    let table: std::collections::BTreeSet<(String, String)> = body_endpoints("0badc0ffee", 42)
        .iter()
        .map(|e| {
            let t = names.replace_all(&e.path, "/{}$2").into_owned();
            (e.method.to_string(), t)
        })
        .collect();
    assert_eq!(
        documented, table,
        "operations with a request body vs the bad-input table"
    );
}

#[test]
fn unknown_ids_bad_queries_and_decided_approvals_get_404_400_and_409() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let server = &api.server;
    let admin = api.admin();
    let pending = Pending::start(server, "NEW-B2");
    let approval = approval_id(&api, &admin, &pending.serial);

    let not_found: [(&str, &str, Option<Value>); 17] = [
        ("GET", "/devices/SN-NOSUCH", None),
        ("POST", "/devices/SN-NOSUCH/suspend", Some(json!({}))),
        ("POST", "/devices/SN-NOSUCH/resume", Some(json!({}))),
        ("POST", "/devices/SN-NOSUCH/decommission", Some(json!({}))),
        ("POST", "/devices/SN-NOSUCH/force-reenroll", Some(json!({}))),
        ("GET", "/certificates/0badc0ffee", None),
        (
            "POST",
            "/certificates/0badc0ffee/revoke",
            Some(json!({"reason": "superseded"})),
        ),
        ("GET", "/approvals/999999", None),
        ("POST", "/approvals/999999/approve", Some(json!({}))),
        (
            "POST",
            "/approvals/999999/reject",
            Some(json!({"reason": "x"})),
        ),
        ("POST", "/stations/line-nosuch/suspend", Some(json!({}))),
        (
            "PUT",
            "/stations/line-nosuch/quota",
            Some(json!({"quota": 1})),
        ),
        ("DELETE", "/stations/line-nosuch", None),
        ("POST", "/accounts/acct-nosuch/enable", Some(json!({}))),
        ("PUT", "/users/nosuch/role", Some(json!({"role": "viewer"}))),
        ("DELETE", "/users/nosuch", None),
        ("DELETE", "/tokens/nosuch", None),
    ];
    for (method, path, body) in not_found {
        let mut call = Call::new(method, path).bearer(&admin);
        if let Some(b) = &body {
            call = call.json(b);
        }
        api.send(call).problem(404);
    }
    api.get(&admin, "/nosuch").problem(404);

    let bad_queries = [
        "/devices?status=bogus",
        "/devices?limit=ten",
        "/certificates?status=bogus",
        "/certificates?kind=bogus",
        "/certificates?expiring_within=forever",
        "/approvals?state=bogus",
        "/alerts?state=bogus",
        "/audit?since=yesterday",
        "/audit?until=2026-13-45T00:00:00Z",
        "/reports/expiring?within=soon",
        "/stats?days_ahead=0",
        "/stats?days_back=401",
        "/stats?days_ahead=x",
        "/approvals/not-a-number",
        "/devices?nosuchfilter=1",
    ];
    for q in bad_queries {
        let r = api.get(&admin, q);
        // An id that is not a number may be 404 (no such route) or 400: not a 5xx.
        let status = if q.contains("not-a-number") && r.status == 404 {
            404
        } else {
            400
        };
        r.problem(status);
    }

    api.post(&admin, &format!("/approvals/{approval}/approve"), json!({}))
        .expect(200);
    for (verb, body) in [
        ("approve", json!({"comment": "again"})),
        ("reject", json!({"reason": "again"})),
    ] {
        let p = api
            .post(&admin, &format!("/approvals/{approval}/{verb}"), body)
            .problem(409);
        assert!(!p["detail"].as_str().unwrap_or_default().is_empty(), "{p}");
    }
    // Reject takes a reason; this body has none.
    let other = Pending::start(server, "NEW-B3");
    let other = approval_id(&api, &admin, &other.serial);
    let p = api
        .post(&admin, &format!("/approvals/{other}/reject"), json!({}))
        .problem(400);
    assert!(p.to_string().contains("/reason"), "{p}");
    still_serving(&api, &admin);
}

#[test]
fn failed_logins_and_bad_tokens_are_limited_per_source_and_audited() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let admin = api.admin();
    api.user("eve-target", "viewer");
    // Each attack from a loopback address of its own: the limit is per source.
    let logins = api.client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)));
    let tokens = api.client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 8)));

    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..15 {
        let r = api.send_with(
            &logins,
            Call::new("POST", "/login")
                .json(&json!({"name": "eve-target", "password": format!("guess-{i}")})),
        );
        if r.status == 429 {
            r.problem(429);
            retry_after = r.header("retry-after");
            statuses.push(429);
            break;
        }
        r.problem(401);
        statuses.push(r.status);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(statuses.len() > 5, "not limited at once: {statuses:?}");
    let secs: u64 = retry_after
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=3600).contains(&secs), "{secs}");
    // The right password from the limited source waits too; from another source it works.
    let r = api.send_with(
        &logins,
        Call::new("POST", "/login").json(&json!({"name": "eve-target", "password": PASSWORD})),
    );
    r.problem(429);
    api.login("eve-target");

    let guessed = format!("fca_{}", "A".repeat(43));
    let mut limited = None;
    for i in 0..15 {
        let r = api.send_with(&tokens, Call::new("GET", "/me").bearer(&guessed));
        if r.status == 429 {
            r.problem(429);
            limited = Some((i, r.header("retry-after")));
            break;
        }
        r.problem(401);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }
    let (n, retry) = limited.expect("bad tokens were never limited");
    assert!(n > 3, "limited after {n}");
    assert!(retry.is_some_and(|s| s.parse::<u64>().is_ok()));
    // Other sources are not locked out.
    api.get(&admin, "/me").expect(200);

    // Audited, with the source and without the secrets.
    let trail = all_pages(&api, &admin, "/audit?since=2000-01-01T00:00:00Z", 200);
    let text: Vec<String> = trail.iter().map(Value::to_string).collect();
    let logins_audited = text
        .iter()
        .filter(|e| e.contains("admin-login") && e.contains("refused") && e.contains("127.0.0.7"))
        .count();
    assert!(logins_audited >= 5, "{}", text.join("\n"));
    assert!(
        text.iter()
            .any(|e| e.contains("admin-login") && e.contains("user:eve-target")),
        "{}",
        text.join("\n")
    );
    let tokens_audited = text
        .iter()
        .filter(|e| e.contains("admin-auth") && e.contains("refused") && e.contains("127.0.0.8"))
        .count();
    assert!(tokens_audited >= 3, "{}", text.join("\n"));
    let all = text.join("\n");
    assert!(!all.contains("guess-1"), "a password in the trail");
    assert!(!all.contains(&guessed), "a token in the trail");
    assert!(!api.server.log().contains(&guessed), "a token in the log");
    assert!(
        !api.server.log().contains("guess-1"),
        "a password in the log"
    );
    still_serving(&api, &admin);
}

/// A normal request succeeds, and the trail verifies (API and CLI).
fn still_serving(api: &Api, admin: &str) {
    assert!(api.server.alive());
    api.get(admin, "/devices").expect(200);
    let v = api.get(admin, "/audit/verify").expect(200).json();
    assert_eq!(v["ok"], true, "{v}");
    api.audit_verifies();
}
