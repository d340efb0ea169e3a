//! The conformance suite against PostgreSQL (a throwaway cluster per test process, or
//! `FLEETCA_TEST_DATABASE_URL`; see the `fleetca-testpg` crate), plus what only this
//! backend has: migrations under a lock, several stores (nodes) on one database.

use super::*;
use crate::conformance;
use crate::{RevocationStore, StationStore};

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
    conformance::record_one(&stores[0]).await;
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

/// A recorded CRL is compressed with lz4 where the server has it (the tests' PostgreSQL
/// 15 from Debian does), not with pglz, and reads back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crls_are_stored_with_lz4_and_read_back_whole() {
    let store = PostgresStore::open(&url()).unwrap();
    let client = store.client().await.unwrap();
    let method: i8 = client
        .query_one(
            "SELECT attcompression FROM pg_attribute
             WHERE attrelid = 'crls'::regclass AND attname = 'der'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(method as u8, b'l');
    // Large enough to be compressed and moved out of line; repetitive enough to compress.
    let der: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i / 7).to_be_bytes())
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let number = store.allocate_crl_number("operational").await.unwrap();
    store
        .store_crl(
            "operational",
            number,
            now,
            now + time::Duration::days(1),
            der.clone().into(),
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT pg_column_compression(der), pg_column_size(der) FROM crls
             WHERE issuer = 'operational'",
            &[],
        )
        .await
        .unwrap();
    let (compression, size): (Option<String>, i32) = (row.get(0), row.get(1));
    assert_eq!(compression.as_deref(), Some("lz4"));
    assert!((size as usize) < der.len() / 2, "{size} of {}", der.len());
    let stored = store.stored_crl("operational", 0).await.unwrap().unwrap();
    assert_eq!(stored.der, der);
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

// The group commit of issuances with limits and bindings (group.rs, phases 1 and 2).

use crate::{DecisionOutcome, PolicyStore};

/// An operational issuance of `device`, with its decision.
fn decided(serial: &str, device: &str) -> NewCertificate {
    let mut c = conformance::certificate(serial, device, CertificateKind::Operational, 500);
    c.decision = Some(crate::policy::conformance::decision(
        device,
        DecisionOutcome::Issued,
        0,
    ));
    c
}

/// A renewal of `renewed`, authenticated by it, under `limits`.
fn limited_renewal(
    serial: &str,
    device: &str,
    renewed: &str,
    limits: &DeviceLimits,
) -> NewCertificate {
    let mut c = decided(serial, device);
    c.replaces = Some(renewed.into());
    c.authenticated_by = Some(renewed.into());
    c.limits = limits.clone();
    c
}

/// A first enrollment binding `device` to `profile` (accepting only it).
fn binding_enrollment(serial: &str, device: &str, profile: &str) -> NewCertificate {
    let mut c = decided(serial, device);
    c.profile = profile.into();
    c.binding = DeviceBinding {
        profile: Some(ProfileBinding {
            profile: profile.into(),
            accepts: vec![profile.into()],
        }),
        birth_issuer: Some("manufacturing".into()),
        ..Default::default()
    };
    c
}

/// Records every certificate at once, spread over `nodes`; the granted serials and the
/// refusal reasons (any other error fails the test).
async fn race(
    nodes: &[PostgresStore],
    certificates: Vec<NewCertificate>,
) -> (Vec<String>, Vec<(String, String)>) {
    let tasks: Vec<_> = certificates
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let node = nodes[i % nodes.len()].clone();
            tokio::spawn(async move {
                let serial = c.serial.clone();
                (serial, node.record_issuance(c).await)
            })
        })
        .collect();
    let (mut granted, mut refused) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            (serial, Ok(())) => granted.push(serial),
            (serial, Err(StoreError::Refused(reason))) => refused.push((serial, reason)),
            (serial, Err(e)) => panic!("{serial}: {e:?}"),
        }
    }
    (granted, refused)
}

/// The serials of a device's certificates, sorted.
async fn serials_of(store: &PostgresStore, device: &str) -> Vec<String> {
    let mut serials: Vec<String> = store
        .certificates(&CertificateQuery {
            device_serial: Some(device.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.serial)
        .collect();
    serials.sort_unstable();
    serials
}

/// The certificate serials a device's decisions name, sorted (`-` for none).
async fn decided_serials(store: &PostgresStore, device: &str) -> Vec<String> {
    let mut serials: Vec<String> = store
        .decisions(Some(device), 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.decision.certificate_serial.unwrap_or_else(|| "-".into()))
        .collect();
    serials.sort_unstable();
    serials
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v
}

/// 16 simultaneous renewals of one device through two nodes, under a limit of N active
/// certificates or N issued in a window: exactly N commit (in shared commits), the others
/// are refused with the limit's reason and leave no certificate and no decision. Then the
/// same while another node's issuance that reaches the limit holds the device's lock: the
/// renewals wait for it and count it (none commits), as they could not if they counted
/// before they had the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_limited_renewals_commit_exactly_the_limit_in_batches() {
    let url = url();
    let nodes = [
        PostgresStore::open(&url).unwrap(),
        PostgresStore::open(&url).unwrap(),
    ];
    let max_three = DeviceLimits {
        max_active: Some(3),
        issued_since: None,
    };
    let three_in_window = DeviceLimits {
        max_active: None,
        issued_since: Some((3, conformance::at(-50))),
    };
    for (device, limits, needle) in [
        ("SN-MAX", max_three, "active operational certificate(s)"),
        ("SN-RATE", three_in_window, "in that window"),
    ] {
        // The renewed certificate, issued before the window: counted by neither limit.
        let renewed = format!("{device}-0").to_ascii_lowercase();
        let mut first =
            conformance::certificate(&renewed, device, CertificateKind::Operational, 500);
        first.issued_at = conformance::at(-100);
        nodes[0].record_issuance(first).await.unwrap();
        let renewals = |round: &str| -> Vec<NewCertificate> {
            (1..=16)
                .map(|i| {
                    let serial = format!("{device}-{round}{i}").to_ascii_lowercase();
                    limited_renewal(&serial, device, &renewed, &limits)
                })
                .collect()
        };
        let (granted, refused) = race(&nodes, renewals("a")).await;
        assert_eq!(
            (granted.len(), refused.len()),
            (3, 13),
            "{device}: {refused:?}"
        );
        for (_, reason) in &refused {
            assert!(
                reason.contains(needle) && reason.contains("meanwhile"),
                "{reason}"
            );
        }
        let mut expected = granted.clone();
        expected.push(renewed.clone());
        assert_eq!(serials_of(&nodes[1], device).await, sorted(expected));
        assert_eq!(decided_serials(&nodes[0], device).await, sorted(granted));

        // Another device, one certificate under the limit; another node's transaction
        // holds its lock and adds the certificate that reaches the limit.
        let waiting = format!("{device}-w");
        let mut first = conformance::certificate(
            &waiting.to_ascii_lowercase(),
            &waiting,
            CertificateKind::Operational,
            500,
        );
        first.issued_at = conformance::at(-100);
        nodes[0].record_issuance(first).await.unwrap();
        for i in 1..=2 {
            let serial = format!("{waiting}-{i}").to_ascii_lowercase();
            nodes[0]
                .record_issuance(conformance::certificate(
                    &serial,
                    &waiting,
                    CertificateKind::Operational,
                    500,
                ))
                .await
                .unwrap();
        }
        let (other, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        let conn = tokio::spawn(conn);
        let (at_0, at_500) = (
            conformance::at(0).unix_timestamp(),
            conformance::at(500).unix_timestamp(),
        );
        other
            .batch_execute(&format!(
                "BEGIN;
                 UPDATE devices SET updated_at = {at_0} WHERE serial_number = '{waiting}';
                 INSERT INTO certificates (serial, device_serial, issuer, profile, kind,
                   not_before, not_after, spki_sha256, der, status, issued_at)
                 VALUES ('{}-other', '{waiting}', 'operational', 'operational', 'operational',
                   {at_0}, {at_500}, 'ab', '\\x3000', 'valid', {at_0});",
                waiting.to_ascii_lowercase()
            ))
            .await
            .unwrap();
        let renewed = waiting.to_ascii_lowercase();
        let renewals: Vec<NewCertificate> = (1..=16)
            .map(|i| {
                let serial = format!("{renewed}-r{i}");
                limited_renewal(&serial, &waiting, &renewed, &limits)
            })
            .collect();
        let race_nodes = nodes.clone();
        let racing = tokio::spawn(async move { race(&race_nodes, renewals).await });
        // Commit once a renewal waits for the lock.
        let watcher = nodes[1].client().await.unwrap();
        let mut waits = 0;
        for _ in 0..1000 {
            let row = watcher
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap();
            waits = row.get::<_, i64>(0);
            if waits > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(waits > 0, "no renewal waited for the device's lock");
        other.batch_execute("COMMIT").await.unwrap();
        drop(other);
        conn.await.unwrap().unwrap();
        let (granted, refused) = racing.await.unwrap();
        assert_eq!(
            granted,
            Vec::<String>::new(),
            "{device}: counted before the lock"
        );
        assert_eq!(refused.len(), 16);
        for (_, reason) in &refused {
            assert!(reason.contains(needle), "{reason}");
        }
    }
    assert!(
        nodes.iter().any(|n| n.group.largest_batch() > 1),
        "the renewals never shared a commit"
    );
    assert_eq!(
        nodes
            .iter()
            .map(|n| n.group.retried_batches())
            .sum::<usize>(),
        0,
        "a batch fell back to recording alone"
    );
}

/// Simultaneous first enrollments of new devices, two per device under bindings that
/// exclude each other: for each device one binds it, the other is refused with the
/// binding's reason and wrote neither certificate nor decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_enrollments_with_other_bindings_bind_once() {
    let (_, store) = fresh();
    let devices: Vec<String> = (0..12).map(|i| format!("SN-B{i:02}")).collect();
    let enrollments = devices
        .iter()
        .flat_map(|d| {
            let serial = d.to_ascii_lowercase();
            [
                binding_enrollment(&format!("{serial}-short"), d, "short"),
                binding_enrollment(&format!("{serial}-long"), d, "long"),
            ]
        })
        .collect();
    let (granted, refused) = race(std::slice::from_ref(&store), enrollments).await;
    assert_eq!((granted.len(), refused.len()), (12, 12), "{refused:?}");
    for device in &devices {
        let standing = store.standing(device, None).await.unwrap();
        let bound = standing.device_profile.unwrap();
        assert_eq!(standing.birth_issuer.as_deref(), Some("manufacturing"));
        let winner = format!("{}-{bound}", device.to_ascii_lowercase());
        assert!(granted.contains(&winner), "{winner}");
        let (loser, reason) = refused
            .iter()
            .find(|(serial, _)| serial.starts_with(&device.to_ascii_lowercase()))
            .unwrap();
        assert!(
            reason.contains(&format!("is bound to profile '{bound}'")),
            "{loser}: {reason}"
        );
        assert_eq!(
            serials_of(&store, device).await,
            std::slice::from_ref(&winner)
        );
        assert_eq!(decided_serials(&store, device).await, [winner]);
    }
    assert!(store.group.largest_batch() > 1, "never a shared commit");
    assert_eq!(store.group.retried_batches(), 0);
}

/// One batch with a limit refusal, a suspended device (with and without limits), a
/// revoked credential, a binding refusal and good issuances: the good ones commit; the
/// refused ones get the standalone path's reasons and leave no trace, not even on their
/// device's row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commits_its_good_issuances_and_refused_ones_leave_no_trace() {
    let (_, store) = fresh();
    let max_one = DeviceLimits {
        max_active: Some(1),
        issued_since: None,
    };
    // SN-FULL has its one active certificate; SN-SUSP is suspended; SN-REV's credential is
    // revoked; SN-BOUND is bound to 'long'.
    for (serial, device) in [
        ("full-0", "SN-FULL"),
        ("susp-0", "SN-SUSP"),
        ("rev-0", "SN-REV"),
        ("ok-0", "SN-OK"),
    ] {
        store
            .record_issuance(conformance::certificate(
                serial,
                device,
                CertificateKind::Operational,
                500,
            ))
            .await
            .unwrap();
    }
    store
        .record_issuance(binding_enrollment("bound-0", "SN-BOUND", "long"))
        .await
        .unwrap();
    store
        .change_lifecycle("SN-SUSP", LifecycleChange::Suspend, conformance::at(1))
        .await
        .unwrap();
    store
        .revoke("rev-0", "keyCompromise", conformance::at(1))
        .await
        .unwrap();
    let refused_devices = ["SN-FULL", "SN-SUSP", "SN-REV", "SN-BOUND"];
    let mut before = Vec::new();
    for d in refused_devices {
        before.push((
            store.device(d).await.unwrap(),
            store.standing(d, None).await.unwrap(),
            serials_of(&store, d).await,
            decided_serials(&store, d).await,
        ));
    }

    let mut over_limit = decided("full-1", "SN-FULL");
    over_limit.limits = max_one.clone();
    let suspended = limited_renewal("susp-1", "SN-SUSP", "susp-0", &max_one);
    let suspended_plain = decided("susp-2", "SN-SUSP");
    let revoked = limited_renewal("rev-1", "SN-REV", "rev-0", &max_one);
    let mut unbound = binding_enrollment("bound-1", "SN-BOUND", "short");
    unbound.issued_at = conformance::at(2);
    let good_renewal = limited_renewal("ok-1", "SN-OK", "ok-0", &max_one);
    let good_new = binding_enrollment("new-1", "SN-NEW", "short");
    let mut good_second = binding_enrollment("new-2", "SN-NEW", "short");
    good_second.limits = DeviceLimits {
        max_active: Some(2),
        issued_since: None,
    };
    let good_plain = decided("plain-1", "SN-PLAIN");
    let results = store
        .record_batch(vec![
            over_limit,
            suspended,
            suspended_plain,
            good_renewal,
            revoked,
            good_new,
            unbound,
            good_second,
            good_plain,
        ])
        .await;
    let reasons: Vec<String> = results
        .into_iter()
        .map(|r| match r {
            Ok(()) => "ok".into(),
            Err(StoreError::Refused(reason)) => reason,
            Err(e) => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "device SN-FULL already has 1 active operational certificate(s); the profile allows at most 1 (another request of this device was issued meanwhile)",
            "device SN-SUSP is suspended (changed while the request was decided)",
            "device SN-SUSP is suspended (changed while the request was decided)",
            "ok",
            "client certificate rev-0 is revoked (changed while the request was decided)",
            "ok",
            "device SN-BOUND is bound to profile 'long', which profile 'short' does not accept",
            "ok",
            "ok",
        ]
    );
    assert_eq!(store.group.retried_batches(), 0, "the batch fell back");
    assert_eq!(store.group.largest_batch(), 9);
    for (d, before) in refused_devices.into_iter().zip(before) {
        let after = (
            store.device(d).await.unwrap(),
            store.standing(d, None).await.unwrap(),
            serials_of(&store, d).await,
            decided_serials(&store, d).await,
        );
        assert_eq!(after, before, "{d} changed");
    }
    assert_eq!(serials_of(&store, "SN-OK").await, ["ok-0", "ok-1"]);
    assert_eq!(decided_serials(&store, "SN-OK").await, ["ok-1"]);
    assert_eq!(serials_of(&store, "SN-NEW").await, ["new-1", "new-2"]);
    assert_eq!(decided_serials(&store, "SN-NEW").await, ["new-1", "new-2"]);
    assert_eq!(
        store
            .standing("SN-NEW", None)
            .await
            .unwrap()
            .device_profile
            .as_deref(),
        Some("short")
    );
    assert_eq!(serials_of(&store, "SN-PLAIN").await, ["plain-1"]);

    // The second issuance of the new device counted the first (same batch, earlier
    // statement): a limit of one refuses it.
    let mut first = binding_enrollment("twin-1", "SN-TWIN", "short");
    first.limits = max_one.clone();
    let mut second = binding_enrollment("twin-2", "SN-TWIN", "short");
    second.limits = max_one;
    let results = store.record_batch(vec![first, second]).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(&results[1], Err(StoreError::Refused(r)) if r.contains("at most 1")),
        "{:?}",
        results[1]
    );
    assert_eq!(serials_of(&store, "SN-TWIN").await, ["twin-1"]);
    assert_eq!(store.group.retried_batches(), 0);

    // A new device's first issuance refused in phase 2 (its credential is unknown): phase 1
    // created the device, so the batch is recorded again one by one, and the device is not
    // created after all.
    let mut stranger = limited_renewal("ghost-1", "SN-GHOST", "nowhere", &DeviceLimits::default());
    stranger.replaces = None;
    stranger.binding.new_device = true;
    let results = store
        .record_batch(vec![stranger, decided("plain-2", "SN-PLAIN")])
        .await;
    assert!(
        matches!(&results[0], Err(StoreError::Refused(r)) if r == "client certificate nowhere is not in the inventory"),
        "{:?}",
        results[0]
    );
    assert!(results[1].is_ok(), "{:?}", results[1]);
    assert_eq!(store.group.retried_batches(), 1);
    assert_eq!(store.device("SN-GHOST").await.unwrap(), None);
    assert_eq!(
        decided_serials(&store, "SN-GHOST").await,
        Vec::<String>::new()
    );
}

/// Two nodes issue at once for the same devices, new and known, under limits (active
/// certificates and a window): never more than the limit, whichever node's batch wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_two_nodes_issuing_for_the_same_devices() {
    let url = url();
    let nodes = [
        PostgresStore::open(&url).unwrap(),
        PostgresStore::open(&url).unwrap(),
    ];
    let limits = DeviceLimits {
        max_active: Some(2),
        issued_since: Some((3, conformance::at(-10))),
    };
    for round in 0..3 {
        let certificates = (0..48)
            .map(|i| {
                let device = format!("SN-N{}", i % 6);
                let mut c = decided(&format!("r{round}-{i:02}"), &device);
                c.limits = limits.clone();
                // The first round enrolls new devices; later ones expire nothing, so only
                // the window's limit could admit more (it does not).
                c.issued_at = conformance::at(round);
                c
            })
            .collect();
        let (granted, refused) = race(&nodes, certificates).await;
        for (serial, reason) in &refused {
            assert!(reason.contains("meanwhile"), "{serial}: {reason}");
        }
        let expected = if round == 0 { 12 } else { 0 };
        assert_eq!(granted.len(), expected, "round {round}");
        for d in 0..6 {
            let device = format!("SN-N{d}");
            assert_eq!(
                serials_of(&nodes[d % 2], &device).await.len(),
                2,
                "{device}"
            );
            assert_eq!(decided_serials(&nodes[0], &device).await.len(), 2);
        }
    }
    assert!(nodes.iter().any(|n| n.group.largest_batch() > 1));
}
