//! The admin CLI on a data directory: init, check-config, birth issuance, listing, trust.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

fn fleetca(args: &[&str], data: &std::path::Path) -> std::process::Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data))
}

#[test]
fn init_creates_a_verifiable_hierarchy_for_every_key_algorithm_and_never_overwrites() {
    require_tools!("openssl");
    for alg in ["p256", "p384", "ed25519", "rsa2048"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        let out = fleetca(
            &[
                "init",
                "--key-algorithm",
                alg,
                "--organization",
                "Acme",
                "--server-name",
                "ca.acme.example",
            ],
            &data,
        );
        assert!(
            out.status.success(),
            "{alg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("Trust anchor for devices and clients:")
                && stdout.contains("root-ca.pem"),
            "{stdout}"
        );
        let pki = data.join("pki");
        for key in [
            "root-ca.key",
            "manufacturing-ca.key",
            "operational-ca.key",
            "server.key",
        ] {
            let mode = std::fs::metadata(pki.join(key))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{alg}: {key}");
            assert!(std::fs::read_to_string(pki.join(key))
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----"));
        }
        for ca in ["manufacturing-ca.pem", "operational-ca.pem"] {
            let v = openssl(&[
                "verify",
                "-CAfile",
                pki.join("root-ca.pem").to_str().unwrap(),
                pki.join(ca).to_str().unwrap(),
            ]);
            assert!(String::from_utf8_lossy(&v.stdout).contains("OK"));
        }
        let text = String::from_utf8(
            openssl(&[
                "x509",
                "-in",
                pki.join("server.pem").to_str().unwrap(),
                "-noout",
                "-ext",
                "subjectAltName,extendedKeyUsage",
            ])
            .stdout,
        )
        .unwrap();
        for name in [
            "DNS:localhost",
            "IP Address:127.0.0.1",
            "IP Address:0:0:0:0:0:0:0:1",
            "DNS:ca.acme.example",
            "TLS Web Server Authentication",
        ] {
            assert!(text.contains(name), "{alg}: {name} in {text}");
        }
        let v = openssl(&[
            "verify",
            "-CAfile",
            pki.join("root-ca.pem").to_str().unwrap(),
            "-untrusted",
            pki.join("operational-ca.pem").to_str().unwrap(),
            pki.join("server.pem").to_str().unwrap(),
        ]);
        assert!(String::from_utf8_lossy(&v.stdout).contains("OK"));

        let root_before = std::fs::read(pki.join("root-ca.pem")).unwrap();
        let again = fleetca(&["init"], &data);
        assert!(!again.status.success());
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("never overwrites"),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_eq!(std::fs::read(pki.join("root-ca.pem")).unwrap(), root_before);
    }
}

#[test]
fn check_config_accepts_the_written_file_and_names_the_problem_in_a_bad_one() {
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let ok = fleetca(&["serve", "--check-config"], &data);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("is valid"));

    let path = data.join("fleetca.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    for (bad, needle) in [
        (
            good.replace("[logging]", "[logging]\nverbosity = 3"),
            "unknown field `verbosity`",
        ),
        (
            good.replace("validity = \"90d\"", "validity = 90"),
            "validity",
        ),
        (
            good.replace(
                "extended_key_usage = [\"clientAuth\"]\n# Key",
                "extended_key_usage = [\"anything\"]\n# Key",
            ),
            "unknown extended key usage 'anything'",
        ),
        (
            good.replace(
                "max_body_bytes = 65536\n",
                "max_body_bytes = 65536\nkey_exchange_groups = [\"X25519\", \"kyber\"]\n",
            ),
            "unknown group 'kyber'",
        ),
        (
            good.replace(
                "max_body_bytes = 65536\n",
                "max_body_bytes = 65536\nkey_exchange_groups = []\n",
            ),
            "key_exchange_groups is empty",
        ),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let out = fleetca(&["serve", "--check-config"], &data);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle) && err.contains("fleetca.toml"),
            "{needle}: {err}"
        );
    }
    // A key others can read is refused with the fix.
    std::fs::write(&path, &good).unwrap();
    let key = data.join("pki/operational-ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = fleetca(&["serve", "--check-config"], &data);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn birth_issuance_applies_the_rules_and_the_inventory_lists_it() {
    require_tools!("openssl");
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let key = dir.path().join("k.key");
    new_key(&key);
    let csr = dir.path().join("k.csr");
    openssl(&[
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/serialNumber=SN-9",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-out",
        csr.to_str().unwrap(),
    ]);
    let out = fleetca(
        &[
            "device",
            "birth",
            "--serial",
            "SN-9",
            "--csr",
            csr.to_str().unwrap(),
        ],
        &data,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused by rule 'no-ca-request'"));

    openssl(&[
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/serialNumber=SN-9",
        "-out",
        csr.to_str().unwrap(),
    ]);
    let out = fleetca(
        &[
            "device",
            "birth",
            "--serial",
            "SN 9\n",
            "--csr",
            csr.to_str().unwrap(),
        ],
        &data,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("device-serial"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fleetca(
        &[
            "device",
            "birth",
            "--serial",
            "SN-9",
            "--csr",
            csr.to_str().unwrap(),
        ],
        &data,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8(out.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    let list =
        String::from_utf8(fleetca(&["cert", "list", "--device", "SN-9"], &data).stdout).unwrap();
    assert_eq!(
        list.lines().filter(|l| l.contains(" birth ")).count(),
        1,
        "{list}"
    );
    // A 20-year birth certificate does not expire within 30 days...
    let soon =
        String::from_utf8(fleetca(&["cert", "list", "--expiring-within", "30d"], &data).stdout)
            .unwrap();
    assert_eq!(soon.lines().count(), 1, "{soon}");
    // ...but does within 21 years.
    let later =
        String::from_utf8(fleetca(&["cert", "list", "--expiring-within", "7700d"], &data).stdout)
            .unwrap();
    assert_eq!(later.lines().count(), 2, "{later}");
    let bad = fleetca(&["cert", "show", "not-hex"], &data);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a certificate serial"));
    let missing = fleetca(&["cert", "show", "0102"], &data);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no certificate with serial"));
}

#[test]
fn a_birth_certificate_from_an_imported_manufacturer_ca_enrolls() {
    require_tools!("openssl", "curl");
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let p = |f: &str| dir.path().join(f).display().to_string();
    new_key(&dir.path().join("vendor.key"));
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &p("vendor.key"),
        "-subj",
        "/O=Vendor/CN=Vendor IDevID CA",
        "-days",
        "365",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        &p("vendor.pem"),
    ]);
    new_key(&dir.path().join("dev.key"));
    openssl(&[
        "req",
        "-new",
        "-key",
        &p("dev.key"),
        "-subj",
        "/CN=VEND-1/serialNumber=VEND-1",
        "-out",
        &p("dev.csr"),
    ]);
    std::fs::write(dir.path().join("ext.cnf"), "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("dev.csr"),
        "-CA",
        &p("vendor.pem"),
        "-CAkey",
        &p("vendor.key"),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("dev.pem"),
    ]);

    // A leaf is not a CA and cannot be imported.
    let out = fleetca(
        &["trust", "add-manufacturer", "vendor", &p("dev.pem")],
        &data,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a CA certificate"));
    let out = fleetca(
        &["trust", "add-manufacturer", "vendor", &p("vendor.pem")],
        &data,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = Server::spawn(dir);
    let (dev_pem, dev_key) = (server.work("dev.pem"), server.work("dev.key"));
    enroll(
        &server,
        "simpleenroll",
        (&dev_pem, &dev_key),
        "/CN=VEND-1/serialNumber=VEND-1",
        "op",
    );
    let subject = String::from_utf8(
        openssl(&[
            "x509",
            "-in",
            server.work("op.pem").to_str().unwrap(),
            "-noout",
            "-subject",
        ])
        .stdout,
    )
    .unwrap();
    assert!(subject.contains("serialNumber = VEND-1"), "{subject}");
}
