//! Issue 13 item 8: the server's TLS key gets the same 0600 check as the CA keys; trust
//! anchors (CA certificates, `pki/manufacturers/`, the configuration) writable by group or
//! others are refused; the configuration and the database files are created 0600.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `fleetca serve --check-config` on `data`: (success, stderr).
fn check_config(data: &Path) -> (bool, String) {
    let out = run(Command::new(fleetca_bin())
        .args(["serve", "--check-config", "--data-dir"])
        .arg(data));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn data_files_are_created_private() {
    let server = Server::start();
    let data = server.data();
    assert_eq!(mode(&data.join("fleetca.toml")), 0o600);
    let db = data.join("fleetca.db");
    assert_eq!(mode(&db), 0o600, "fleetca.db");
    // WAL mode: the server holds -wal and -shm open while it runs.
    for suffix in ["-wal", "-shm"] {
        let path = data.join(format!("fleetca.db{suffix}"));
        assert!(path.exists(), "{} while serving", path.display());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn keys_and_trust_anchors_others_could_change_are_refused() {
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    assert!(check_config(&data).0, "{}", check_config(&data).1);

    // The TLS key, readable by others: refused like a CA key.
    let tls_key = data.join("pki/server.key");
    chmod(&tls_key, 0o644);
    let (ok, err) = check_config(&data);
    assert!(
        !ok && err.contains("server.key") && err.contains("chmod 600"),
        "{err}"
    );
    chmod(&tls_key, 0o600);

    // A world-writable manufacturer directory (the birth trust anchors).
    let manufacturers = data.join("pki/manufacturers");
    std::fs::create_dir_all(&manufacturers).unwrap();
    chmod(&manufacturers, 0o777);
    let (ok, err) = check_config(&data);
    assert!(
        !ok && err.contains("manufacturers") && err.contains("writable by group or others"),
        "{err}"
    );
    chmod(&manufacturers, 0o755);

    // A group-writable manufacturer CA certificate.
    let imported = manufacturers.join("vendor.pem");
    std::fs::copy(data.join("pki/manufacturing-ca.pem"), &imported).unwrap();
    chmod(&imported, 0o664);
    let (ok, err) = check_config(&data);
    assert!(
        !ok && err.contains("vendor.pem") && err.contains("chmod go-w"),
        "{err}"
    );
    std::fs::remove_file(&imported).unwrap();

    // A group-writable CA certificate, the pki directory, the configuration.
    for (path, m) in [
        (data.join("pki/root-ca.pem"), 0o664),
        (data.join("pki"), 0o775),
        (data.join("fleetca.toml"), 0o606),
    ] {
        let before = mode(&path);
        chmod(&path, m);
        let (ok, err) = check_config(&data);
        assert!(
            !ok && err.contains("writable by group or others"),
            "{}: {err}",
            path.display()
        );
        chmod(&path, before);
    }
    let (ok, err) = check_config(&data);
    assert!(ok, "{err}");
}

#[test]
fn a_permissive_umask_makes_no_trust_anchor_writable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // umask 002 (group-writable by default) for init and for the import.
    let out = run(Command::new("sh")
        .arg("-c")
        .arg("umask 002; exec \"$0\" init --organization Test --data-dir \"$1\"")
        .arg(fleetca_bin())
        .arg(&data));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&data.join("fleetca.toml")), 0o600);
    assert_eq!(mode(&data.join("fleetca.db")), 0o600);
    let (ok, err) = check_config(&data);
    assert!(ok, "{err}");
    std::fs::remove_dir(data.join("pki/manufacturers")).unwrap();
    let out = run(Command::new("sh")
        .arg("-c")
        .arg("umask 002; exec \"$0\" trust add-manufacturer vendor \"$1\" --data-dir \"$2\"")
        .arg(fleetca_bin())
        .arg(data.join("pki/manufacturing-ca.pem"))
        .arg(&data));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&data.join("pki/manufacturers")) & 0o022, 0);
    assert!(check_config(&data).0);
}
