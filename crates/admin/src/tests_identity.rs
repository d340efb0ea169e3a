//! Roles, tokens, sessions, the failure limiter and paging against a real SQLite store.

use std::net::IpAddr;
use std::time::Duration as StdDuration;

use fleetca_store::{
    AuditLog, CertificateKind, CertificateLedger, NewCertificate, NewToken, OperatorChange,
    OperatorLog, SqliteStore, Store,
};
use time::{Duration, OffsetDateTime};

use crate::*;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("fleetca.db")).unwrap();
    (dir, store)
}

fn source() -> IpAddr {
    "192.0.2.7".parse().unwrap()
}

fn as_role(role: Role) -> Actor {
    Actor::new(ActorKind::Token, role.as_str(), role).from_source(source())
}

async fn birth(store: &SqliteStore, serial: &str, device: &str) {
    let now = OffsetDateTime::now_utc();
    store
        .record_issuance(NewCertificate {
            serial: serial.into(),
            device_serial: device.into(),
            issuer: "manufacturing".into(),
            profile: "birth".into(),
            kind: CertificateKind::Birth,
            not_before: now,
            not_after: now + Duration::days(3650),
            spki_sha256: format!("{serial:0>64}"),
            der: vec![0x30, 0x00],
            replaces: None,
            authenticated_by: None,
            limits: Default::default(),
            binding: Default::default(),
            issued_at: now,
            birth: None,
            decision: None,
            cmp_transaction: None,
        })
        .await
        .unwrap();
}

async fn last_event(store: &SqliteStore) -> fleetca_store::AuditEvent {
    store.audit_events(None, 1).await.unwrap().remove(0).event
}

#[tokio::test]
async fn roles_are_checked_first_and_refused_changes_are_audited_with_the_source() {
    let (_dir, store) = store();
    birth(&store, "01", "SN-1").await;
    let viewer = as_role(Role::Viewer);

    // A viewer's revocation of a malformed serial is refused for the role, not the input.
    let err = revoke_certificate(
        &store,
        &viewer,
        "zz",
        fleetca_pki::RevocationReason::Superseded,
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            AdminError::Forbidden {
                required: Role::Operator,
                ..
            }
        ),
        "{err:?}"
    );
    let event = last_event(&store).await;
    assert_eq!(
        (
            event.actor.as_str(),
            event.action.as_str(),
            event.outcome.as_str()
        ),
        ("token:viewer", "cert-revoke", "refused")
    );
    assert!(event.detail.contains("from 192.0.2.7"), "{}", event.detail);
    assert!(
        event.detail.contains("needs the role operator"),
        "{}",
        event.detail
    );

    let err = suspend(&store, &viewer, "SN-1", None).await.unwrap_err();
    assert!(matches!(
        err,
        AdminError::Forbidden {
            required: Role::Operator,
            ..
        }
    ));
    let err = create_token(&store, &as_role(Role::Operator), "x", Role::Admin, None)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AdminError::Forbidden {
            required: Role::Admin,
            ..
        }
    ));
    assert_eq!(last_event(&store).await.action, "token-create");

    // Reads too: a viewer reads the fleet, not the audit trail; an auditor does.
    let dyn_store: &dyn Store = &store;
    let page = list_devices(dyn_store, &viewer, DeviceListQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let err = audit_search(dyn_store, &viewer, AuditQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AdminError::Forbidden {
            required: Role::Auditor,
            ..
        }
    ));
    let err = list_tokens(dyn_store, &as_role(Role::Auditor))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AdminError::Forbidden {
            required: Role::Admin,
            ..
        }
    ));
    assert!(
        audit_search(dyn_store, &as_role(Role::Auditor), AuditQuery::default())
            .await
            .is_ok()
    );

    // An operator acts; the granted event names the source too.
    let serials = suspend(&store, &as_role(Role::Operator), "SN-1", Some("ticket 9"))
        .await
        .unwrap();
    assert_eq!(serials, ["01"]);
    let event = last_event(&store).await;
    assert_eq!(event.outcome, "granted");
    assert_eq!(event.detail, "comment: ticket 9; from 192.0.2.7");
    assert_eq!(store.verify_audit_chain().await.unwrap(), Ok(4));
}

#[tokio::test]
async fn tokens_authenticate_until_revoked_or_expired_and_never_reach_the_trail() {
    let (_dir, store) = store();
    let limiter = FailureLimiter::new(100, StdDuration::from_secs(60));
    let settings = SessionSettings::default();
    let admin = Actor::cli();
    let created = create_token(
        &store,
        &admin,
        "cmdb-sync",
        Role::Operator,
        Some(Duration::days(90)),
    )
    .await
    .unwrap();
    let secret = created.secret.expose().to_string();
    assert!(secret.starts_with("fca_") && secret.len() == 47, "{secret}");
    let header = format!("Bearer {secret}");
    let who = authenticate(&store, &settings, &limiter, Some(&header), source())
        .await
        .unwrap();
    assert_eq!(who.actor.to_string(), "token:cmdb-sync");
    assert_eq!(who.actor.role(), Role::Operator);
    assert_eq!(who.actor.source(), Some(source()));
    assert!(who.session.is_none());

    // A secret of the right shape that is not ours: refused, audited without the secret.
    let forged = format!("Bearer fca_{}", "A".repeat(43));
    let err = authenticate(&store, &settings, &limiter, Some(&forged), source())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::Unauthenticated(_)), "{err:?}");
    let event = last_event(&store).await;
    assert_eq!(
        (event.action.as_str(), event.actor.as_str()),
        ("admin-auth", "anonymous")
    );
    assert!(event.detail.contains("from 192.0.2.7"));
    let trail: Vec<String> = store
        .audit_events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{:?}", e.event))
        .collect();
    assert!(
        trail
            .iter()
            .all(|e| !e.contains(&secret[4..]) && !e.contains(&"A".repeat(43))),
        "{trail:?}"
    );

    // Names are never reused; a revoked token authenticates nothing.
    let err = create_token(&store, &admin, "cmdb-sync", Role::Viewer, None)
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::Conflict(_)), "{err:?}");
    revoke_token(&store, &admin, "cmdb-sync").await.unwrap();
    let err = authenticate(&store, &settings, &limiter, Some(&header), source())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::Unauthenticated(_)));
    assert!(last_event(&store)
        .await
        .detail
        .contains("token:cmdb-sync is revoked"));

    // An expired token (recorded with an end in the past) is refused.
    let old = crate::secret::Secret::generate(crate::secret::TOKEN_PREFIX).unwrap();
    let now = OffsetDateTime::now_utc();
    store
        .apply_audited(
            OperatorChange::CreateToken(NewToken {
                name: "old".into(),
                role: "admin".into(),
                secret_sha256: old.sha256(),
                created_at: now - Duration::days(2),
                expires_at: Some(now - Duration::days(1)),
                created_by: "cli:test".into(),
            }),
            now,
            fleetca_store::AuditEvent {
                at: now,
                actor: "cli:test".into(),
                action: "token-create".into(),
                subject: "token:old".into(),
                outcome: "granted".into(),
                detail: String::new(),
            },
        )
        .await
        .unwrap();
    let header = format!("Bearer {}", old.expose());
    let err = authenticate(&store, &settings, &limiter, Some(&header), source())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::Unauthenticated(_)));
    assert!(last_event(&store)
        .await
        .detail
        .contains("token:old expired"));
    assert_eq!(
        list_tokens(&store, &admin)
            .await
            .unwrap()
            .iter()
            .map(|t| (t.name.as_str(), t.state.as_str()))
            .collect::<Vec<_>>(),
        [("cmdb-sync", "revoked"), ("old", "expired")]
    );
}

#[tokio::test]
async fn sessions_start_with_a_password_and_end_with_logout_role_changes_and_disabling() {
    let (_dir, store) = store();
    let limiter = FailureLimiter::new(100, StdDuration::from_secs(60));
    let settings = SessionSettings::default();
    let admin = Actor::cli();
    let err = add_user(&store, &admin, "alice", Role::Operator, "short".into())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AdminError::InvalidField {
                field: "password",
                ..
            }
        ),
        "{err:?}"
    );
    add_user(
        &store,
        &admin,
        "alice",
        Role::Operator,
        "Tr0ub4dor&3x!".into(),
    )
    .await
    .unwrap();

    // A wrong password and an unknown user get the same answer; both are audited.
    let wrong = login(
        &store,
        &settings,
        &limiter,
        "alice",
        "nope-nope-nope",
        source(),
    )
    .await
    .unwrap_err();
    let unknown = login(
        &store,
        &settings,
        &limiter,
        "mallory",
        "Tr0ub4dor&3x!",
        source(),
    )
    .await
    .unwrap_err();
    assert_eq!(wrong.to_string(), unknown.to_string());
    let event = last_event(&store).await;
    assert_eq!(
        (
            event.actor.as_str(),
            event.action.as_str(),
            event.outcome.as_str()
        ),
        ("user:mallory", "admin-login", "refused")
    );
    assert!(!event.detail.contains("Tr0ub4dor"), "{}", event.detail);

    let session = login(
        &store,
        &settings,
        &limiter,
        "alice",
        "Tr0ub4dor&3x!",
        source(),
    )
    .await
    .unwrap();
    assert!(session.secret.expose().starts_with("fcs_"));
    assert_eq!(session.role, Role::Operator);
    let header = format!("Bearer {}", session.secret.expose());
    let who = authenticate(&store, &settings, &limiter, Some(&header), source())
        .await
        .unwrap();
    assert_eq!(who.actor.to_string(), "user:alice");
    assert!(who.session.is_some());

    // A role change ends the session (it was granted under the old role).
    set_user_role(&store, &admin, "alice", Role::Viewer)
        .await
        .unwrap();
    assert!(
        authenticate(&store, &settings, &limiter, Some(&header), source())
            .await
            .is_err()
    );
    let session = login(
        &store,
        &settings,
        &limiter,
        "alice",
        "Tr0ub4dor&3x!",
        source(),
    )
    .await
    .unwrap();
    assert_eq!(session.role, Role::Viewer);
    let header = format!("Bearer {}", session.secret.expose());
    let who = authenticate(&store, &settings, &limiter, Some(&header), source())
        .await
        .unwrap();
    logout(&store, &who).await.unwrap();
    assert!(
        authenticate(&store, &settings, &limiter, Some(&header), source())
            .await
            .is_err()
    );

    // A disabled user cannot log in, even with the right password.
    set_user_enabled(&store, &admin, "alice", false, None)
        .await
        .unwrap();
    assert!(login(
        &store,
        &settings,
        &limiter,
        "alice",
        "Tr0ub4dor&3x!",
        source()
    )
    .await
    .is_err());
    assert!(last_event(&store).await.detail.contains("user disabled"));
}

#[tokio::test]
async fn a_source_past_its_failure_limit_is_refused_even_with_a_valid_token() {
    let (_dir, store) = store();
    let limiter = FailureLimiter::new(2, StdDuration::from_secs(60));
    let settings = SessionSettings::default();
    let created = create_token(&store, &Actor::cli(), "ci", Role::Admin, None)
        .await
        .unwrap();
    let good = format!("Bearer {}", created.secret.expose());
    for _ in 0..2 {
        let err = authenticate(&store, &settings, &limiter, Some("Bearer guess"), source())
            .await
            .unwrap_err();
        assert!(matches!(err, AdminError::Unauthenticated(_)));
    }
    let err = authenticate(&store, &settings, &limiter, Some(&good), source())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::RateLimited { .. }), "{err:?}");
    let other: IpAddr = "198.51.100.1".parse().unwrap();
    assert!(
        authenticate(&store, &settings, &limiter, Some(&good), other)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn device_pages_chain_through_their_cursors_and_refuse_another_listing_s() {
    let (_dir, store) = store();
    for i in 0..5 {
        birth(&store, &format!("0{i}"), &format!("SN-{i}")).await;
    }
    let viewer = as_role(Role::Viewer);
    let dyn_store: &dyn Store = &store;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = list_devices(
            dyn_store,
            &viewer,
            DeviceListQuery {
                limit: Some(2),
                cursor: cursor.clone(),
                ..DeviceListQuery::default()
            },
        )
        .await
        .unwrap();
        seen.extend(page.items.into_iter().map(|d| d.serial_number));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["SN-0", "SN-1", "SN-2", "SN-3", "SN-4"]);

    let first = list_devices(
        dyn_store,
        &viewer,
        DeviceListQuery {
            limit: Some(1),
            ..DeviceListQuery::default()
        },
    )
    .await
    .unwrap();
    let devices_cursor = first.next_cursor.unwrap();
    let err = list_approvals(
        dyn_store,
        &viewer,
        ApprovalListQuery {
            cursor: Some(devices_cursor.clone()),
            ..ApprovalListQuery::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            AdminError::InvalidField {
                field: "cursor",
                ..
            }
        ),
        "{err:?}"
    );
    let err = list_devices(
        dyn_store,
        &viewer,
        DeviceListQuery {
            status: Some("active".into()),
            cursor: Some(devices_cursor),
            ..DeviceListQuery::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            AdminError::InvalidField {
                field: "cursor",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn over_http_the_role_is_checked_before_the_body() {
    use tower::ServiceExt;
    let (_dir, store) = store();
    let created = create_token(&store, &Actor::cli(), "v", Role::Viewer, None)
        .await
        .unwrap();
    let api = std::sync::Arc::new(crate::http::AdminApi {
        store: std::sync::Arc::new(store),
        sessions: SessionSettings::default(),
        limiter: FailureLimiter::new(10, StdDuration::from_secs(60)),
        registration: None,
        organization: "Test".into(),
        est_labels: Vec::new(),
        tier_of: None,
        failing_threshold: 3,
    });
    let router = crate::http::router(api);
    let request = axum::http::Request::post("/api/v1/tokens")
        .header(
            "authorization",
            format!("Bearer {}", created.secret.expose()),
        )
        .header("content-type", "application/json")
        .extension(crate::http::Remote(source()))
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 10_000)
        .await
        .unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["required_role"], "admin");
}
