//! The SQL connector on a real SQLite database: rows become records, the connector only
//! reads, slow queries are interrupted. (PostgreSQL: see the crate docs; no test cluster
//! helper on this branch yet.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::path::Path;

use fleetca_connectors::ConnectorConfig;
use fleetca_ra::Connector;
use rusqlite::Connection;
use serde_json::json;

const QUERY: &str =
    "SELECT serial, status, batch, weight, note, secret FROM devices WHERE serial = ?1";

fn build(dir: &Path, url: &str, query: &str, extra: &str) -> Result<Connector, String> {
    let text = format!("kind = \"sql\"\nurl = \"{url}\"\nquery = \"{query}\"\n{extra}\n");
    let config: ConnectorConfig = toml::from_str(&text).unwrap();
    config.build("assets", dir).map_err(|e| e.to_string())
}

fn database(dir: &Path) -> Connection {
    let db = Connection::open(dir.join("assets.db")).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE devices (serial TEXT PRIMARY KEY, status TEXT NOT NULL,
                               batch INTEGER, weight REAL, note TEXT, secret BLOB);
         INSERT INTO devices VALUES ('SN1', 'active', 7, 1.5, NULL, x'00ff10');
         INSERT INTO devices VALUES ('SN2', 'decommissioned', 8, NULL, 'scrapped', NULL);",
    )
    .unwrap();
    db
}

#[tokio::test]
async fn first_row_is_the_record_and_changes_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let c = build(dir.path(), "sqlite:assets.db", QUERY, "").unwrap();
    let r = c.directory.lookup("SN1").await.unwrap().unwrap();
    assert_eq!(
        serde_json::Value::Object(r),
        json!({"serial": "SN1", "status": "active", "batch": 7, "weight": 1.5,
               "note": null, "secret": "00ff10"})
    );
    assert_eq!(c.directory.lookup("SN9").await.unwrap(), None);

    db.execute(
        "UPDATE devices SET status = 'suspended' WHERE serial = 'SN1'",
        [],
    )
    .unwrap();
    let r = c.directory.lookup("SN1").await.unwrap().unwrap();
    assert_eq!(r["status"], json!("suspended"));

    // An absolute URL, and the serial is a bound parameter, never SQL.
    let url = format!("sqlite://{}", dir.path().join("assets.db").display());
    let c = build(dir.path(), &url, QUERY, "").unwrap();
    assert_eq!(c.directory.lookup("SN1' OR '1'='1").await.unwrap(), None);
    assert!(c.directory.lookup("SN2").await.unwrap().is_some());

    // The table goes away: lookups fail, naming the database and SQLite's reason.
    db.execute_batch("DROP TABLE devices").unwrap();
    let e = c.directory.lookup("SN1").await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: no such table: devices",
            dir.path().join("assets.db").display()
        )
    );
}

#[tokio::test]
async fn the_connector_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    for query in [
        "UPDATE devices SET status = 'pwned' WHERE serial = ?1",
        "INSERT INTO devices (serial, status) VALUES (?1, 'new') RETURNING serial",
        "DELETE FROM devices WHERE serial = ?1 RETURNING *",
    ] {
        let e = build(dir.path(), "sqlite:assets.db", query, "").unwrap_err();
        assert_eq!(
            e,
            "connector 'assets': query: would write to the database; a connector only reads"
        );
    }
    let statuses: Vec<String> = db
        .prepare("SELECT status FROM devices ORDER BY serial")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(statuses, ["active", "decommissioned"]);
    // (That the connection itself refuses writes is tested in src/sql.rs, with a writing
    // statement that skips the start-up check.)
}

#[tokio::test]
async fn slow_queries_are_interrupted_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let _db = database(dir.path());
    let slow =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) \
                SELECT count(*) AS n, ?1 AS serial FROM c";
    let c = build(dir.path(), "sqlite:assets.db", slow, "timeout = \"200ms\"").unwrap();
    let e = c.directory.lookup("SN1").await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "timed out after 200ms waiting for {}",
            dir.path().join("assets.db").display()
        )
    );
}

#[test]
fn configuration_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let _db = database(dir.path());
    let e = build(dir.path(), "sqlite:missing.db", QUERY, "").unwrap_err();
    assert!(
        e.starts_with("connector 'assets': url: cannot read "),
        "{e}"
    );
    let e = build(dir.path(), "sqlite:assets.db", "SELECT * FROM devices", "").unwrap_err();
    assert_eq!(
        e,
        "connector 'assets': query: needs exactly one parameter, ?1, for the serial (has 0)"
    );
    let e = build(
        dir.path(),
        "sqlite:assets.db",
        "SELEC * FROM devices WHERE serial = ?1",
        "",
    )
    .unwrap_err();
    assert!(e.starts_with("connector 'assets': query: "), "{e}");
    let e = build(dir.path(), "sqlite:", QUERY, "").unwrap_err();
    assert_eq!(e, "connector 'assets': url: sqlite: URL without a path");
    let e = build(dir.path(), "sqlite:assets.db", QUERY, "timeout = \"0s\"").unwrap_err();
    assert_eq!(e, "connector 'assets': timeout: must be more than 0s");
}
