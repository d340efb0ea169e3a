//! Issue 16: who uses the admin API and what the trail says they did. API tokens (made by
//! the CLI and by the API, listed without their secret, revoked: then 401), operator users
//! and their sessions (login, `/me`, role change, disable, enable, removal, logout), and
//! the audit trail: each action with its actor (`token:NAME`, `user:NAME`) and source
//! address, filtered listings, `GET /audit/verify`, and `fleetca audit verify` still
//! passing after all of it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod admin_api;
mod common;

use admin_api::*;
use serde_json::json;

#[test]
fn tokens_are_shown_once_listed_without_secret_and_refused_once_revoked() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let admin = api.admin();

    let me = api.get(&admin, "/me").expect(200).json();
    assert_eq!(me["actor"], "token:harness-admin", "{me}");
    assert_eq!(me["role"], "admin", "{me}");

    let made = api
        .post(
            &admin,
            "/tokens",
            json!({"name": "cmdb-sync", "role": "viewer", "expires_in": "90d"}),
        )
        .expect(201)
        .json();
    let secret = made["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("fca_") && secret.len() == 47, "{made}");
    assert_eq!(made["role"], "viewer");
    assert!(
        made["expires_at"].as_str().unwrap().ends_with('Z'),
        "{made}"
    );
    let me = api.get(&secret, "/me").expect(200).json();
    assert_eq!(me["actor"], "token:cmdb-sync", "{me}");
    // A viewer cannot make itself more.
    api.post(
        &secret,
        "/tokens",
        json!({"name": "escalate", "role": "admin"}),
    )
    .problem(403);
    // Names are unique, roles are the four.
    api.post(
        &admin,
        "/tokens",
        json!({"name": "cmdb-sync", "role": "viewer"}),
    )
    .problem(409);
    let p = api
        .post(&admin, "/tokens", json!({"name": "x", "role": "root"}))
        .problem(400);
    assert!(p.to_string().contains("/role"), "{p}");

    let cli_secret = api.token("from-cli", "operator");
    let listed = api.get(&admin, "/tokens").expect(200);
    for name in ["cmdb-sync", "from-cli", "harness-admin"] {
        assert!(listed.text().contains(name), "{}", listed.text());
    }
    for s in [&secret, &cli_secret, &admin] {
        assert!(!listed.text().contains(s.as_str()), "a secret is listed");
        let hidden = &s[4..];
        assert!(!listed.text().contains(hidden));
    }

    // Revoked by the API, and by the CLI: both refused from then on.
    let r = api.delete(&admin, "/tokens/cmdb-sync");
    assert!(matches!(r.status, 200 | 204), "{}", r.text());
    let refused = api.get(&secret, "/me");
    refused.problem(401);
    let challenge = refused.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    api.fleetca(&["admin", "token", "revoke", "from-cli"]);
    api.get(&cli_secret, "/me").problem(401);
    api.delete(&admin, "/tokens/no-such-token").problem(404);
    // The CLI lists them too, without secrets.
    let out = api.fleetca(&["admin", "token", "list"]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("cmdb-sync") && !out.contains(&secret), "{out}");
}

#[test]
fn users_log_in_and_their_sessions_follow_role_changes_disabling_removal_and_logout() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let admin = api.admin();
    api.post(
        &admin,
        "/users",
        json!({"name": "alice", "role": "viewer", "password": PASSWORD}),
    )
    .expect(201);
    api.post(
        &admin,
        "/users",
        json!({"name": "alice", "role": "viewer", "password": PASSWORD}),
    )
    .problem(409);
    api.user("bob", "operator");
    let listed = api.get(&admin, "/users").expect(200);
    assert!(listed.text().contains("alice") && listed.text().contains("bob"));
    assert!(!listed.text().contains("argon2"), "no password hash listed");

    let login = api
        .send(Call::new("POST", "/login").json(&json!({"name": "alice", "password": PASSWORD})))
        .expect(200)
        .json();
    assert_eq!(login["user"], "alice", "{login}");
    assert_eq!(login["role"], "viewer", "{login}");
    assert!(login["expires_at"].as_str().is_some(), "{login}");
    let session = login["token"].as_str().unwrap().to_string();
    let me = api.get(&session, "/me").expect(200).json();
    assert_eq!(me["actor"], "user:alice", "{me}");
    assert_eq!(me["role"], "viewer");
    api.get(&session, "/devices").expect(200);
    api.get(&session, "/audit").problem(403);

    // A new role ends the sessions granted under the old one.
    api.put(&admin, "/users/alice/role", json!({"role": "auditor"}))
        .done();
    api.get(&session, "/me").problem(401);
    let session = api.login("alice");
    assert_eq!(api.get(&session, "/me").json()["role"], "auditor");
    api.get(&session, "/audit").expect(200);

    // Disabled: sessions end and logging in is refused; enabled again: it works.
    api.post(&admin, "/users/alice/disable", json!({})).done();
    api.get(&session, "/me").problem(401);
    api.send(Call::new("POST", "/login").json(&json!({"name": "alice", "password": PASSWORD})))
        .problem(401);
    api.post(&admin, "/users/alice/enable", json!({})).done();
    let session = api.login("alice");

    // Logout ends exactly that session.
    let other = api.login("alice");
    let r = api.send(Call::new("POST", "/logout").bearer(&session));
    assert_eq!(r.status, 204, "{}", r.text());
    api.get(&session, "/me").problem(401);
    api.get(&other, "/me").expect(200);

    // A new password ends the user's sessions; the old password no longer logs in.
    let bob = api.login("bob");
    let r = api.put(
        &admin,
        "/users/bob/password",
        json!({"password": "Bobs-New-Password-2026"}),
    );
    assert!(matches!(r.status, 200 | 204), "{}", r.text());
    api.get(&bob, "/me").problem(401);
    api.send(Call::new("POST", "/login").json(&json!({"name": "bob", "password": PASSWORD})))
        .problem(401);
    api.send(
        Call::new("POST", "/login")
            .json(&json!({"name": "bob", "password": "Bobs-New-Password-2026"})),
    )
    .expect(200);

    // Removed: the name logs in no more.
    let r = api.delete(&admin, "/users/alice");
    assert!(matches!(r.status, 200 | 204), "{}", r.text());
    api.get(&other, "/me").problem(401);
    api.send(Call::new("POST", "/login").json(&json!({"name": "alice", "password": PASSWORD})))
        .problem(401);
    api.delete(&admin, "/users/alice").problem(404);
    // The CLI sees the same users.
    let out = api.fleetca(&["admin", "user", "list"]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("bob") && !out.contains("alice"), "{out}");
}

#[test]
fn the_trail_names_each_actor_and_source_and_still_verifies() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let server = &api.server;
    let admin = api.admin();
    let operator = api.token("ops-script", "operator");
    let auditor = api.token("audit-bot", "auditor");
    api.user("carol", "operator");
    let carol = api.login("carol");
    let d1 = Device::enroll(server, "SN-U1");
    Device::enroll(server, "SN-U2");
    let pending = Pending::start(server, "NEW-U1");
    let approval = approval_id(&api, &admin, &pending.serial);

    // (who, method, path, body, action the trail must show)
    let actions = [
        (
            &operator,
            "POST",
            "/devices/SN-U2/suspend".to_string(),
            json!({"comment": "CHG-A1"}),
            "device-suspend",
            "token:ops-script",
        ),
        (
            &carol,
            "POST",
            "/devices/SN-U2/resume".to_string(),
            json!({"comment": "CHG-A2"}),
            "device-resume",
            "user:carol",
        ),
        (
            &carol,
            "POST",
            format!("/certificates/{}/revoke", d1.cert_serial()),
            json!({"reason": "superseded", "comment": "CHG-A3"}),
            "cert-revoke",
            "user:carol",
        ),
        (
            &operator,
            "POST",
            format!("/approvals/{approval}/approve"),
            json!({"comment": "CHG-A4"}),
            "request-approve",
            "token:ops-script",
        ),
        (
            &admin,
            "POST",
            "/tokens".to_string(),
            json!({"name": "made-by-api", "role": "viewer"}),
            "token-create",
            "token:harness-admin",
        ),
        (
            &admin,
            "POST",
            "/users".to_string(),
            json!({"name": "dave", "role": "viewer", "password": PASSWORD}),
            "user-add",
            "token:harness-admin",
        ),
    ];
    for (who, method, path, body, _, _) in &actions {
        let r = api.send(Call::new(method, path).bearer(who).json(body));
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.text());
    }
    let r = api.delete(&admin, "/tokens/made-by-api");
    assert!(r.status < 300, "{}", r.text());

    let trail = all_pages(&api, &auditor, "/audit?since=2000-01-01T00:00:00Z", 50);
    let text: Vec<String> = trail.iter().map(|e| e.to_string()).collect();
    for (_, _, _, body, action, actor) in &actions {
        let found = text
            .iter()
            .find(|e| e.contains(action) && e.contains(actor));
        let e = found
            .unwrap_or_else(|| panic!("no {action} by {actor} in the trail:\n{}", text.join("\n")));
        assert!(e.contains("127.0.0.1"), "no source address: {e}");
        if let Some(c) = body["comment"].as_str() {
            assert!(e.contains(c), "{e}");
        }
    }
    assert!(
        text.iter().any(|e| e.contains("token:harness-admin")
            && e.contains("made-by-api")
            && e.contains("revoke")),
        "token revocation audited:\n{}",
        text.join("\n")
    );
    assert!(
        text.iter()
            .any(|e| e.contains("user:carol") && e.contains("login")),
        "carol's login audited"
    );

    // Filters.
    let by_actor = api.get(&auditor, "/audit?actor=user:carol").items();
    assert!(!by_actor.is_empty());
    assert!(
        by_actor
            .iter()
            .all(|e| e.to_string().contains("user:carol")),
        "{by_actor:?}"
    );
    let by_action = api.get(&auditor, "/audit?action=device-suspend").items();
    assert!(!by_action.is_empty());
    assert!(by_action
        .iter()
        .all(|e| e.to_string().contains("device-suspend")));
    let by_subject = api.get(&auditor, "/audit?subject=SN-U2").items();
    assert!(by_subject.len() >= 2, "{by_subject:?}");
    assert!(api
        .get(&auditor, "/audit?until=2000-01-01T00:00:00Z")
        .items()
        .is_empty());

    let v = api.get(&auditor, "/audit/verify").expect(200).json();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["events"].as_i64().unwrap() >= trail.len() as i64, "{v}");
    assert!(v["broken_at"].is_null(), "{v}");
    api.audit_verifies();
}

/// Sessions end after `[admin] session_idle` unused and `session_lifetime` after the
/// login however busy; a token made with `--expires` authenticates nothing afterwards.
#[test]
fn idle_and_old_sessions_and_expired_tokens_are_refused() {
    require_tools!("openssl", "curl");
    let api = Api::start_with(|config| {
        config.push_str("\n[admin]\nsession_idle = \"2s\"\nsession_lifetime = \"5s\"\n");
    });
    api.user("frank", "viewer");
    let short = {
        let out = api.fleetca(&[
            "admin",
            "token",
            "create",
            "short",
            "--role",
            "viewer",
            "--expires",
            "2s",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let re = regex::Regex::new(r"fca_[A-Za-z0-9_-]{43}").unwrap();
        re.find(&stdout).unwrap().as_str().to_string()
    };
    api.get(&short, "/me").expect(200);

    let idle = api.login("frank");
    let busy = api.login("frank");
    api.get(&idle, "/me").expect(200);
    // `busy` is used every half second; `idle` not at all.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(3500) {
        api.get(&busy, "/me").expect(200);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let refused = api.get(&idle, "/me");
    refused.problem(401);
    assert!(refused
        .header("www-authenticate")
        .unwrap_or_default()
        .contains("invalid_token"));
    let refused = api.get(&short, "/me");
    refused.problem(401);
    // Past the lifetime, activity does not keep a session.
    while start.elapsed() < std::time::Duration::from_millis(6000) {
        let r = api.get(&busy, "/me");
        if r.status == 401 {
            break;
        }
        r.expect(200);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    api.get(&busy, "/me").problem(401);
    // A new login works.
    let fresh = api.login("frank");
    api.get(&fresh, "/me").expect(200);
}
