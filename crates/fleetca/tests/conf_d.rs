//! `conf.d/` next to fleetca.toml (issue 15, item 12): the examples in `examples/rules`
//! are used by copying them unedited into the directory; fragments merge by table, in
//! lexical order, and a key set in two files is refused naming both.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn include_example(conf_d: &Path, name: &str) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/rules")
        .join(name);
    std::fs::copy(&example, conf_d.join(name)).unwrap();
}

fn check_config(data: &Path) -> Output {
    run(Command::new(fleetca_bin())
        .args(["serve", "--check-config", "--data-dir"])
        .arg(data))
}

/// A first enrollment of `serial` with its birth certificate and a new P-256 key.
fn first_enrollment(server: &Server, serial: &str) -> Answer {
    let (birth_key, birth_cert) = birth(server, serial);
    let key = server.work(&format!("{serial}.key"));
    let csr = server.work(&format!("{serial}.csr.b64"));
    new_key(&key);
    new_csr_b64(&key, &format!("/CN={serial}/serialNumber={serial}"), &csr);
    post_csr(
        server,
        "simpleenroll",
        Some((birth_cert.as_path(), birth_key.as_path())),
        &csr,
        &[],
    )
}

#[test]
fn examples_copied_into_conf_d_are_in_force_and_a_key_set_twice_names_both_files() {
    require_tools!("openssl", "curl");
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let conf_d = data.join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    for name in [
        "serial-matches-birth.toml",
        "ec-keys-only.toml",
        "reenroll-last-third.toml",
    ] {
        include_example(&conf_d, name);
    }
    // Only *.toml files are fragments.
    std::fs::write(conf_d.join("notes.txt"), "not [toml").unwrap();
    std::fs::write(
        data.join("shipped-devices.csv"),
        "serial,model,batch\nSN-1001,s1,b1\n",
    )
    .unwrap();
    let out = check_config(&data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A backup carries conf.d/ and a restore brings it back.
    let archive = dir.path().join("backup.tar");
    let restored = dir.path().join("restored");
    run_ok(
        Command::new(fleetca_bin())
            .args(["backup", "--out"])
            .arg(&archive)
            .arg("--data-dir")
            .arg(&data),
    );
    run_ok(
        Command::new(fleetca_bin())
            .arg("restore")
            .arg(&archive)
            .arg("--data-dir")
            .arg(&restored),
    );
    assert_eq!(
        std::fs::read(restored.join("conf.d/serial-matches-birth.toml")).unwrap(),
        std::fs::read(conf_d.join("serial-matches-birth.toml")).unwrap()
    );

    // The server enforces what the fragments say: the shipped-devices connector and the
    // fleet's serial pattern (without conf.d, both devices below got certificates).
    let server = Server::spawn(dir);
    let a = first_enrollment(&server, "SN-1001");
    assert_eq!(a.status, 200, "{}", a.text());
    let a = first_enrollment(&server, "SN-1002");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("shipped"), "{}", a.text());
    let a = first_enrollment(&server, "XYZ-1");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("serial-pattern"), "{}", a.text());
    server.kill();

    // Two fragments setting the same key: refused, naming both files.
    include_example(&conf_d, "cmdb-active.toml");
    std::fs::write(data.join("cmdb.token"), "token").unwrap();
    let out = check_config(&data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "profiles.operational.connectors is set in both conf.d/cmdb-active.toml and conf.d/serial-matches-birth.toml"
        ),
        "{err}"
    );
    std::fs::remove_file(conf_d.join("cmdb-active.toml")).unwrap();

    // A fragment setting a key fleetca.toml sets: refused, naming both.
    std::fs::write(
        conf_d.join("zz-local.toml"),
        "[profiles.operational]\nvalidity = \"1d\"\n",
    )
    .unwrap();
    let out = check_config(&data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "profiles.operational.validity is set in both fleetca.toml and conf.d/zz-local.toml"
        ),
        "{err}"
    );

    // An unknown key in a fragment: the error names the fragment that brings it in.
    std::fs::write(
        conf_d.join("zz-local.toml"),
        "[profiles.operational]\nreenroll_aftr = 0.5\n",
    )
    .unwrap();
    let out = check_config(&data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("the error comes with conf.d/zz-local.toml") && err.contains("reenroll_aftr"),
        "{err}"
    );

    // A bad CEL expression in a fragment names the fragment and the line in it.
    std::fs::write(
        conf_d.join("zz-local.toml"),
        "# local rules\n[[profiles.operational.rules]]\nname = \"typo\"\nexpression = 'request.key_size ==== 1'\nmessage = \"x\"\n",
    )
    .unwrap();
    let out = check_config(&data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("conf.d/zz-local.toml: profile 'operational': rule 'typo' (line 4)"),
        "{err}"
    );
}
