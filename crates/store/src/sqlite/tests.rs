use super::*;
use crate::conformance;

pub(super) fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("fleetca.db")).unwrap();
    (dir, store)
}

crate::conformance::all_conformance_tests!(fresh);

#[tokio::test]
async fn records_survive_reopening_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleetca.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        conformance::record_one(&store).await;
    }
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.certificate("01").await.unwrap().is_some());
}

/// Dropping the store closes the database before the drop returns: the writer and the
/// checkpointer are joined, and the last connection's close folds the WAL back and
/// removes `-wal` and `-shm`. A close left to a thread that ran on after the drop
/// re-created those files in a directory being removed (a refused restore's staging
/// directory, found in CI).
#[tokio::test]
async fn a_dropped_store_has_closed_its_files() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleetca.db");
        let store = SqliteStore::open(&path).unwrap();
        conformance::record_one(&store).await;
        assert!(crate::AuditLog::verify_audit_chain(&store)
            .await
            .unwrap()
            .is_ok());
        drop(store);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["fleetca.db"], "round {round}");
    }
}

/// The workspace builds SQLite with a 128 KiB - 1 in-memory sub-journal
/// (`.cargo/config.toml`): a group-commit job's savepoint then does not move it to a
/// temporary file.
#[test]
fn sqlite_keeps_a_jobs_subjournal_in_memory() {
    let conn = Connection::open_in_memory().unwrap();
    let options: Vec<String> = conn
        .prepare("PRAGMA compile_options")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        options.iter().any(|o| o == "STMTJRNL_SPILL=131071"),
        "SQLite built without LIBSQLITE3_FLAGS from .cargo/config.toml: {options:?}"
    );
}

/// A job whose sub-journal outgrows the in-memory threshold moves it to a temporary file
/// and still commits. The move writes what was in memory in chunks of the threshold's
/// size, and SQLite's unix VFS writes at most 128 KiB - 1 bytes at once: a threshold
/// past that (1 MiB, for a while) made every larger savepoint or statement fail with
/// "database or disk is full".
#[test]
fn a_job_whose_subjournal_outgrows_memory_still_commits() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("bulk.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)
         INSERT INTO t SELECT i, zeroblob(1000) FROM n;",
    )
    .unwrap();
    // ~1,000 existing pages (4 MB) changed in a savepoint, as the writer runs each job.
    conn.execute_batch(
        "BEGIN; SAVEPOINT job; UPDATE t SET body = randomblob(1000); RELEASE job; COMMIT;",
    )
    .unwrap();
    let changed: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM t WHERE body != zeroblob(1000)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(changed, 4000);
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

/// The lines of SQLite's plan for `sql` (`EXPLAIN QUERY PLAN`).
fn query_plan(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// Expiry and device queries must be index range scans, never a table scan: they run over
/// millions of rows.
#[test]
fn inventory_queries_use_indexes() {
    let (_dir, store) = fresh();
    let conn = open_reader(store.path()).unwrap();
    let plan = |sql: &str| query_plan(&conn, sql).join("; ");
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
            "certificates_by_device_kind",
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

/// The per-device limit counts, read on every enrollment, come from the device's covering
/// index alone (and one point lookup of the renewed certificate), never from the table
/// rows with their certificate bodies.
#[test]
fn the_limit_counts_read_only_the_device_index() {
    let (_dir, store) = fresh();
    let conn = open_reader(store.path()).unwrap();
    let sql = super::LIMIT_COUNTS_SQL
        .replace("?1", "'x'")
        .replace("?2", "5")
        .replace("?3", "'y'")
        .replace("?4", "3");
    let plan = query_plan(&conn, &sql);
    assert!(
        plan.iter().any(|p| p
            == "SEARCH certificates USING COVERING INDEX certificates_by_device_kind (device_serial=?)"),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|p| p.contains("INDEX sqlite_autoindex_certificates_1 (serial=?)")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|p| p.contains("SCAN")), "{plan:?}");
}

/// The CRL's query reads its covering index in serial order: no table lookup per entry
/// and no sort (1,000,000 revoked certificates took 5 s before, 0.6 s with it).
#[test]
fn the_crl_query_reads_one_covering_index_in_order() {
    let (_dir, store) = fresh();
    let conn = open_reader(store.path()).unwrap();
    let sql = super::revocation::REVOKED_SQL
        .replace("?1", "'operational'")
        .replace("?2", "5");
    let plan = query_plan(&conn, &sql).join("; ");
    assert!(
        plan.contains("COVERING INDEX certificates_revoked_by_serial")
            && !plan.contains("TEMP B-TREE"),
        "{plan}"
    );
}

/// The admin API's pages are one index range each, in index order (no sort of the
/// matching rows): the first page of "expiring within 30 days" reads 50 rows of millions.
#[test]
fn admin_listings_read_their_index_in_order() {
    let (_dir, store) = fresh();
    let conn = open_reader(store.path()).unwrap();
    let plan = |sql: &str| query_plan(&conn, sql).join("; ");
    for (sql, index) in [
        (
            "SELECT serial FROM certificates c WHERE c.status = 'valid' AND c.not_after >= 1
             AND c.not_after < 5 AND (c.not_after, c.serial) > (2, 'a')
             ORDER BY c.not_after, c.serial LIMIT 50",
            "certificates_by_expiry",
        ),
        (
            "SELECT serial FROM certificates c WHERE (c.not_after, c.serial) > (2, 'a')
             ORDER BY c.not_after, c.serial LIMIT 50",
            "certificates_by_not_after",
        ),
        (
            "SELECT kind, profile, not_after >= 3, COUNT(*) FROM certificates
             WHERE status = 'valid' AND not_after >= 1 AND not_after < 5 GROUP BY 1, 2, 3",
            "certificates_by_expiry",
        ),
        (
            "SELECT id FROM audit WHERE action = 'x' AND id < 9 ORDER BY id DESC LIMIT 50",
            "audit_by_action",
        ),
        (
            "SELECT id FROM audit WHERE subject = 'x' ORDER BY id DESC LIMIT 50",
            "audit_by_subject",
        ),
        (
            "SELECT id FROM approvals WHERE device_serial = 'x' AND id > 3 ORDER BY id LIMIT 50",
            "approvals_by_device",
        ),
        (
            "SELECT id FROM escalations e WHERE e.device_serial = 'x' ORDER BY e.id DESC LIMIT 5",
            "escalations_by_device",
        ),
    ] {
        let p = plan(sql);
        let ordered = sql.contains("GROUP BY") || !p.contains("TEMP B-TREE FOR ORDER BY");
        assert!(
            p.contains(index) && !p.contains("SCAN certificates") && ordered,
            "{sql}: {p}"
        );
    }
}

/// A database at version 8 gets its counts from the rows it has: the statistics are
/// right from the first read after the upgrade.
#[tokio::test]
async fn version_9_counts_the_rows_already_there() {
    use crate::AdminViews;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleetca.db");
    let store = SqliteStore::open(&path).unwrap();
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
    let expected = store.fleet_stats(conformance::at(0), 30, 30).await.unwrap();
    drop(store);
    // Back to version 8 without the counts, as an older fleetca left it...
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER certificate_counts_insert; DROP TRIGGER certificate_counts_update;
         DROP TRIGGER certificate_counts_delete; DROP TRIGGER decision_counts_insert;
         DROP TRIGGER device_counts_insert; DROP TRIGGER device_counts_update;
         DROP TRIGGER device_counts_delete;
         DROP TABLE certificate_counts; DROP TABLE decision_counts; DROP TABLE device_counts;
         DROP TABLE api_tokens; DROP TABLE operator_sessions; DROP TABLE operator_users;
         DROP INDEX approvals_by_device; DROP INDEX escalations_by_device;
         DROP INDEX audit_by_action; DROP INDEX audit_by_subject;
         DELETE FROM schema_migrations WHERE version = 9;",
    )
    .unwrap();
    drop(conn);
    // ...and upgraded.
    let store = SqliteStore::open(&path).unwrap();
    let stats = store.fleet_stats(conformance::at(0), 30, 30).await.unwrap();
    assert_eq!(stats, expected);
    assert_eq!(
        stats.devices_by_status,
        [("active".to_string(), 2)],
        "{stats:?}"
    );
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
