//! The HTTP connector against a real CMDB service on loopback (see `cmdb/mod.rs`): known,
//! unknown and decommissioned devices, timeouts, 5xx with retries, 4xx without, bad bodies,
//! bearer tokens, the cache and parallel lookups. Mutual TLS is in `http_tls.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod cmdb;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cmdb::Cmdb;
use fleetca_connectors::{ConnectorConfig, HttpDirectory};
use fleetca_ra::{Connector, DeviceDirectory, OnError, OnUnknown};
use serde_json::json;

fn build(dir: &Path, text: &str) -> Connector {
    let config: ConnectorConfig = toml::from_str(text).unwrap();
    config.build("cmdb", dir).unwrap()
}

fn http(url: &str, extra: &str) -> String {
    format!("kind = \"http\"\nurl = \"{url}\"\n{extra}\n")
}

#[tokio::test]
async fn known_unknown_and_decommissioned_devices() {
    let cmdb = Cmdb::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let c = build(dir.path(), &http(&cmdb.url("http", "devices"), ""));
    assert_eq!(c.name, "cmdb");
    assert_eq!(c.on_unknown, OnUnknown::Deny);
    assert_eq!(
        c.on_error,
        OnError::Unavailable {
            retry_after: Duration::from_secs(60)
        }
    );

    let active = c.directory.lookup("SN-ACTIVE").await.unwrap().unwrap();
    assert_eq!(active["status"], json!("active"));
    assert_eq!(active["owner"]["team"], json!("plant-7"));
    assert_eq!(active["batch"], json!(42));
    let decom = c.directory.lookup("SN-DECOM").await.unwrap().unwrap();
    assert_eq!(decom["status"], json!("decommissioned"));
    assert_eq!(c.directory.lookup("SN-NOBODY").await.unwrap(), None);

    // The serial is one percent-encoded path segment, whatever it holds.
    assert_eq!(c.directory.lookup("a b/../c?d").await.unwrap(), None);
    assert_eq!(cmdb.hits("a%20b%2F..%2Fc%3Fd"), 1);
    let e = c.directory.lookup("..").await.unwrap_err().to_string();
    assert_eq!(e, "serial '..' cannot be looked up by URL");
}

#[tokio::test]
async fn record_pointer_and_fields() {
    let cmdb = Cmdb::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let c = build(
        dir.path(),
        &http(
            &cmdb.url("http", "wrapped"),
            r#"record = "/data"
               on_unknown = "allow"
               on_error = "skip"
               fields = { status = "/status", team = "/owner/team", site = "/site" }"#,
        ),
    );
    assert_eq!(c.on_unknown, OnUnknown::Allow);
    assert_eq!(c.on_error, OnError::Skip);
    let r = c.directory.lookup("SN-ACTIVE").await.unwrap().unwrap();
    assert_eq!(
        serde_json::Value::Object(r),
        json!({"status": "active", "team": "plant-7", "site": null})
    );

    // Without the pointer the wrapper is the record; a pointer to nothing is an error.
    let c = build(
        dir.path(),
        &http(&cmdb.url("http", "devices"), "record = \"/data\""),
    );
    let e = c
        .directory
        .lookup("SN-ACTIVE")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, "response has nothing at /data");
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let cmdb = Cmdb::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let c = build(
        dir.path(),
        &http(
            &cmdb.url("http", "devices"),
            "retries = 2\ncache_ttl = \"0s\"",
        ),
    );
    let e = c.directory.lookup("SN-500").await.unwrap_err().to_string();
    assert_eq!(e, format!("HTTP 500 from {} (3 attempts)", cmdb.addr));
    assert_eq!(cmdb.hits("SN-500"), 3);

    let e = c.directory.lookup("SN-400").await.unwrap_err().to_string();
    assert_eq!(e, format!("HTTP 400 from {}", cmdb.addr));
    assert_eq!(cmdb.hits("SN-400"), 1, "4xx must not be retried");

    // Two 503s then the record: the retries hide the hiccup.
    let r = c.directory.lookup("SN-FLAKY").await.unwrap().unwrap();
    assert_eq!(r["status"], json!("active"));
    assert_eq!(cmdb.hits("SN-FLAKY"), 3);
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried() {
    let cmdb = Cmdb::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let c = build(
        dir.path(),
        &http(
            &cmdb.url("http", "devices"),
            "timeout = \"300ms\"\nretries = 1",
        ),
    );
    let e = c.directory.lookup("SN-SLOW").await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "timed out after 300ms waiting for {} (2 attempts)",
            cmdb.addr
        )
    );
    assert_eq!(cmdb.hits("SN-SLOW"), 2);
}

#[tokio::test]
async fn unusable_bodies_are_errors_naming_the_problem() {
    let cmdb = Cmdb::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let c = build(dir.path(), &http(&cmdb.url("http", "devices"), ""));
    let e = c
        .directory
        .lookup("SN-BADJSON")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("response is not a JSON object: EOF while parsing"),
        "{e}"
    );
    let e = c
        .directory
        .lookup("SN-ARRAY")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, "response is not a JSON object: got an array");
    let e = c.directory.lookup("SN-BIG").await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!("response from {} is larger than 64 KiB", cmdb.addr)
    );
    // Not retried: the server answered, and will answer the same.
    assert_eq!(cmdb.hits("SN-BADJSON"), 1);
}

#[tokio::test]
async fn connection_refused_is_an_error_naming_the_host() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let c = build(
        dir.path(),
        &http(
            &format!("http://127.0.0.1:{port}/d/{{serial}}?key=k3y"),
            "retries = 1",
        ),
    );
    let e = c
        .directory
        .lookup("SN-ACTIVE")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
        "{e}"
    );
    assert!(e.ends_with("(2 attempts)"), "{e}");
    assert!(!e.contains("k3y"), "the query string may hold keys: {e}");
}

#[tokio::test]
async fn bearer_token_is_sent_and_never_printed() {
    let cmdb = Cmdb::start(Some("s3cret-token")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cmdb.token"), "s3cret-token\n").unwrap();
    let text = http(
        &cmdb.url("http", "devices"),
        "bearer_token_file = \"cmdb.token\"",
    );
    let c = build(dir.path(), &text);
    let r = c.directory.lookup("SN-ACTIVE").await.unwrap().unwrap();
    assert_eq!(r["status"], json!("active"));
    assert!(!format!("{c:?}").contains("s3cret"));

    let ConnectorConfig::Http(config) = toml::from_str::<ConnectorConfig>(&text).unwrap() else {
        panic!("http")
    };
    let direct = HttpDirectory::from_config("cmdb", &config, dir.path()).unwrap();
    let debug = format!("{direct:?}");
    assert!(
        debug.contains("<redacted>") && !debug.contains("s3cret"),
        "{debug}"
    );

    // Without the token: the server's 401, not retried.
    let c = build(dir.path(), &http(&cmdb.url("http", "devices"), ""));
    let e = c
        .directory
        .lookup("SN-DECOM")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, format!("HTTP 401 from {}", cmdb.addr));
    assert_eq!(cmdb.hits("SN-DECOM"), 1);
}

#[tokio::test]
async fn answers_are_cached_for_the_ttl_and_errors_are_not() {
    let cmdb = Cmdb::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let c = build(
        dir.path(),
        &http(
            &cmdb.url("http", "devices"),
            "cache_ttl = \"400ms\"\nretries = 0",
        ),
    );
    for _ in 0..3 {
        assert!(c.directory.lookup("SN-ACTIVE").await.unwrap().is_some());
        assert_eq!(c.directory.lookup("SN-NOBODY").await.unwrap(), None);
        assert!(c.directory.lookup("SN-500").await.is_err());
    }
    assert_eq!(cmdb.hits("SN-ACTIVE"), 1, "records are cached");
    assert_eq!(cmdb.hits("SN-NOBODY"), 1, "404s are cached");
    assert_eq!(cmdb.hits("SN-500"), 3, "errors are not cached");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.directory.lookup("SN-ACTIVE").await.unwrap().is_some());
    assert_eq!(c.directory.lookup("SN-NOBODY").await.unwrap(), None);
    assert_eq!(cmdb.hits("SN-ACTIVE"), 2, "asked again after the TTL");
    assert_eq!(cmdb.hits("SN-NOBODY"), 2);

    // cache_ttl = 0s: every lookup asks.
    let c = build(
        dir.path(),
        &http(&cmdb.url("http", "devices"), "cache_ttl = \"0s\""),
    );
    c.directory.lookup("SN-DECOM").await.unwrap();
    c.directory.lookup("SN-DECOM").await.unwrap();
    assert_eq!(cmdb.hits("SN-DECOM"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_run_in_parallel() {
    let cmdb = Cmdb::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let c = build(dir.path(), &http(&cmdb.url("http", "devices"), ""));
    let directory: Arc<dyn DeviceDirectory> = Arc::clone(&c.directory);
    let mut lookups = tokio::task::JoinSet::new();
    for i in 0..16 {
        let directory = Arc::clone(&directory);
        lookups.spawn(async move { directory.lookup(&format!("SN-DELAY-{i}")).await });
    }
    while let Some(answer) = lookups.join_next().await {
        assert!(answer.unwrap().unwrap().is_some());
    }
    // Each answer takes 100 ms at the server; a connector that serialised lookups (a lock
    // held across the request) would never have two of them in flight.
    let max = cmdb.stats.max_in_flight.load(Ordering::SeqCst);
    assert!(max > 1, "at most {max} request in flight");
}

#[test]
fn configuration_errors_name_connector_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let err = |extra: &str, url: &str| {
        let config: ConnectorConfig = toml::from_str(&http(url, extra)).unwrap();
        config.build("cmdb", dir.path()).unwrap_err().to_string()
    };
    let ok = "http://127.0.0.1:1/d/{serial}";
    assert_eq!(
        err("", "ftp://127.0.0.1/{serial}"),
        "connector 'cmdb': url: scheme ftp: use http or https"
    );
    assert_eq!(
        err("", "https://user:pw@127.0.0.1/{serial}"),
        "connector 'cmdb': url: must not hold credentials; use bearer_token_file or mutual TLS"
    );
    assert_eq!(
        err("client_certificate = \"c.pem\"", ok),
        "connector 'cmdb': client_key: needed with client_certificate"
    );
    assert_eq!(
        err("retries = 11", ok),
        "connector 'cmdb': retries: at most 10"
    );
    assert_eq!(
        err("timeout = \"0s\"", ok),
        "connector 'cmdb': timeout: must be more than 0s"
    );
    assert!(
        err("ca_file = \"nope.pem\"", ok).starts_with("connector 'cmdb': ca_file: cannot read ")
    );
    std::fs::write(dir.path().join("empty.token"), " \n").unwrap();
    assert_eq!(
        err("bearer_token_file = \"empty.token\"", ok),
        "connector 'cmdb': bearer_token_file: is empty"
    );
}
