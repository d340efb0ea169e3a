//! A CRL refresh that fails after a status change is retried at the next tick, not left
//! for the next scheduled refresh a day later.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;

use fleetca_pki::ManualClock;
use fleetca_publish::{PublishSettings, Publisher};
use fleetca_store::{RevocationStore, SqliteStore};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

mod common;

fn entries(der: &[u8]) -> usize {
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).unwrap();
    crl.iter_revoked_certificates().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_after_a_revocation_is_retried_at_the_next_tick() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleetca.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let now = OffsetDateTime::now_utc();
    let publisher = Publisher::new(
        vec![common::operational_ca(now)],
        store.clone(),
        store.clone(),
        Arc::new(ManualClock::new(now)),
        PublishSettings::default(),
    );
    publisher.start().await.unwrap();
    let first = store.stored_crl("operational", 0).await.unwrap().unwrap();
    assert_eq!(entries(&first.der), 0);

    // A revocation whose entry cannot be encoded (revoked before 1970, which no CRL
    // time can say): it stands for any failure of a refresh, a database error or an
    // HSM that does not answer.
    let t = now.unix_timestamp();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO devices (serial_number, status, created_at, updated_at)
           VALUES ('SN-1', 'active', {t}, {t});
         INSERT INTO certificates (serial, device_serial, issuer, profile, kind, not_before,
           not_after, spki_sha256, der, status, replaces, issued_at, revoked_at,
           revocation_reason)
           VALUES ('0123456789abcdef', 'SN-1', 'operational', 'operational', 'operational',
             {t} - 60, {t} + 86400, '', x'3000', 'revoked', NULL, {t} - 60, -86400,
             'keyCompromise');
         UPDATE status_revision SET revision = revision + 1 WHERE id = 1;"
    ))
    .unwrap();
    let err = publisher.tick().await.unwrap_err();
    assert!(err.to_string().contains("before 1970"), "{err}");

    // The cause goes away without another status change: the next tick still rebuilds.
    conn.execute(
        "UPDATE certificates SET revoked_at = ?1 WHERE serial = '0123456789abcdef'",
        [t - 30],
    )
    .unwrap();
    publisher.tick().await.unwrap();
    let rebuilt = store.stored_crl("operational", 0).await.unwrap().unwrap();
    assert!(rebuilt.number > first.number);
    assert_eq!(entries(&rebuilt.der), 1);
}
