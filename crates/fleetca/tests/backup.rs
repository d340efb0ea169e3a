//! Issue 15, item 11: `fleetca backup` while the server runs and devices enroll, then
//! `fleetca restore` into a fresh directory that serves the certificates issued before
//! the backup; damaged or altered archives are refused before anything is restored.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn fleetca(args: &[&str]) -> Output {
    run(Command::new(fleetca_bin()).args(args))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Unpacks an archive, lets `change` alter the files, packs it again.
fn altered(archive: &Path, work: &Path, change: impl FnOnce(&Path)) -> PathBuf {
    let dir = work.join("unpacked");
    tar::Archive::new(std::fs::File::open(archive).unwrap())
        .unpack(&dir)
        .unwrap();
    change(&dir);
    let out = work.join("altered.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&out).unwrap());
    b.append_dir_all(".", &dir).unwrap();
    b.finish().unwrap();
    out
}

#[test]
fn a_backup_taken_while_enrolling_restores_into_a_server_that_knows_its_certificates() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    // One device enrolled before the backup; its certificate must survive.
    let (bk, bc) = birth(&server, "SN-B0");
    let (old_key, old_cert) = enroll(
        &server,
        "simpleenroll",
        (&bc, &bk),
        "/CN=SN-B0/serialNumber=SN-B0",
        "SN-B0-op",
    );
    let before = serial_of(&old_cert);
    let births: Vec<(String, PathBuf, PathBuf)> = (1..=8)
        .map(|i| {
            let serial = format!("SN-B{i}");
            let (k, c) = birth(&server, &serial);
            (serial, k, c)
        })
        .collect();

    // Enrollments run while the backup is taken.
    let archive = server.work("snapshot.tar");
    std::thread::scope(|scope| {
        let enrolling = scope.spawn(|| {
            for (serial, k, c) in &births {
                enroll(
                    &server,
                    "simpleenroll",
                    (c, k),
                    &format!("/CN={serial}/serialNumber={serial}"),
                    &format!("{serial}-op"),
                );
            }
        });
        let out = fleetca(&[
            "backup",
            "--out",
            p(&archive),
            "--data-dir",
            p(&server.data()),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        enrolling.join().unwrap();
    });
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the archive holds the CA keys");

    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    let out = fleetca(&["restore", p(&archive), "--data-dir", p(&data)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("CA keys match their certificates") && err.contains("audit chain intact"),
        "{err}"
    );
    // Restoring over it again is refused: never into a directory in use.
    let again = fleetca(&["restore", p(&archive), "--data-dir", p(&data)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    // The device keeps its files; the old server and its directory go away.
    let (op_key, op_cert) = (fresh.path().join("op.key"), fresh.path().join("op.pem"));
    std::fs::copy(&old_key, &op_key).unwrap();
    std::fs::copy(&old_cert, &op_cert).unwrap();
    drop(server);
    let restored = Server::spawn(fresh);
    let list = run_ok(
        Command::new(fleetca_bin())
            .args(["cert", "list", "--device", "SN-B0", "--data-dir"])
            .arg(restored.data()),
    );
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains(&before), "{before} in\n{list}");
    // The restored CA serves: the device renews with the certificate from before.
    enroll(
        &restored,
        "simplereenroll",
        (&op_cert, &op_key),
        "/CN=SN-B0/serialNumber=SN-B0",
        "SN-B0-renewed",
    );
    let verify = run_ok(
        Command::new(fleetca_bin())
            .args(["audit", "verify", "--data-dir"])
            .arg(restored.data()),
    );
    assert!(String::from_utf8_lossy(&verify.stdout).contains("audit chain intact"));
}

#[test]
fn a_snapshot_with_a_foreign_key_or_an_altered_trail_is_not_restored() {
    let server = Server::start();
    let out = fleetca(&[
        "account",
        "add",
        "acct",
        "--any-serial",
        "--data-dir",
        p(&server.data()),
    ]);
    assert!(out.status.success());
    let archive = server.work("snapshot.tar");
    let out = fleetca(&[
        "backup",
        "--out",
        p(&archive),
        "--data-dir",
        p(&server.data()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let work = tempfile::tempdir().unwrap();
    let foreign = altered(&archive, &work.path().join("a"), |dir| {
        // Another CA's key in place of the operational CA's.
        let other = dir.join("pki/registration-ca.key");
        std::fs::copy(other, dir.join("pki/operational-ca.key")).unwrap();
    });
    let trail = altered(&archive, &work.path().join("b"), |dir| {
        let conn = rusqlite::Connection::open(dir.join("fleetca.db")).unwrap();
        conn.execute("UPDATE audit SET detail = 'nothing happened'", [])
            .unwrap();
    });
    let traversal = work.path().join("evil.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&traversal).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        b.append_data(&mut header, "pki/x", &b"x"[..]).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_cksum();
        b.append_link(&mut header, "pki/link", "/etc/passwd")
            .unwrap();
        b.finish().unwrap();
    }
    for (archive, needle) in [
        (&foreign, "does not belong to the certificate"),
        (&trail, "audit chain in the backup is broken"),
        (&traversal, "unexpected entry pki/link"),
    ] {
        let target = work.path().join("restored");
        let out = fleetca(&["restore", p(archive), "--data-dir", p(&target)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!target.exists(), "nothing restored");
        let leftovers: Vec<_> = std::fs::read_dir(work.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".fleetca-restore")
            })
            .collect();
        assert!(leftovers.is_empty(), "staging directory removed");
    }
}
