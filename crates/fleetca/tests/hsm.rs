//! A PKI whose CA keys are in a PKCS#11 token (SoftHSM2): `fleetca init --pkcs11-*`
//! generates them in the token, `fleetca serve` signs with them, and devices enroll and
//! renew over EST; `openssl verify` checks the chains, `openssl ocsp` and `openssl crl`
//! the status signatures. Each test has its own SoftHSM configuration and token
//! directory, passed to every `fleetca` process through `SOFTHSM2_CONF`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

use common::softhsm::{init_in_token, write_private, SoftHsm, MODULE, PIN};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn fleetca(server: &Server, args: &[&str]) -> Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(server.data())
        .envs(server.env.iter().map(|(k, v)| (k, v))))
}

#[test]
fn a_pki_in_the_token_enrolls_renews_and_signs_status() {
    require_tools!("openssl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = SoftHsm::new(dir.path()) else {
        return;
    };
    let out = init_in_token(dir.path(), &hsm);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("key 'operational-ca' in the token"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(PIN));

    // No CA key is a file; the configuration names token labels; the OCSP signers'
    // .key files name their token keys.
    let data = dir.path().join("data");
    let pki = data.join("pki");
    for role in ["root", "registration", "manufacturing", "operational"] {
        assert!(pki.join(format!("{role}-ca.pem")).exists());
        assert!(
            !pki.join(format!("{role}-ca.key")).exists(),
            "{role} key is a file"
        );
    }
    let config = std::fs::read_to_string(data.join("fleetca.toml")).unwrap();
    assert!(config.contains("\n[pkcs11]\n"), "{config}");
    assert!(
        config.contains("operational_key = \"pkcs11:operational-ca\""),
        "{config}"
    );
    assert!(config.contains("root_key = \"pkcs11:root-ca\""), "{config}");
    for ca in ["manufacturing", "operational"] {
        let reference = std::fs::read_to_string(pki.join(format!("ocsp-{ca}.key"))).unwrap();
        assert!(
            reference.starts_with(&format!("pkcs11:ocsp-{ca}-")),
            "{reference}"
        );
    }
    let check = run(Command::new(fleetca_bin())
        .args(["serve", "--check-config", "--data-dir"])
        .arg(&data)
        .envs(hsm.env()));
    assert!(check.status.success(), "{}", text(&check));

    // Without its certificate the operational OCSP signer is renewed at start-up, with a
    // new key generated in the token under a new label.
    let old_reference = std::fs::read_to_string(pki.join("ocsp-operational.key")).unwrap();
    std::fs::remove_file(pki.join("ocsp-operational.pem")).unwrap();

    let server = Server::spawn_with_env(dir, hsm.env());
    let new_reference = std::fs::read_to_string(server.pki("ocsp-operational.key")).unwrap();
    assert!(
        new_reference.starts_with("pkcs11:ocsp-operational-"),
        "{new_reference}"
    );
    assert_ne!(new_reference, old_reference);
    let serial = "SN-HSM-1";
    let subj = format!("/CN={serial}/serialNumber={serial}");
    // Birth certificate: signed by the manufacturing key in the token (admin CLI).
    let (birth_key, birth_cert) = birth(&server, serial);
    let manufacturing_chain = server.work("manufacturing-chain.pem");
    std::fs::write(
        &manufacturing_chain,
        std::fs::read(server.pki("manufacturing-ca.pem")).unwrap(),
    )
    .unwrap();
    let v = openssl(&[
        "verify",
        "-CAfile",
        p(&server.root()),
        "-untrusted",
        p(&manufacturing_chain),
        p(&birth_cert),
    ]);
    assert!(text(&v).contains("OK"), "{}", text(&v));

    // simpleenroll with the birth certificate, simplereenroll with the operational one:
    // both signed by the operational key in the token, in the server process.
    let (op_key, op_cert) = enroll(
        &server,
        "simpleenroll",
        (&birth_cert, &birth_key),
        &subj,
        "op1",
    );
    let (_, renewed) = enroll(&server, "simplereenroll", (&op_cert, &op_key), &subj, "op2");
    for cert in [&op_cert, &renewed] {
        let v = openssl(&[
            "verify",
            "-CAfile",
            p(&server.root()),
            "-untrusted",
            p(&server.pki("operational-ca.pem")),
            p(cert),
        ]);
        assert!(text(&v).contains(": OK"), "{}", text(&v));
    }

    // OCSP: answered by the delegated signer whose key is in the token.
    let ocsp = run(Command::new("openssl")
        .args(["ocsp", "-issuer", p(&server.pki("operational-ca.pem"))])
        .args(["-CAfile", p(&server.root()), "-cert", p(&renewed)])
        .arg("-url")
        .arg(format!("http://{}/ocsp", server.status_addr)));
    let answer = text(&ocsp);
    assert!(answer.contains("Response verify OK"), "{answer}");
    assert!(answer.contains(": good"), "{answer}");

    // Revocation: the CRL the server signs with the operational key lists it and verifies.
    let revoked = serial_of(&op_cert);
    let out = fleetca(
        &server,
        &["cert", "revoke", &revoked, "--reason", "superseded"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let crl = server.work("op.crl");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        run_ok(
            Command::new("curl")
                .args(["-sS", "--fail", "-o", p(&crl)])
                .arg(format!("http://{}/crl/operational.crl", server.status_addr)),
        );
        let listing = text(&openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            p(&crl),
            "-noout",
            "-text",
        ]));
        if listing.contains(&revoked.to_uppercase()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the CRL never listed {revoked}:\n{listing}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = run(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in", p(&crl), "-noout", "-verify"])
        .args(["-CAfile", p(&server.pki("operational-ca.pem"))]));
    assert!(text(&v).contains("verify OK"), "{}", text(&v));

    // A factory station credential: signed by the registration key in the token.
    let stations = server.work("stations");
    let out = fleetca(
        &server,
        &[
            "factory",
            "add-station",
            "line-1",
            "--serial-pattern",
            "^SN-[0-9]+$",
            "--out",
            p(&stations),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v = openssl(&[
        "verify",
        "-CAfile",
        p(&server.root()),
        "-untrusted",
        p(&server.pki("registration-ca.pem")),
        p(&stations.join("line-1.pem")),
    ]);
    assert!(text(&v).contains(": OK"), "{}", text(&v));
    assert!(server.alive());
    assert!(!server.log().contains(PIN));
}

/// Runs `fleetca serve` on `data`, which must fail at start-up; returns its output.
fn serve_must_fail(data: &Path, env: &[(String, PathBuf)]) -> String {
    let mut child = Command::new(fleetca_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--status-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fleetca serve started although it should have refused to");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    text(&out)
}

#[test]
fn token_problems_stop_serve_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = SoftHsm::new(dir.path()) else {
        return;
    };
    let data = dir.path().join("data");
    let config_path = data.join("fleetca.toml");

    // init with a wrong PIN: refused before anything is written.
    let good_pin = std::fs::read_to_string(&hsm.pin_file).unwrap();
    write_private(&hsm.pin_file, "0000-wrong\n");
    let out = init_in_token(dir.path(), &hsm);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("CKR_PIN_INCORRECT") && msg.contains(MODULE),
        "{msg}"
    );
    assert!(!config_path.exists(), "init left a configuration behind");
    write_private(&hsm.pin_file, &good_pin);
    let out = init_in_token(dir.path(), &hsm);
    assert!(out.status.success(), "{}", text(&out));
    let config = std::fs::read_to_string(&config_path).unwrap();

    // A second PKI in the same token: refused before anything is created.
    let second = tempfile::tempdir().unwrap();
    let out = init_in_token(second.path(), &hsm);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("token 'fleetca': the token already holds a key labelled 'root-ca'"),
        "{msg}"
    );
    assert!(!second.path().join("data").exists(), "{msg}");

    // Wrong PIN: the module, slot, token and return code, never the PIN.
    write_private(&hsm.pin_file, "0000-wrong\n");
    let msg = serve_must_fail(&data, &hsm.env());
    for needle in [
        MODULE,
        "slot ",
        "token 'fleetca'",
        "C_Login",
        "CKR_PIN_INCORRECT",
        "PIN file is wrong",
    ] {
        assert!(msg.contains(needle), "expected '{needle}' in: {msg}");
    }
    assert!(!msg.contains("0000-wrong"), "{msg}");
    write_private(&hsm.pin_file, &good_pin);

    // A token that is not there: the labels that are.
    std::fs::write(
        &config_path,
        config.replace("token = \"fleetca\"", "token = \"fleetca-2\""),
    )
    .unwrap();
    let msg = serve_must_fail(&data, &hsm.env());
    assert!(
        msg.contains("token 'fleetca-2': no such token (tokens present: 'fleetca')"),
        "{msg}"
    );

    // A key label that is not in the token.
    std::fs::write(
        &config_path,
        config.replace("pkcs11:operational-ca", "pkcs11:operational-ca-2025"),
    )
    .unwrap();
    let msg = serve_must_fail(&data, &hsm.env());
    assert!(
        msg.contains("token 'fleetca'")
            && msg.contains("no private key labelled 'operational-ca-2025'"),
        "{msg}"
    );

    // A module that does not exist.
    std::fs::write(
        &config_path,
        config.replace(
            &format!("module = \"{MODULE}\""),
            "module = \"/opt/hsm/libnothere.so\"",
        ),
    )
    .unwrap();
    let msg = serve_must_fail(&data, &hsm.env());
    assert!(
        msg.contains("cannot load PKCS#11 module /opt/hsm/libnothere.so"),
        "{msg}"
    );

    // A PIN file others can read.
    std::fs::write(&config_path, &config).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hsm.pin_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let msg = serve_must_fail(&data, &hsm.env());
    assert!(msg.contains("chmod 600"), "{msg}");
}
