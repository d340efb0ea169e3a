use super::*;
use crate::conformance;

pub(super) fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("fleetca.db")).unwrap();
    (dir, store)
}

/// Instantiates backend-generic conformance tests (from `$suite`) for SQLite.
macro_rules! conformance_tests {
    ($suite:path; $($name:ident),+ $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            use $suite as suite;
            let (_dir, store) = fresh();
            suite::$name(store).await;
        }
    )+};
}

conformance_tests!(
    crate::monitoring::conformance;
    expiry_candidates_skip_renewed_revoked_and_superseded,
    scans_commit_escalations_and_outbox_atomically,
    leases_have_one_holder,
    failing_devices_count_refusals_after_the_newest_issuance,
);

conformance_tests!(
    crate::policy::conformance;
    decisions_keep_every_rule_result,
    approvals_go_from_pending_to_issued_once,
    concurrent_polls_open_one_approval,
    rate_counts_and_reenroll_overrides,
);

conformance_tests!(
    conformance;
    recorded_certificates_read_back,
    operational_certificates_activate_devices_and_link_renewals,
    duplicate_serials_are_refused_and_nothing_else_is_lost,
    queries_filter_and_order_by_expiry,
    concurrent_writes_all_commit,
    accounts_round_trip_and_names_are_unique,
    standing_reports_device_and_certificate_state,
    revocation_and_holds_follow_the_rules,
    lifecycle_changes_apply_to_every_live_certificate,
    superseded_certificates_are_revoked_after_the_grace_period,
    crl_numbers_only_grow,
    stations_are_charged_in_the_issuing_transaction,
    active_operational_certificates_are_counted,
);

#[tokio::test]
async fn records_survive_reopening_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleetca.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .record_issuance(conformance::certificate(
                "01",
                "SN-1",
                CertificateKind::Birth,
                10,
            ))
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.certificate("01").await.unwrap().is_some());
}

#[test]
fn a_database_from_a_newer_fleetca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleetca.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute("INSERT INTO schema_migrations VALUES (999, 0)", [])
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("999"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleetca.db");
    std::fs::write(
        &path,
        b"this is not sqlite at all, just text padding it out a bit more",
    )
    .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("fleetca.db"), "{err}");
}

/// Expiry and device queries must be index range scans, never a table scan: they run over
/// millions of rows.
#[test]
fn inventory_queries_use_indexes() {
    let (_dir, store) = fresh();
    let conn = open_reader(store.path()).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    };
    let active = ACTIVE_OPERATIONAL_SQL
        .replace("?1", "'x'")
        .replace("?2", "5");
    for (sql, index) in [
        (
            "SELECT serial FROM certificates WHERE status = 'valid' AND not_after < 5",
            "certificates_by_expiry",
        ),
        (
            "SELECT serial FROM certificates WHERE not_after < 5 AND not_after >= 1",
            "certificates_by_not_after",
        ),
        (
            "SELECT serial FROM certificates WHERE device_serial = 'x' ORDER BY not_after",
            "certificates_by_device",
        ),
        (
            "SELECT serial FROM certificates WHERE replaces = 'x'",
            "certificates_by_replaces",
        ),
        (active.as_str(), "certificates_by_device_kind"),
    ] {
        let p = plan(sql);
        assert!(
            p.contains(index) && !p.contains("SCAN certificates"),
            "{sql}: {p}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_detects_tampering() {
    let (dir, store) = fresh();
    let path = dir.path().join("fleetca.db");
    conformance::the_audit_chain_detects_tampering(store, move || {
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE audit SET detail = 'rewritten' WHERE id = 3", [])
            .unwrap();
    })
    .await;
}
