//! SCEP against a real `fleetca serve` with pyscep (PyPI 0.0.14), an independent Python
//! client, in the virtual environment `.ci/run` makes at `target/pyscep-venv` (or
//! `FLEETCA_PYSCEP_VENV`); `scep_pyscep.py` picks its operations. It sends what certmonger
//! never does: `GetCert` (21), `GetCRL` (22) and `CertPoll` (20), and a `PKCSReq` signed
//! with a birth certificate; told to, it protects its requests with 3DES and SHA-1. The
//! CAs here are RSA (pyscep checks the RA certificate with RSA only). Every certificate is
//! checked with `openssl verify` to the root. In CI (`CI` set) a missing venv fails the
//! test; elsewhere it skips, saying so.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::scep::*;
use common::*;

fn venv_python() -> Option<PathBuf> {
    let dir = match std::env::var_os("FLEETCA_PYSCEP_VENV") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pyscep-venv"),
    };
    let python = dir.join("bin/python");
    python.exists().then_some(python)
}

macro_rules! require_pyscep {
    () => {{
        require_tools!("openssl", "curl");
        match venv_python() {
            Some(p) => p,
            None => {
                if std::env::var_os("CI").is_some() {
                    panic!("pyscep is required in CI: .ci/run creates target/pyscep-venv (or set FLEETCA_PYSCEP_VENV)");
                }
                eprintln!("SKIPPED: pyscep not found (see .ci/run: python3 -m venv target/pyscep-venv, pip install pyscep==0.0.14 and its dependencies; or set FLEETCA_PYSCEP_VENV)");
                return;
            }
        }
    }};
}

/// What pyscep answered: pkiStatus, failInfo, the transactionID of a PENDING, and how many
/// certificates (or CRLs) it wrote.
#[derive(Debug)]
struct Outcome {
    status: String,
    fail_info: Option<String>,
    transaction_id: Option<String>,
    count: u64,
}

struct Pyscep {
    python: PathBuf,
    /// `--cipher X --digest Y`, or nothing.
    options: Vec<String>,
}

impl Pyscep {
    fn new(python: PathBuf) -> Self {
        Self {
            python,
            options: Vec::new(),
        }
    }

    /// Envelopes in 3DES and SHA-1 digests and signatures, whatever GetCACaps offers.
    fn legacy(python: PathBuf) -> Self {
        Self {
            python,
            options: ["--cipher", "3des", "--digest", "sha1"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn run(&self, url: &str, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scep_pyscep.py");
        let out = run(Command::new("timeout")
            .arg("120")
            .arg(&self.python)
            .arg(script)
            .args(&self.options)
            .arg(url)
            .args(args));
        assert!(
            out.status.success(),
            "pyscep {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn operation(&self, url: &str, args: &[&str]) -> Outcome {
        let text = self.run(url, args);
        let json: serde_json::Value =
            serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        let field = |k: &str| json[k].as_str().map(str::to_string);
        Outcome {
            status: field("status").unwrap(),
            fail_info: field("fail_info"),
            transaction_id: field("transaction_id"),
            count: json["count"].as_u64().unwrap_or(0),
        }
    }

    fn caps(&self, url: &str) -> Vec<String> {
        self.run(url, &["caps"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn enrol(&self, url: &str, d: &DeviceFiles, signer: (&Path, &Path), out: &Path) -> Outcome {
        self.operation(
            url,
            &[
                "enrol",
                d.csr.to_str().unwrap(),
                signer.0.to_str().unwrap(),
                signer.1.to_str().unwrap(),
                out.to_str().unwrap(),
            ],
        )
    }
}

/// A device's key, CSR and self-signed certificate (the signer of its first request).
struct DeviceFiles {
    key: PathBuf,
    csr: PathBuf,
    self_signed: PathBuf,
    cert: PathBuf,
}

impl DeviceFiles {
    fn new(server: &Server, name: &str, serial: &str, challenge: Option<&str>) -> Self {
        let dir = client_dir(server, name);
        let files = Self {
            key: dir.join("key.pem"),
            csr: dir.join("csr.pem"),
            self_signed: dir.join("self.pem"),
            cert: dir.join("cert.pem"),
        };
        let subj = format!("/CN={serial}/serialNumber={serial}");
        rsa_key(&files.key);
        csr(&files.key, &subj, challenge, &files.csr);
        self_signed(&files.key, &subj, &files.self_signed);
        files
    }

    fn self_signer(&self) -> (&Path, &Path) {
        (&self.self_signed, &self.key)
    }

    fn issued_signer(&self) -> (&Path, &Path) {
        (&self.cert, &self.key)
    }
}

fn success(outcome: &Outcome, server: &Server) {
    assert!(
        outcome.status == "SUCCESS" && outcome.count >= 1,
        "{outcome:?}\n{}",
        server.log()
    );
}

fn failure(outcome: &Outcome, fail_info: &str) {
    assert_eq!(
        (outcome.status.as_str(), outcome.fail_info.as_deref()),
        ("FAILURE", Some(fail_info)),
        "{outcome:?}"
    );
}

fn refused_by(server: &Server, fail_info: &str, rule: &str) -> bool {
    server.log().lines().any(|l| {
        l.contains("SCEP request refused")
            && l.contains(&format!("fail_info=\"{fail_info}\""))
            && l.contains(&format!("rule=\"{rule}\""))
    })
}

fn der(pem: &Path) -> Vec<u8> {
    openssl(&["x509", "-in", pem.to_str().unwrap(), "-outform", "DER"]).stdout
}

fn pkcs8(key: &Path) -> Vec<u8> {
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        key.to_str().unwrap(),
        "-outform",
        "DER",
    ])
    .stdout
}

#[test]
fn pyscep_enrolls_then_gets_its_certificate_and_the_crl_and_is_refused_the_rest() {
    let python = require_pyscep!();
    let server = scep_server("rsa2048", false, |_| {});
    let url = scep_url(&server, None);
    let py = Pyscep::new(python);
    let caps = py.caps(&url);
    for cap in [
        "AES",
        "POSTPKIOperation",
        "Renewal",
        "SHA-256",
        "SHA-512",
        "SCEPStandard",
    ] {
        assert!(caps.iter().any(|c| c == cap), "{cap}: {caps:?}");
    }
    assert!(
        !caps.iter().any(|c| c == "DES3" || c == "SHA-1"),
        "{caps:?}"
    );

    // PKCSReq (19) with a challenge; pyscep takes AES-256 and SHA-512 from GetCACaps.
    let secret = challenge(&server, "SN-PY-1");
    let d1 = DeviceFiles::new(&server, "d1", "SN-PY-1", Some(&secret));
    success(&py.enrol(&url, &d1, d1.self_signer(), &d1.cert), &server);
    verify_to_root(&server, &d1.cert);
    assert_eq!(subject_serial(&d1.cert), "SN-PY-1");
    let lines = answered(&server, "PKCSReq");
    assert!(
        lines.iter().any(|l| l.contains("digest=\"SHA-512\"")
            && l.contains("cipher=\"AES-256-CBC\"")
            && l.contains("status=\"SUCCESS\"")),
        "{lines:?}"
    );

    // GetCert (21): its own certificate, signed with it.
    let serial = serial_of(&d1.cert);
    let got = server.work("got.pem");
    let outcome = py.operation(
        &url,
        &[
            "getcert",
            d1.cert.to_str().unwrap(),
            d1.key.to_str().unwrap(),
            &serial,
            got.to_str().unwrap(),
        ],
    );
    success(&outcome, &server);
    assert_eq!(der(&got), der(&d1.cert));
    assert!(answered(&server, "GetCert")
        .iter()
        .any(|l| l.contains("status=\"SUCCESS\"")));

    // GetCRL (22): the operational CA's CRL, which openssl verifies with that CA.
    let crl = server.work("operational.crl");
    let outcome = py.operation(
        &url,
        &[
            "getcrl",
            d1.cert.to_str().unwrap(),
            d1.key.to_str().unwrap(),
            &serial,
            crl.to_str().unwrap(),
        ],
    );
    success(&outcome, &server);
    let checked = run(Command::new("openssl").args([
        "crl",
        "-inform",
        "DER",
        "-in",
        crl.to_str().unwrap(),
        "-CAfile",
        server.pki("operational-ca.pem").to_str().unwrap(),
        "-noout",
        "-issuer",
    ]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && text.contains("verify OK") && text.contains("Operational CA"),
        "{text}"
    );
    assert!(answered(&server, "GetCRL")
        .iter()
        .any(|l| l.contains("status=\"SUCCESS\"")));

    // GetCert of another device's certificate: badRequest.
    let secret2 = challenge(&server, "SN-PY-2");
    let d2 = DeviceFiles::new(&server, "d2", "SN-PY-2", Some(&secret2));
    success(&py.enrol(&url, &d2, d2.self_signer(), &d2.cert), &server);
    verify_to_root(&server, &d2.cert);
    let outcome = py.operation(
        &url,
        &[
            "getcert",
            d1.cert.to_str().unwrap(),
            d1.key.to_str().unwrap(),
            &serial_of(&d2.cert),
            server.work("other.pem").to_str().unwrap(),
        ],
    );
    failure(&outcome, "2");
    assert!(refused_by(&server, "badRequest", "scep-get-cert"));

    // A reused challenge (another key of SN-PY-1): badRequest.
    let reused = DeviceFiles::new(&server, "reused", "SN-PY-1", Some(&secret));
    failure(
        &py.enrol(&url, &reused, reused.self_signer(), &reused.cert),
        "2",
    );
    assert!(refused_by(&server, "badRequest", "scep-challenge"));

    // A challenge for one device, a request for another: the RA's subject rule.
    let other = challenge(&server, "SN-PY-3");
    let wrong = DeviceFiles::new(&server, "wrong", "SN-PY-4", Some(&other));
    failure(
        &py.enrol(&url, &wrong, wrong.self_signer(), &wrong.cert),
        "2",
    );
    assert!(server
        .log()
        .lines()
        .any(|l| l.contains("SCEP request refused")
            && l.contains("SN-PY-4")
            && l.contains("rule=\"subject\"")));

    // A revoked signer: a request for a new key signed with d2's revoked certificate.
    let revoked = fleetca(
        &server,
        &[
            "cert",
            "revoke",
            &serial_of(&d2.cert),
            "--reason",
            "keyCompromise",
            "--yes",
        ],
    );
    assert!(revoked.status.success());
    let again = DeviceFiles::new(&server, "again", "SN-PY-2", None);
    failure(
        &py.enrol(&url, &again, d2.issued_signer(), &again.cert),
        "2",
    );
    assert!(server
        .log()
        .lines()
        .any(|l| l.contains("SCEP request refused") && l.contains("revoked")));

    // badTime: a signingTime three days off (pyscep sends none; fleetca's own client
    // does, signed with the certificate pyscep obtained).
    let (cert_der, key_der) = (der(&d1.cert), pkcs8(&d1.key));
    let signer = fleetca_scep::client::RequestSigner {
        certificate_der: &cert_der,
        key_pkcs8: &key_der,
    };
    let message = fleetca_scep::client::pki_message_with(
        fleetca_scep::MessageType::GetCert,
        "late-1",
        &fleetca_scep::client::nonce(),
        &fleetca_scep::client::issuer_and_serial(&cert_der).unwrap(),
        signer,
        &der(&server.pki("scep-ra.pem")),
        fleetca_scep::client::MessageOptions {
            signing_time: Some(time::OffsetDateTime::now_utc() - time::Duration::days(3)),
            ..Default::default()
        },
    )
    .unwrap();
    let file = server.work("late.der");
    std::fs::write(&file, &message).unwrap();
    let answer = curl(
        &server,
        &["--data-binary", &format!("@{}", file.display())],
        &format!("{url}?operation=PKIOperation"),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let reply = fleetca_scep::client::read_reply(&answer.body, signer).unwrap();
    assert_eq!(
        (reply.status.as_str(), reply.fail_info.as_deref()),
        ("2", Some("3")),
        "{reply:?}"
    );
    assert!(refused_by(&server, "badTime", "scep-signing-time"));
    // The same request timed now is answered.
    let message = fleetca_scep::client::pki_message_with(
        fleetca_scep::MessageType::GetCert,
        "late-2",
        &fleetca_scep::client::nonce(),
        &fleetca_scep::client::issuer_and_serial(&cert_der).unwrap(),
        signer,
        &der(&server.pki("scep-ra.pem")),
        fleetca_scep::client::MessageOptions {
            signing_time: Some(time::OffsetDateTime::now_utc()),
            ..Default::default()
        },
    )
    .unwrap();
    std::fs::write(&file, &message).unwrap();
    let answer = curl(
        &server,
        &["--data-binary", &format!("@{}", file.display())],
        &format!("{url}?operation=PKIOperation"),
    );
    let reply = fleetca_scep::client::read_reply(&answer.body, signer).unwrap();
    assert_eq!(reply.status, "0", "{reply:?}");
}

#[test]
fn pyscep_waits_for_a_manual_approval_and_polls_with_cert_poll() {
    let python = require_pyscep!();
    let server = scep_server("rsa2048", false, |config| {
        *config = config.replacen(
            "[profiles.operational]\n",
            "[profiles.operational]\nmanual_approval = \"true\"\n",
            1,
        );
    });
    let url = scep_url(&server, None);
    let py = Pyscep::new(python);
    let secret = challenge(&server, "SN-PY-10");
    let d = DeviceFiles::new(&server, "pending", "SN-PY-10", Some(&secret));
    let outcome = py.enrol(&url, &d, d.self_signer(), &d.cert);
    assert_eq!(outcome.status, "PENDING", "{outcome:?}\n{}", server.log());
    let transaction = outcome.transaction_id.unwrap();
    let poll = |py: &Pyscep| {
        py.operation(
            &url,
            &[
                "poll",
                d.csr.to_str().unwrap(),
                d.self_signed.to_str().unwrap(),
                d.key.to_str().unwrap(),
                &transaction,
                d.cert.to_str().unwrap(),
            ],
        )
    };
    // CertPoll (20) before the approval: still PENDING.
    assert_eq!(poll(&py).status, "PENDING");
    let queue = fleetca(&server, &["request", "list"]);
    let queue = String::from_utf8_lossy(&queue.stdout).into_owned();
    let id = queue
        .lines()
        .find(|l| l.contains("SN-PY-10"))
        .unwrap_or_else(|| panic!("the request waits for approval: {queue}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(fleetca(&server, &["request", "approve", &id])
        .status
        .success());
    // CertPoll after it: the certificate.
    let outcome = poll(&py);
    success(&outcome, &server);
    verify_to_root(&server, &d.cert);
    assert_eq!(subject_serial(&d.cert), "SN-PY-10");
    let polls = answered(&server, "CertPoll");
    assert!(
        polls.iter().any(|l| l.contains("status=\"PENDING\""))
            && polls.iter().any(|l| l.contains("status=\"SUCCESS\"")),
        "{polls:?}"
    );
    let all = fleetca(&server, &["request", "list", "--all"]);
    let all = String::from_utf8_lossy(&all.stdout).into_owned();
    assert!(
        all.lines().filter(|l| l.contains("SN-PY-10")).count() == 1 && all.contains("issued"),
        "one request, issued: {all}"
    );
}

/// A birth certificate (RSA: the reply is encrypted to the signer) for `serial`.
fn rsa_birth(server: &Server, serial: &str) -> (PathBuf, PathBuf) {
    let dir = client_dir(server, &format!("birth-{serial}"));
    let (key, request, cert) = (
        dir.join("birth.key"),
        dir.join("birth.csr"),
        dir.join("birth.pem"),
    );
    rsa_key(&key);
    csr(
        &key,
        &format!("/CN={serial}/serialNumber={serial}"),
        None,
        &request,
    );
    let out = fleetca(
        server,
        &[
            "device",
            "birth",
            "--serial",
            serial,
            "--csr",
            request.to_str().unwrap(),
            "--out",
            cert.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[test]
fn pyscep_enrolls_with_a_birth_certificate_only_where_the_profile_allows_it() {
    let python = require_pyscep!();
    let server = scep_server("rsa2048", false, |config| {
        config.push_str("birth_certificate_signer = [\"operational\"]\n");
    });
    let py = Pyscep::new(python);
    // The operational profile (/scep) is in birth_certificate_signer: a PKCSReq signed with
    // the device's birth certificate, without a challenge, is a first enrollment.
    let (birth, birth_key) = rsa_birth(&server, "SN-PY-20");
    let d = DeviceFiles::new(&server, "born", "SN-PY-20", None);
    let outcome = py.enrol(&scep_url(&server, None), &d, (&birth, &birth_key), &d.cert);
    success(&outcome, &server);
    verify_to_root(&server, &d.cert);
    assert_eq!(subject_serial(&d.cert), "SN-PY-20");
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("device=SN-PY-20")
            && l.contains("operation=\"simpleenroll\"")
            && l.contains("client=\"birth\"")),
        "enrolled on the strength of its birth certificate: {log}"
    );
    // The legacy profile (/scep/legacy) is not: the same kind of request needs a challenge.
    let (birth, birth_key) = rsa_birth(&server, "SN-PY-21");
    let d = DeviceFiles::new(&server, "unborn", "SN-PY-21", None);
    let outcome = py.enrol(
        &scep_url(&server, Some("legacy")),
        &d,
        (&birth, &birth_key),
        &d.cert,
    );
    failure(&outcome, "2");
    assert!(refused_by(&server, "badRequest", "scep-challenge"));
}

#[test]
fn pyscep_3des_and_sha1_are_accepted_only_on_the_legacy_profile() {
    let python = require_pyscep!();
    let server = scep_server("rsa2048", true, |_| {});
    let legacy_caps = Pyscep::new(python.clone()).caps(&scep_url(&server, Some("legacy")));
    assert!(
        legacy_caps.iter().any(|c| c == "DES3") && legacy_caps.iter().any(|c| c == "SHA-1"),
        "{legacy_caps:?}"
    );
    let py = Pyscep::legacy(python);
    // The default profile does not allow them: badAlg.
    let secret = challenge(&server, "SN-PY-30");
    let d = DeviceFiles::new(&server, "old", "SN-PY-30", Some(&secret));
    failure(
        &py.enrol(&scep_url(&server, None), &d, d.self_signer(), &d.cert),
        "0",
    );
    assert!(refused_by(&server, "badAlg", "scep-algorithms"));
    // The legacy profile does; the reply comes back in 3DES, which pyscep opens.
    let secret = challenge(&server, "SN-PY-31");
    let d = DeviceFiles::new(&server, "older", "SN-PY-31", Some(&secret));
    let outcome = py.enrol(
        &scep_url(&server, Some("legacy")),
        &d,
        d.self_signer(),
        &d.cert,
    );
    success(&outcome, &server);
    verify_to_root(&server, &d.cert);
    let lines = answered(&server, "PKCSReq");
    assert!(
        lines.iter().any(|l| l.contains("digest=\"SHA-1\"")
            && l.contains("cipher=\"DES-EDE3-CBC\"")
            && l.contains("label=\"legacy\"")),
        "{lines:?}"
    );
}
