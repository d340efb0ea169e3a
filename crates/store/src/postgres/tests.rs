//! The conformance suite against PostgreSQL (a throwaway cluster per test process, or
//! `FLEETCA_TEST_DATABASE_URL`; see the `fleetca-testpg` crate), plus what only this
//! backend has: migrations under a lock, several stores (nodes) on one database.

use super::*;
use crate::conformance;
use crate::StationStore;

fn url() -> String {
    fleetca_testpg::database_url().unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn fresh() -> ((), PostgresStore) {
    ((), PostgresStore::open(&url()).unwrap())
}

/// Runs `sql` on its own connection, outside any runtime the caller is in.
fn execute(url: &str, sql: &str) {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
                let task = tokio::spawn(conn);
                client.batch_execute(&sql).await.unwrap();
                drop(client);
                task.await.unwrap().unwrap();
            })
    })
    .join()
    .unwrap();
}

conformance::all_conformance_tests!(fresh);

/// Concurrent operational issuances share commits, and each still gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issuances_are_committed_in_groups() {
    let (_, store) = fresh();
    conformance::concurrent_issuances_succeed_or_fail_alone(store.clone()).await;
    assert!(
        store.group.largest_batch() > 1,
        "100 concurrent issuances never shared a commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_detects_tampering() {
    let url = url();
    let store = PostgresStore::open(&url).unwrap();
    conformance::the_audit_chain_detects_tampering(store, move || {
        execute(&url, "UPDATE audit SET detail = 'rewritten' WHERE id = 3");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_opening_one_new_database_together_migrate_it_once() {
    let url = url();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().unwrap());
    }
    // Records written through one node are read through another.
    stores[0]
        .record_issuance(conformance::certificate(
            "01",
            "SN-1",
            CertificateKind::Birth,
            10,
        ))
        .await
        .unwrap();
    assert!(stores[3].certificate("01").await.unwrap().is_some());
    let client = stores[1].client().await.unwrap();
    // Each migration once (numbers may leave gaps reserved for other branches).
    let row = client
        .query_one(
            "SELECT COUNT(*), COUNT(DISTINCT version), MAX(version) FROM schema_migrations",
            &[],
        )
        .await
        .unwrap();
    let (n, distinct, newest): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(n, distinct);
    assert_eq!(n as usize, schema::MIGRATIONS.len());
    assert_eq!(newest, schema::latest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_fleetca_is_refused() {
    let url = url();
    drop(PostgresStore::open(&url).unwrap());
    execute(&url, "INSERT INTO schema_migrations VALUES (999, 0)");
    let err = PostgresStore::open(&url).unwrap_err();
    assert!(err.to_string().contains("999"), "{err}");
}

/// Two stores (two nodes' pools) recording births for one station at once: the quota
/// holds across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_quota_holds_across_nodes() {
    let url = url();
    let (a, b) = (
        PostgresStore::open(&url).unwrap(),
        PostgresStore::open(&url).unwrap(),
    );
    a.add_station(NewStation {
        name: "line-x".into(),
        serial_pattern: "^SN-".into(),
        range_from: None,
        range_to: None,
        quota: Some(5),
        valid_days: 365,
        allow_reissue: false,
        credential_serial: "aa".into(),
        created_at: time::OffsetDateTime::now_utc(),
    })
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut c = conformance::certificate(
                &format!("{i:04x}"),
                // Half the requests name the same few devices (one live birth each).
                &format!("SN-{}", i % 12),
                CertificateKind::Birth,
                9000,
            );
            c.birth = Some(BirthContext {
                station: Some("line-x".into()),
                ..Default::default()
            });
            node.record_issuance(c).await
        }));
    }
    let mut granted = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            granted += 1;
        }
    }
    assert_eq!(granted, 5);
    assert_eq!(b.station("line-x").await.unwrap().unwrap().issued, 5);
    let all = a.certificates(&CertificateQuery::default()).await.unwrap();
    assert_eq!(all.len(), 5);
    let mut devices: Vec<&str> = all.iter().map(|c| c.device_serial.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    assert_eq!(devices.len(), 5, "one live birth certificate per device");
}

/// With CA certificates configured, every connection is TLS and verifies the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_verify_the_server_against_the_configured_ca() {
    let ca = fleetca_testpg::tls_ca_pem().unwrap();
    let url = crate::PostgresUrl::parse(&url())
        .unwrap()
        .with_tls_roots(ca.as_bytes())
        .unwrap();
    let store = PostgresStore::open_url(&url).unwrap();
    conformance::recorded_certificates_read_back(store.clone()).await;
    let client = store.client().await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the pooled connection is not TLS");

    // Another CA: the server's certificate does not chain to it.
    let other = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    };
    let wrong = crate::PostgresUrl::parse(url.expose())
        .unwrap()
        .with_tls_roots(other.as_bytes())
        .unwrap();
    let err = PostgresStore::open_url(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("certificate") && err.contains("127.0.0.1"),
        "{err}"
    );
}

#[test]
fn tls_settings_that_contradict_the_url_are_refused() {
    let ca = fleetca_testpg::tls_ca_pem().unwrap();
    let base = url();
    let require = format!("{base}?sslmode=require");
    let err = PostgresStore::open(&require).unwrap_err().to_string();
    assert!(err.contains("set [database] ca_file"), "{err}");
    let disable = crate::PostgresUrl::parse(&format!("{base}?sslmode=disable"))
        .unwrap()
        .with_tls_roots(ca.as_bytes())
        .unwrap();
    let err = PostgresStore::open_url(&disable).unwrap_err().to_string();
    assert!(err.contains("sslmode=disable"), "{err}");
    let garbage = crate::PostgresUrl::parse(&base)
        .unwrap()
        .with_tls_roots(b"not a certificate")
        .unwrap_err()
        .to_string();
    assert!(garbage.contains("no PEM certificate"), "{garbage}");
}

/// A database at version 3 gets its counts from the rows it has; the deltas that
/// enrollments append are folded by the readers of the counts (the statistics and the
/// inventory gauges of every expiry scan), so they do not pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_4_counts_the_rows_already_there_and_readers_fold_the_deltas() {
    use crate::{AdminViews, MonitoringStore};
    let url = url();
    let store = PostgresStore::open(&url).unwrap();
    for (serial, device, not_after) in
        [("01", "SN-1", 100), ("02", "SN-2", 200), ("03", "SN-2", -9)]
    {
        store
            .record_issuance(conformance::certificate(
                serial,
                device,
                CertificateKind::Operational,
                not_after,
            ))
            .await
            .unwrap();
    }
    let deltas = |store: &PostgresStore| {
        let store = store.clone();
        async move {
            let client = store.client().await.unwrap();
            let mut n = 0;
            for table in [
                "certificate_count_deltas",
                "device_count_deltas",
                "decision_count_deltas",
            ] {
                let row = client
                    .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
                    .await
                    .unwrap();
                n += row.get::<_, i64>(0);
            }
            n
        }
    };
    assert!(deltas(&store).await > 0);
    store
        .inventory_summary(conformance::at(0), &[86_400])
        .await
        .unwrap();
    assert_eq!(deltas(&store).await, 0, "the gauges' refresh folds");
    let expected = store.fleet_stats(conformance::at(0), 30, 30).await.unwrap();
    drop(store);
    // Back to version 3 without the counts, as an older fleetca left it...
    execute(
        &url,
        "DROP TRIGGER certificate_counts_insert ON certificates;
         DROP TRIGGER certificate_counts_update ON certificates;
         DROP TRIGGER certificate_counts_delete ON certificates;
         DROP TRIGGER device_counts_insert ON devices; DROP TRIGGER device_counts_update ON devices;
         DROP TRIGGER device_counts_delete ON devices;
         DROP TRIGGER decision_counts_insert ON decisions;
         DROP FUNCTION certificate_count_delta(); DROP FUNCTION device_count_delta();
         DROP FUNCTION decision_count_delta();
         DROP TABLE certificate_counts, certificate_count_deltas, device_counts,
           device_count_deltas, decision_counts, decision_count_deltas, api_tokens,
           operator_sessions, operator_users;
         DROP INDEX approvals_by_device, escalations_by_device, audit_by_action,
           audit_by_subject;
         DELETE FROM schema_migrations WHERE version = 4;",
    );
    // ...and upgraded.
    let store = PostgresStore::open(&url).unwrap();
    let stats = store.fleet_stats(conformance::at(0), 30, 30).await.unwrap();
    assert_eq!(stats, expected);
    assert_eq!(stats.devices_by_status, [("active".to_string(), 2)]);
}

/// Two nodes enroll while both read the statistics (each read folds the deltas it sees):
/// no delta is folded twice or lost, so the counts end equal to the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_folded_during_concurrent_enrollments_on_two_nodes_match_the_rows() {
    use crate::AdminViews;
    let url = url();
    let (a, b) = (
        PostgresStore::open(&url).unwrap(),
        PostgresStore::open(&url).unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..200 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            node.record_issuance(conformance::certificate(
                &format!("{i:04x}"),
                &format!("SN-{}", i % 50),
                CertificateKind::Operational,
                // Later days: counted by the folded counts, not today's exact count.
                (2 + i % 7) * 86_400,
            ))
            .await
            .unwrap();
            if i % 10 == 0 {
                node.fleet_stats(conformance::at(0), 30, 30).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = b.fleet_stats(conformance::at(0), 30, 30).await.unwrap();
    let total: u64 = stats.certificates.iter().map(|c| c.3).sum();
    assert_eq!(total, 200);
    assert_eq!(stats.devices_by_status, [("active".to_string(), 50)]);
    let expiring: u64 = stats.expiring_per_day.iter().map(|e| e.2).sum();
    assert_eq!((expiring, stats.expiring_per_day.len()), (200, 7));
    let client = a.client().await.unwrap();
    let rows = client
        .query(
            "SELECT kind, profile, status, COUNT(*) FROM certificates GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .unwrap();
    let recount: Vec<(String, String, String, u64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get::<_, i64>(3) as u64))
        .collect();
    assert_eq!(stats.certificates, recount);
}
