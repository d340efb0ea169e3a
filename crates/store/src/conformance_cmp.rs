//! Conformance tests of CMP secrets and transactions: a secret is created with its audit
//! event and consumed once; a transactionID is used once and a transaction advances once
//! per server nonce (the replay protection). Every backend runs them.

use crate::conformance::at;
use crate::*;

fn secret(reference: &str) -> NewCmpSecret {
    NewCmpSecret {
        reference: reference.into(),
        device_serial: "SN-1".into(),
        secret_sha256: "ab".repeat(32),
        created_at: at(0),
        expires_at: at(3600),
        created_by: "cli:root".into(),
    }
}

fn transaction(id: &[u8], nonce: &[u8]) -> CmpTransaction {
    CmpTransaction {
        transaction_id: id.to_vec(),
        state: CmpTransactionState::Unconfirmed,
        server_nonce: nonce.to_vec(),
        protection: "mac:r1".into(),
        device_serial: "SN-1".into(),
        label: Some("line".into()),
        request_kind: "ir".into(),
        request_der: None,
        certificate_serial: Some("0a".into()),
        certificate_der: Some(vec![0x30, 0x00]),
        confirm_by: Some(at(300)),
        created_at: at(0),
        updated_at: at(0),
    }
}

pub(crate) async fn cmp_secrets_are_recorded_audited_and_consumed_once<S>(store: S)
where
    S: OperatorLog + CmpStore + AuditLog,
{
    let event = AuditEvent {
        at: at(0),
        actor: "cli:root".into(),
        action: "cmp-secret-create".into(),
        subject: "device:SN-1".into(),
        outcome: "granted".into(),
        detail: "reference r1".into(),
    };
    store
        .apply_audited(
            OperatorChange::CreateCmpSecret(secret("r1")),
            at(0),
            event.clone(),
        )
        .await
        .unwrap();
    store
        .apply_audited(
            OperatorChange::CreateCmpSecret(secret("r2")),
            at(0),
            event.clone(),
        )
        .await
        .unwrap();
    // A reference is never reused; the refused change leaves no audit event.
    assert!(matches!(
        store
            .apply_audited(OperatorChange::CreateCmpSecret(secret("r1")), at(0), event)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.audit_events(None, 10).await.unwrap().len(), 2);
    assert_eq!(
        store.cmp_secret("r1").await.unwrap().unwrap().secret,
        secret("r1")
    );
    assert!(store.cmp_secret("nope").await.unwrap().is_none());

    // Expired: not consumed.
    assert!(!store
        .consume_cmp_secret("r2", b"t0", at(3600))
        .await
        .unwrap());
    // Once only, by the first transaction.
    assert!(store.consume_cmp_secret("r1", b"t1", at(10)).await.unwrap());
    assert!(!store.consume_cmp_secret("r1", b"t2", at(11)).await.unwrap());
    let consumed = store.cmp_secret("r1").await.unwrap().unwrap();
    assert_eq!(consumed.consumed_at, Some(at(10)));
    assert_eq!(consumed.consumed_by.as_deref(), Some(&b"t1"[..]));
    assert!(!store
        .consume_cmp_secret("nope", b"t3", at(10))
        .await
        .unwrap());
}

pub(crate) async fn cmp_transactions_are_unique_and_advance_once_per_nonce<S>(store: S)
where
    S: CmpStore,
{
    let t = transaction(b"tid-1", b"n1");
    store.begin_cmp_transaction(t.clone()).await.unwrap();
    assert!(matches!(
        store.begin_cmp_transaction(t.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.cmp_transaction(b"tid-1").await.unwrap(),
        Some(t.clone())
    );
    assert!(store.cmp_transaction(b"tid-2").await.unwrap().is_none());

    assert_eq!(
        store.overdue_cmp_confirmations(at(299)).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store.overdue_cmp_confirmations(at(300)).await.unwrap(),
        vec![t.clone()]
    );

    let closed = CmpTransaction {
        state: CmpTransactionState::Closed,
        server_nonce: b"n2".to_vec(),
        confirm_by: None,
        updated_at: at(5),
        ..t.clone()
    };
    assert!(store
        .advance_cmp_transaction(b"n1", closed.clone())
        .await
        .unwrap());
    // The same message again (it carries the old nonce): refused.
    assert!(!store
        .advance_cmp_transaction(b"n1", closed.clone())
        .await
        .unwrap());
    assert_eq!(store.cmp_transaction(b"tid-1").await.unwrap(), Some(closed));
    assert_eq!(
        store.overdue_cmp_confirmations(at(400)).await.unwrap(),
        vec![]
    );
}

/// A transaction recorded with its certificate: both in one commit, and a transactionID
/// in use (recorded on its own or with another certificate) refuses the whole issuance
/// under the rule `cmp-transaction-id`, so no certificate is recorded for a replay.
pub(crate) async fn cmp_transactions_recorded_with_certificates_refuse_replays<S>(store: S)
where
    S: CmpStore + CertificateLedger + InventoryReader,
{
    let with = |serial: &str, id: &[u8]| NewCertificate {
        cmp_transaction: Some(CmpTransaction {
            state: CmpTransactionState::Closed,
            confirm_by: None,
            certificate_serial: Some(serial.into()),
            ..transaction(id, b"n1")
        }),
        ..crate::conformance::certificate(serial, "SN-1", CertificateKind::Operational, 900)
    };
    store.record_issuance(with("c1", b"tid-a")).await.unwrap();
    assert_eq!(
        store
            .cmp_transaction(b"tid-a")
            .await
            .unwrap()
            .and_then(|t| t.certificate_serial),
        Some("c1".into())
    );
    let refused = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Limit { rule, .. }) if rule == "cmp-transaction-id");
    assert!(refused(store.record_issuance(with("c2", b"tid-a")).await));
    assert!(store.certificate("c2").await.unwrap().is_none());

    store
        .begin_cmp_transaction(transaction(b"tid-b", b"n2"))
        .await
        .unwrap();
    assert!(refused(store.record_issuance(with("c3", b"tid-b")).await));
    assert!(store.certificate("c3").await.unwrap().is_none());
    assert!(store.certificate("c1").await.unwrap().is_some());
}
