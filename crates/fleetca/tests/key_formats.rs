//! Keys and CSRs as factories write them: the agent enrolls with a birth key in SEC1
//! (`openssl ecparam -genkey`), PKCS#1 (`openssl genrsa -traditional`) or PKCS#8, PEM or
//! DER, and `fleetca device birth` reads PEM and DER CSRs. A file that is no key names the
//! formats the agent reads.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::*;
use fleetca_agent::{Agent, Config, OnceResult};
use fleetca_pki::SystemClock;

fn agent_config(server: &Server, dir: &Path) -> String {
    let p = |f: &str| dir.join(f).display().to_string();
    format!(
        "[server]\nurl = \"https://{addr}/.well-known/est\"\ntrust_anchor = \"{root}\"\ntimeout = \"10s\"\n\n[identity]\nbirth_key = \"{bk}\"\nbirth_certificate = \"{bc}\"\nkey = \"{k}\"\ncertificate = \"{c}\"\n",
        addr = server.addr,
        root = server.root().display(),
        bk = p("birth.key"),
        bc = p("birth.pem"),
        k = p("state/device.key"),
        c = p("state/device.pem"),
    )
}

fn agent_once(text: &str) -> Result<OnceResult, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = Config::parse(text).map_err(|e| e.to_string())?;
        let mut agent = Agent::new(config, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
        agent.once().await.map_err(|e| e.to_string())
    })
}

#[test]
fn the_agent_enrolls_with_sec1_pkcs1_and_pkcs8_birth_keys_in_pem_and_der() {
    require_tools!("openssl");
    let server = Server::start();
    let cases: [(&str, &[&[&str]]); 7] = [
        (
            "sec1-p256-pem",
            &[&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "birth.key",
            ]],
        ),
        (
            "sec1-p384-pem",
            &[&[
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                "birth.key",
            ]],
        ),
        (
            "sec1-p256-der",
            &[
                &[
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    "pem.key",
                ],
                &[
                    "ec",
                    "-in",
                    "pem.key",
                    "-outform",
                    "DER",
                    "-out",
                    "birth.key",
                ],
            ],
        ),
        (
            "pkcs1-rsa-pem",
            &[&["genrsa", "-traditional", "-out", "birth.key", "2048"]],
        ),
        (
            "pkcs1-rsa-der",
            &[
                &["genrsa", "-traditional", "-out", "pem.key", "2048"],
                &[
                    "rsa",
                    "-in",
                    "pem.key",
                    "-traditional",
                    "-outform",
                    "DER",
                    "-out",
                    "birth.key",
                ],
            ],
        ),
        (
            "pkcs8-ed25519-der",
            &[
                &["genpkey", "-algorithm", "ED25519", "-out", "pem.key"],
                &[
                    "pkey",
                    "-in",
                    "pem.key",
                    "-outform",
                    "DER",
                    "-out",
                    "birth.key",
                ],
            ],
        ),
        (
            "pkcs8-p256-pem",
            &[&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "birth.key",
            ]],
        ),
    ];
    for (i, (name, steps)) in cases.iter().enumerate() {
        let dir = server.work(name);
        std::fs::create_dir_all(&dir).unwrap();
        for step in *steps {
            run_ok(Command::new("openssl").args(*step).current_dir(&dir));
        }
        let serial = format!("SN-KEY-{i}");
        // A DER CSR for half of them, PEM for the others.
        let form = if i % 2 == 0 { "DER" } else { "PEM" };
        let key_form = if name.ends_with("-der") { "DER" } else { "PEM" };
        run_ok(Command::new("openssl").current_dir(&dir).args([
            "req",
            "-new",
            "-key",
            "birth.key",
            "-keyform",
            key_form,
            "-subj",
            &format!("/CN={serial}/serialNumber={serial}"),
            "-outform",
            form,
            "-out",
            "birth.csr",
        ]));
        run_ok(
            Command::new(fleetca_bin())
                .args(["device", "birth", "--serial", &serial, "--csr"])
                .arg(dir.join("birth.csr"))
                .arg("--out")
                .arg(dir.join("birth.pem"))
                .arg("--data-dir")
                .arg(server.data()),
        );
        let result = agent_once(&agent_config(&server, &dir));
        assert_eq!(result, Ok(OnceResult::Renewed), "{name}");
        // The key the agent wrote for itself is PKCS#8.
        let written = std::fs::read_to_string(dir.join("state/device.key")).unwrap();
        assert!(written.starts_with("-----BEGIN PRIVATE KEY-----"), "{name}");
    }
}

#[test]
fn a_birth_key_file_in_no_known_format_names_the_accepted_formats() {
    let server = Server::start();
    let dir = server.work("junk");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("birth.key"), "not a key\n").unwrap();
    std::fs::copy(server.root(), dir.join("birth.pem")).unwrap();
    let err = agent_once(&agent_config(&server, &dir)).unwrap_err();
    assert!(
        err.contains("PKCS#8") && err.contains("SEC1 (EC PRIVATE KEY)") && err.contains("PKCS#1"),
        "{err}"
    );
}

/// The server's TLS key may be in any of the formats too: here SEC1 DER, as `openssl ec
/// -outform DER` writes it, in place of the PKCS#8 PEM key `init` wrote.
#[test]
fn the_server_serves_with_a_tls_key_in_sec1_der() {
    require_tools!("openssl", "curl");
    let dir = Server::prepare(|_| {});
    let key = dir.path().join("data/pki/server.key");
    let der = dir.path().join("server.der");
    let out = openssl(&[
        "ec",
        "-in",
        key.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    std::fs::copy(&der, &key).unwrap();
    assert!(!std::fs::read(&key).unwrap().starts_with(b"-----"));
    let server = Server::spawn(dir);
    let answer = curl(&server, &[], &server.est("cacerts"));
    assert_eq!(answer.status, 200, "{}", answer.text());
}
