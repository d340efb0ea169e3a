//! The SQL connector on PostgreSQL, when `FLEETCA_TEST_DATABASE_URL` names a database the
//! test may create a schema in (e.g. `postgres://postgres@127.0.0.1:5432/postgres`);
//! skipped otherwise. No cluster helper on this branch: the store's throwaway-cluster
//! helper can replace the variable once both are merged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use fleetca_connectors::ConnectorConfig;
use fleetca_ra::Connector;
use serde_json::json;

fn database_url() -> Option<String> {
    let url = std::env::var("FLEETCA_TEST_DATABASE_URL").ok();
    if url.is_none() {
        eprintln!("skipped: FLEETCA_TEST_DATABASE_URL is not set");
    }
    url
}

fn build(url: &str, query: &str, extra: &str) -> Connector {
    let text = format!("kind = \"sql\"\nurl = \"{url}\"\nquery = \"{query}\"\n{extra}\n");
    let config: ConnectorConfig = toml::from_str(&text).unwrap();
    config.build("assets", std::path::Path::new(".")).unwrap()
}

/// One test: the steps share a schema and terminate the connector's connections.
#[tokio::test]
async fn postgres_records_read_only_timeouts_and_reconnects() {
    let Some(url) = database_url() else { return };
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let schema = format!("conn_test_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE;
             CREATE SCHEMA {schema};
             CREATE TABLE {schema}.devices (serial TEXT PRIMARY KEY, status TEXT NOT NULL,
                 batch INT4, big INT8, weight FLOAT8, ok BOOL, extra JSONB, secret BYTEA,
                 seen TIMESTAMPTZ DEFAULT now());
             INSERT INTO {schema}.devices VALUES
                 ('SN1', 'active', 7, 9000000000, 1.5, true, '{{\"site\": \"Lyon\"}}', '\\x00ff', now()),
                 ('SN2', 'decommissioned', NULL, NULL, NULL, NULL, NULL, NULL, now());"
        ))
        .await
        .unwrap();
    let app = format!(
        "{url}{}application_name=fleetca-conn-test",
        if url.contains('?') { "&" } else { "?" }
    );
    let columns = "serial, status, batch, big, weight, ok, extra, secret";
    let c = build(
        &app,
        &format!("SELECT {columns} FROM {schema}.devices WHERE serial = $1"),
        "",
    );
    let r = c.directory.lookup("SN1").await.unwrap().unwrap();
    assert_eq!(
        serde_json::Value::Object(r),
        json!({"serial": "SN1", "status": "active", "batch": 7, "big": 9_000_000_000i64,
               "weight": 1.5, "ok": true, "extra": {"site": "Lyon"}, "secret": "00ff"})
    );
    let r = c.directory.lookup("SN2").await.unwrap().unwrap();
    assert_eq!(r["batch"], json!(null));
    assert_eq!(c.directory.lookup("SN9").await.unwrap(), None);
    assert_eq!(c.directory.lookup("SN1' OR '1'='1").await.unwrap(), None);

    // The server ends the connector's connections: the next lookup reconnects.
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'fleetca-conn-test'",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(c.directory.lookup("SN1").await.unwrap().is_some());

    // Read only: a statement that writes fails inside the READ ONLY transaction.
    let c = build(
        &app,
        &format!(
            "WITH w AS (UPDATE {schema}.devices SET status = 'pwned' WHERE serial = $1 RETURNING serial) SELECT * FROM w"
        ),
        "",
    );
    let e = c.directory.lookup("SN1").await.unwrap_err().to_string();
    assert!(e.contains("read-only transaction"), "{e}");
    let status: String = admin
        .query_one(
            &format!("SELECT status FROM {schema}.devices WHERE serial = 'SN1'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "active");

    // Types without a mapping are an error telling to cast.
    let c = build(
        &app,
        &format!("SELECT seen FROM {schema}.devices WHERE serial = $1"),
        "",
    );
    let e = c.directory.lookup("SN1").await.unwrap_err().to_string();
    assert!(
        e.ends_with(
            "column 'seen' has type timestamptz, which the connector does not map; \
             cast it in the query (e.g. seen::text)"
        ),
        "{e}"
    );

    // Slow statements end at the timeout, and the connector recovers.
    let c = build(
        &app,
        &format!("SELECT pg_sleep(5), serial FROM {schema}.devices WHERE serial = $1"),
        "timeout = \"300ms\"",
    );
    let e = c.directory.lookup("SN1").await.unwrap_err().to_string();
    assert!(
        e.starts_with("timed out after 300ms") || e.contains("statement timeout"),
        "{e}"
    );
    let c = build(
        &app,
        &format!("SELECT serial FROM {schema}.devices WHERE serial = $1"),
        "timeout = \"300ms\"",
    );
    assert!(c.directory.lookup("SN1").await.unwrap().is_some());

    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
