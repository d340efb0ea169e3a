//! The operations against a real SQLite inventory.

use fleetca_pki::RevocationReason;
use fleetca_store::{AuditLog, CertificateKind, NewCertificate, SqliteStore};
use fleetca_store::{CertificateLedger, CertificateStatus};
use time::{Duration, OffsetDateTime};

use crate::*;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("fleetca.db")).unwrap();
    (dir, store)
}

async fn issue(store: &SqliteStore, serial: &str, device: &str) {
    let now = OffsetDateTime::now_utc();
    store
        .record_issuance(NewCertificate {
            serial: serial.into(),
            device_serial: device.into(),
            issuer: "operational".into(),
            profile: "operational".into(),
            kind: CertificateKind::Operational,
            not_before: now,
            not_after: now + Duration::days(30),
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

#[tokio::test]
async fn every_operation_is_audited_with_its_actor_and_comment_and_refusals_too() {
    let (_dir, store) = store();
    let alice = Actor::new(ActorKind::Cli, "alice", Role::Admin);
    let serial = "0a".repeat(20);
    issue(&store, &serial, "SN-1").await;
    suspend(&store, &alice, "SN-1", Some("ticket 42"))
        .await
        .unwrap();
    let err = suspend(&store, &alice, "SN-1", None).await.unwrap_err();
    assert!(matches!(err, AdminError::Refused(_)), "{err:?}");
    resume(&store, &alice, "SN-1", None).await.unwrap();
    let c = revoke_certificate(
        &store,
        &alice,
        &serial.to_ascii_uppercase(),
        RevocationReason::KeyCompromise,
        Some("leaked"),
    )
    .await
    .unwrap();
    assert_eq!(c.status, CertificateStatus::Revoked);
    let err = revoke_certificate(&store, &alice, "zz", RevocationReason::Superseded, None)
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::Invalid(_)), "{err:?}");

    let events = store.audit_events(Some("cli:alice"), 10).await.unwrap();
    let rows: Vec<(String, String, String)> = events
        .iter()
        .rev()
        .map(|e| {
            (
                e.event.action.clone(),
                e.event.outcome.clone(),
                e.event.detail.clone(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[0].0, "device-suspend");
    assert_eq!(rows[0].2, "comment: ticket 42");
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str()),
        ("device-suspend", "refused")
    );
    assert!(rows[1].2.contains("already suspended"), "{rows:?}");
    assert_eq!(rows[2].0, "device-resume");
    assert_eq!(rows[3].2, "reason keyCompromise; comment: leaked");
    assert_eq!(store.verify_audit_chain().await.unwrap(), Ok(4));
}

#[test]
fn the_cli_actor_is_the_os_user() {
    let actor = Actor::cli();
    assert_eq!(actor.kind(), ActorKind::Cli);
    assert!(!actor.name().is_empty());
    assert!(actor.to_string().starts_with("cli:"));
}
