//! The file connector on real files that change during the test: new records are seen,
//! a broken file fails lookups (closed) until it is fixed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::path::Path;

use fleetca_connectors::ConnectorConfig;
use fleetca_ra::Connector;
use serde_json::json;

fn build(dir: &Path, file: &str, extra: &str) -> Result<Connector, String> {
    let text = format!("kind = \"file\"\npath = \"{file}\"\n{extra}\n");
    let config: ConnectorConfig = toml::from_str(&text).unwrap();
    config.build("inventory", dir).map_err(|e| e.to_string())
}

/// Replaces the file the way operators should: write aside, then rename.
fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test]
async fn csv_file_changes_are_seen_and_broken_files_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("devices.csv");
    replace(
        &path,
        "serial,status,site\nSN1,active,Lyon\nSN2,decommissioned,Turin\n",
    );
    let c = build(dir.path(), "devices.csv", "reload_interval = \"0s\"").unwrap();
    let d = &c.directory;
    let r = d.lookup("SN1").await.unwrap().unwrap();
    assert_eq!(
        serde_json::Value::Object(r),
        json!({"serial": "SN1", "status": "active", "site": "Lyon"})
    );
    assert_eq!(d.lookup("SN3").await.unwrap(), None);

    // A new device, a changed one.
    replace(
        &path,
        "serial,status,site\nSN1,suspended,Lyon\nSN2,decommissioned,Turin\nSN3,active,Porto\n",
    );
    assert_eq!(
        d.lookup("SN3").await.unwrap().unwrap()["site"],
        json!("Porto")
    );
    assert_eq!(
        d.lookup("SN1").await.unwrap().unwrap()["status"],
        json!("suspended")
    );

    // Broken: every lookup fails, known devices included, until the file is fixed.
    replace(
        &path,
        "serial,status,site\nSN1,active,Lyon\nSN1,active,Paris\n",
    );
    let e = d.lookup("SN3").await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: duplicate key 'SN1' (line 2 and line 3)",
            path.display()
        )
    );
    assert!(d.lookup("SN1").await.is_err());
    replace(&path, "serial,status,site\nSN1,active,Lyon,extra\n");
    let e = d.lookup("SN1").await.unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");

    std::fs::remove_file(&path).unwrap();
    let e = d.lookup("SN1").await.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("cannot read {}: ", path.display())),
        "{e}"
    );

    replace(&path, "serial,status,site\nSN4,active,Oslo\n");
    assert_eq!(
        d.lookup("SN4").await.unwrap().unwrap()["site"],
        json!("Oslo")
    );
    assert_eq!(d.lookup("SN1").await.unwrap(), None);
}

#[tokio::test]
async fn json_file_with_another_key_and_reload_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("devices.JSON");
    replace(
        &path,
        r#"[{"id": "A-1", "status": "active", "batch": 7, "tags": ["x"]}]"#,
    );
    let c = build(
        dir.path(),
        "devices.JSON",
        "key = \"id\"\nreload_interval = \"1h\"",
    )
    .unwrap();
    let r = c.directory.lookup("A-1").await.unwrap().unwrap();
    assert_eq!(r["batch"], json!(7));
    assert_eq!(r["tags"], json!(["x"]));

    // Within reload_interval the file is not looked at again.
    replace(&path, r#"[{"id": "A-2", "status": "active"}]"#);
    assert!(c.directory.lookup("A-1").await.unwrap().is_some());
    assert_eq!(c.directory.lookup("A-2").await.unwrap(), None);

    let c = build(
        dir.path(),
        "devices.JSON",
        "key = \"id\"\nreload_interval = \"0s\"",
    )
    .unwrap();
    assert!(c.directory.lookup("A-2").await.unwrap().is_some());
    replace(&path, r#"[{"id": "A-2"}, "#);
    let e = c.directory.lookup("A-2").await.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: not JSON: ", path.display())),
        "{e}"
    );
    replace(&path, r#"[{"id": "A-2"}, {"id": "A-3"}]"#);
    assert!(c.directory.lookup("A-3").await.unwrap().is_some());
}

#[test]
fn a_broken_file_is_a_configuration_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let e = build(dir.path(), "missing.csv", "").unwrap_err();
    assert!(
        e.starts_with("connector 'inventory': path: cannot read "),
        "{e}"
    );
    std::fs::write(dir.path().join("devices.txt"), "serial\nSN1\n").unwrap();
    let e = build(dir.path(), "devices.txt", "").unwrap_err();
    assert!(e.ends_with("devices.txt: name a .csv or .json file"), "{e}");
    std::fs::write(dir.path().join("dup.csv"), "serial\nSN1\nSN1\n").unwrap();
    let e = build(dir.path(), "dup.csv", "").unwrap_err();
    assert!(
        e.starts_with("connector 'inventory': path: ")
            && e.ends_with("dup.csv: duplicate key 'SN1' (line 2 and line 3)"),
        "{e}"
    );
    std::fs::write(dir.path().join("nokey.csv"), "id\nSN1\n").unwrap();
    let e = build(dir.path(), "nokey.csv", "").unwrap_err();
    assert!(
        e.ends_with("nokey.csv: no column 'serial' in the header row"),
        "{e}"
    );
}
