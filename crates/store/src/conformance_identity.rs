//! Conformance tests of API tokens, operator users and sessions: their changes are
//! operator changes applied with their audit event (a refused change leaves no trace, and
//! the chain still verifies); the reads of [`IdentityStore`]. Every backend runs them.

use crate::conformance::at;
use crate::*;

fn event(action: &str, subject: &str) -> AuditEvent {
    AuditEvent {
        at: at(0),
        actor: "cli:root".into(),
        action: action.into(),
        subject: subject.into(),
        outcome: "granted".into(),
        detail: "from 127.0.0.1".into(),
    }
}

async fn apply<S: OperatorLog>(
    store: &S,
    change: OperatorChange,
    secs: i64,
) -> Result<Applied, StoreError> {
    store
        .apply_audited(change, at(secs), event("admin-change", "x"))
        .await
}

fn token(name: &str, secret: &str) -> NewToken {
    NewToken {
        name: name.into(),
        role: "operator".into(),
        secret_sha256: secret.repeat(64),
        created_at: at(0),
        expires_at: Some(at(3600)),
        created_by: "cli:root".into(),
    }
}

fn user(name: &str, role: &str) -> NewUser {
    NewUser {
        name: name.into(),
        role: role.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${name}"),
        created_at: at(0),
    }
}

fn session(secret: &str, user: &str) -> NewSession {
    NewSession {
        secret_sha256: secret.repeat(64),
        user: user.into(),
        created_at: at(10),
        expires_at: at(10 + 12 * 3600),
    }
}

pub(crate) async fn tokens_are_created_once_and_revoked_once<S>(store: S)
where
    S: OperatorLog + IdentityStore + AuditLog,
{
    apply(&store, OperatorChange::CreateToken(token("cmdb", "a")), 0)
        .await
        .unwrap();
    apply(&store, OperatorChange::CreateToken(token("backup", "b")), 0)
        .await
        .unwrap();
    let found = store
        .token_by_secret(&"a".repeat(64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.token, token("cmdb", "a"));
    assert_eq!((found.revoked_at, found.last_used_at), (None, None));
    assert!(store
        .token_by_secret(&"c".repeat(64))
        .await
        .unwrap()
        .is_none());
    let dup = apply(&store, OperatorChange::CreateToken(token("cmdb", "c")), 1).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(ref m)) if m.contains("cmdb")),
        "{dup:?}"
    );

    // Used: noted, but written at most once a minute.
    store.touch_token("cmdb", at(100)).await.unwrap();
    store.touch_token("cmdb", at(130)).await.unwrap();
    let used = || {
        let store = &store;
        async move {
            store
                .token_by_secret(&"a".repeat(64))
                .await
                .unwrap()
                .unwrap()
                .last_used_at
        }
    };
    assert_eq!(used().await, Some(at(100)));
    store.touch_token("cmdb", at(200)).await.unwrap();
    assert_eq!(used().await, Some(at(200)));

    apply(
        &store,
        OperatorChange::RevokeToken {
            name: "cmdb".into(),
        },
        300,
    )
    .await
    .unwrap();
    let revoked = store
        .token_by_secret(&"a".repeat(64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        revoked.revoked_at,
        Some(at(300)),
        "revoked ones are still found"
    );
    let again = apply(
        &store,
        OperatorChange::RevokeToken {
            name: "cmdb".into(),
        },
        301,
    )
    .await;
    assert!(matches!(again, Err(StoreError::Refused(_))), "{again:?}");
    let unknown = apply(
        &store,
        OperatorChange::RevokeToken {
            name: "nobody".into(),
        },
        302,
    )
    .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
    // A revoked token's name stays taken.
    let reuse = apply(&store, OperatorChange::CreateToken(token("cmdb", "d")), 303).await;
    assert!(matches!(reuse, Err(StoreError::Conflict(_))), "{reuse:?}");

    let names: Vec<String> = store
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.token.name)
        .collect();
    assert_eq!(names, ["backup", "cmdb"]);
    // Two creations and one revocation; the refused changes left no event.
    assert_eq!(store.verify_audit_chain().await.unwrap(), Ok(3));
    assert_eq!(store.audit_events(None, 10).await.unwrap().len(), 3);
}

pub(crate) async fn users_change_and_their_sessions_end<S>(store: S)
where
    S: OperatorLog + IdentityStore + AuditLog,
{
    apply(&store, OperatorChange::AddUser(user("alice", "viewer")), 0)
        .await
        .unwrap();
    apply(&store, OperatorChange::AddUser(user("bob", "admin")), 0)
        .await
        .unwrap();
    let dup = apply(&store, OperatorChange::AddUser(user("alice", "admin")), 1).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(ref m)) if m.contains("alice")),
        "{dup:?}"
    );
    let alice = store.user("alice").await.unwrap().unwrap();
    assert_eq!(alice.user, user("alice", "viewer"));
    assert!(alice.enabled);
    assert_eq!(alice.last_login_at, None);

    let login = |secret: &str, name: &str, secs| {
        apply(&store, OperatorChange::Login(session(secret, name)), secs)
    };
    let live = |secret: &str| {
        let secret = secret.repeat(64);
        let store = &store;
        async move { store.session_by_secret(&secret).await.unwrap().is_some() }
    };
    login("1", "alice", 10).await.unwrap();
    assert_eq!(
        store.user("alice").await.unwrap().unwrap().last_login_at,
        Some(at(10))
    );
    let s = store
        .session_by_secret(&"1".repeat(64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.session, session("1", "alice"));
    assert_eq!(s.last_seen_at, at(10));

    // Each of these ends the user's sessions (and only that user's).
    login("9", "bob", 10).await.unwrap();
    let changes = [
        OperatorChange::UserRole {
            name: "alice".into(),
            role: "operator".into(),
        },
        OperatorChange::UserPassword {
            name: "alice".into(),
            password_hash: "$argon2id$new".into(),
        },
        OperatorChange::UserEnabled {
            name: "alice".into(),
            enabled: false,
        },
    ];
    for (i, change) in changes.into_iter().enumerate() {
        let secret = format!("{}", i + 2);
        if i < 2 {
            login(&secret, "alice", 20).await.unwrap();
            assert!(live(&secret).await);
        }
        apply(&store, change, 30).await.unwrap();
        assert!(!live(&secret).await, "change {i} left the session");
    }
    assert!(live("9").await, "bob's session is not alice's");
    let alice = store.user("alice").await.unwrap().unwrap();
    assert_eq!(alice.user.role, "operator");
    assert_eq!(alice.user.password_hash, "$argon2id$new");
    assert!(!alice.enabled);

    // A disabled user cannot log in; no-op changes and unknown users are refused.
    let refused = login("5", "alice", 40).await;
    assert!(
        matches!(refused, Err(StoreError::Refused(_))),
        "{refused:?}"
    );
    assert!(!live("5").await);
    for change in [
        OperatorChange::UserEnabled {
            name: "alice".into(),
            enabled: false,
        },
        OperatorChange::UserRole {
            name: "alice".into(),
            role: "operator".into(),
        },
    ] {
        let r = apply(&store, change, 41).await;
        assert!(matches!(r, Err(StoreError::Refused(_))), "{r:?}");
    }
    for change in [
        OperatorChange::UserEnabled {
            name: "carol".into(),
            enabled: true,
        },
        OperatorChange::UserRole {
            name: "carol".into(),
            role: "admin".into(),
        },
        OperatorChange::UserPassword {
            name: "carol".into(),
            password_hash: "x".into(),
        },
        OperatorChange::RemoveUser {
            name: "carol".into(),
        },
        OperatorChange::Login(session("6", "carol")),
        OperatorChange::Logout {
            secret_sha256: "6".repeat(64),
        },
    ] {
        let r = apply(&store, change, 42).await;
        assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    }

    // Logout ends one session; removal ends the rest and frees the name.
    login("7", "bob", 50).await.unwrap();
    apply(
        &store,
        OperatorChange::Logout {
            secret_sha256: "7".repeat(64),
        },
        51,
    )
    .await
    .unwrap();
    assert!(!live("7").await && live("9").await);
    apply(
        &store,
        OperatorChange::RemoveUser { name: "bob".into() },
        52,
    )
    .await
    .unwrap();
    assert!(!live("9").await);
    assert!(store.user("bob").await.unwrap().is_none());
    let names: Vec<String> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.user.name)
        .collect();
    assert_eq!(names, ["alice"]);
    apply(&store, OperatorChange::AddUser(user("bob", "viewer")), 53)
        .await
        .unwrap();
    // 2 adds, 3 logins of alice, 3 changes, bob's 2 logins, logout, removal, re-add.
    assert_eq!(store.verify_audit_chain().await.unwrap(), Ok(13));
}

pub(crate) async fn sessions_are_found_touched_and_purged<S>(store: S)
where
    S: OperatorLog + IdentityStore,
{
    apply(&store, OperatorChange::AddUser(user("alice", "admin")), 0)
        .await
        .unwrap();
    for secret in ["1", "2", "3"] {
        apply(&store, OperatorChange::Login(session(secret, "alice")), 10)
            .await
            .unwrap();
    }
    let seen = |secret: &str| {
        let secret = secret.repeat(64);
        let store = &store;
        async move {
            store
                .session_by_secret(&secret)
                .await
                .unwrap()
                .map(|s| s.last_seen_at)
        }
    };
    store
        .touch_session(&"1".repeat(64), at(1000))
        .await
        .unwrap();
    // Never backwards (requests may finish out of order).
    store.touch_session(&"1".repeat(64), at(500)).await.unwrap();
    assert_eq!(seen("1").await, Some(at(1000)));
    store
        .touch_session(&"2".repeat(64), at(2000))
        .await
        .unwrap();
    // Idle since before 1500: session 1 (seen at 1000) and 3 (at 10) go, 2 stays.
    assert_eq!(store.purge_sessions(at(1600), at(1500)).await.unwrap(), 2);
    assert_eq!(seen("1").await, None);
    assert_eq!(seen("3").await, None);
    assert_eq!(seen("2").await, Some(at(2000)));
    // Past its absolute end it goes, however recent.
    assert_eq!(
        store
            .purge_sessions(at(10 + 12 * 3600), at(0))
            .await
            .unwrap(),
        1
    );
    assert_eq!(seen("2").await, None);
}
