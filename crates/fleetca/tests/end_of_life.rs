//! End of life with third-party tools: `openssl crl`, `openssl verify -crl_check` and
//! `openssl ocsp` against the server's CRLs and OCSP responder; decommissioning and
//! suspension as EST sees them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn fleetca(server: &Server, args: &[&str]) -> std::process::Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(server.data()))
}

/// A device with a birth certificate and an operational certificate.
struct Device {
    birth: (PathBuf, PathBuf),
    op: (PathBuf, PathBuf),
}

fn device(server: &Server, serial: &str) -> Device {
    let (bk, bc) = birth(server, serial);
    let subj = format!("/CN={serial}/serialNumber={serial}");
    let op = enroll(
        server,
        "simpleenroll",
        (&bc, &bk),
        &subj,
        &format!("{serial}-op"),
    );
    Device {
        birth: (bk, bc),
        op,
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `openssl ocsp` for one certificate of the operational CA; stdout and stderr together.
fn ocsp(server: &Server, cert: &Path) -> String {
    let out = run(Command::new("openssl")
        .args([
            "ocsp",
            "-issuer",
            p(&server.pki("operational-ca.pem")),
            "-CAfile",
            p(&server.root()),
            "-cert",
            p(cert),
        ])
        .arg("-url")
        .arg(format!("http://{}/ocsp", server.status_addr)));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fetches the operational CA's CRL until `until` holds for its `openssl crl -text`.
fn crl_until(server: &Server, until: impl Fn(&str) -> bool) -> (PathBuf, String) {
    let der = server.work("op.crl");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = run(Command::new("curl")
            .args(["-sS", "-o", p(&der), "-w", "%{http_code}"])
            .arg(format!("http://{}/crl/operational.crl", server.status_addr)));
        assert_eq!(String::from_utf8_lossy(&a.stdout), "200");
        let text = String::from_utf8(
            openssl(&["crl", "-inform", "DER", "-in", p(&der), "-noout", "-text"]).stdout,
        )
        .unwrap();
        if until(&text) {
            return (der, text);
        }
        assert!(
            Instant::now() < deadline,
            "CRL never satisfied the condition:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_crl_lists_revocations_and_openssl_enforces_it() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let revoked = device(&server, "SN-1");
    let good = device(&server, "SN-2");
    let serial = serial_of(&revoked.op.1);
    let out = fleetca(
        &server,
        &[
            "cert",
            "revoke",
            &serial,
            "--reason",
            "keyCompromise",
            "--yes",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let upper = serial.to_uppercase();
    let (der, text) = crl_until(&server, |t| t.contains(&upper));
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(
        text.contains("X509v3 CRL Number") && text.contains("X509v3 Authority Key Identifier"),
        "{text}"
    );
    assert!(text.contains("Next Update"), "{text}");
    assert!(
        !text.contains(&serial_of(&good.op.1).to_uppercase()),
        "{text}"
    );

    // The CRL's signature verifies with the operational CA.
    let v = run(Command::new("openssl").args([
        "crl",
        "-inform",
        "DER",
        "-in",
        p(&der),
        "-noout",
        "-verify",
        "-CAfile",
        p(&server.pki("operational-ca.pem")),
    ]));
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("verify OK")
            || String::from_utf8_lossy(&v.stdout).contains("verify OK"),
        "{v:?}"
    );

    // openssl verify -crl_check: the revoked certificate fails, the good one passes.
    let pem = server.work("op.crl.pem");
    openssl(&["crl", "-inform", "DER", "-in", p(&der), "-out", p(&pem)]);
    let chain = server.work("chain.pem");
    std::fs::write(
        &chain,
        [
            std::fs::read(server.root()).unwrap(),
            std::fs::read(server.pki("operational-ca.pem")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let check = |cert: &Path| {
        let out = run(Command::new("openssl").args([
            "verify",
            "-crl_check",
            "-CAfile",
            p(&chain),
            "-CRLfile",
            p(&pem),
            p(cert),
        ]));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let bad = check(&revoked.op.1);
    assert!(bad.contains("certificate revoked"), "{bad}");
    let ok = check(&good.op.1);
    assert!(ok.contains(": OK"), "{ok}");

    // Caching headers and conditional requests.
    let a = run(Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null"])
        .arg(format!("http://{}/crl/operational.crl", server.status_addr)));
    let headers = String::from_utf8_lossy(&a.stdout).to_string();
    assert!(
        headers.contains("Content-Type: application/pkix-crl"),
        "{headers}"
    );
    assert!(
        headers.contains("Cache-Control: public, max-age="),
        "{headers}"
    );
    let etag = headers
        .lines()
        .find_map(|l| l.strip_prefix("Etag: "))
        .unwrap()
        .trim()
        .to_string();
    let a = run(Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("If-None-Match: {etag}"))
        .arg(format!("http://{}/crl/operational.crl", server.status_addr)));
    assert_eq!(String::from_utf8_lossy(&a.stdout), "304");
    let a = run(Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/crl/nope.crl", server.status_addr)));
    assert_eq!(String::from_utf8_lossy(&a.stdout), "404");
}

#[test]
fn ocsp_answers_good_then_revoked_unknown_and_malformed() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let d = device(&server, "SN-O");
    let first = ocsp(&server, &d.op.1);
    assert!(
        first.contains("Response verify OK") && first.contains(": good"),
        "{first}"
    );

    let serial = serial_of(&d.op.1);
    let out = fleetca(
        &server,
        &[
            "cert",
            "revoke",
            &serial,
            "--reason",
            "cessationOfOperation",
        ],
    );
    assert!(out.status.success());
    let after = ocsp(&server, &d.op.1);
    assert!(
        after.contains("Response verify OK") && after.contains(": revoked"),
        "{after}"
    );
    assert!(after.contains("Reason: cessationOfOperation"), "{after}");

    // A serial fleetca never issued.
    let url = format!("http://{}/ocsp", server.status_addr);
    let out = run(Command::new("openssl").args([
        "ocsp",
        "-issuer",
        p(&server.pki("operational-ca.pem")),
        "-CAfile",
        p(&server.root()),
        "-serial",
        "0x0badc0de",
        "-url",
        &url,
    ]));
    let unknown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        unknown.contains("Response verify OK") && unknown.contains(": unknown"),
        "{unknown}"
    );

    // Garbage gets malformedRequest, and the responder keeps answering.
    let resp = server.work("garbage.resp");
    run(Command::new("curl").args([
        "-sS",
        "-H",
        "Content-Type: application/ocsp-request",
        "--data-binary",
        "garbage",
        "-o",
        p(&resp),
        &url,
    ]));
    let out =
        run(Command::new("openssl").args(["ocsp", "-respin", p(&resp), "-resp_text", "-noverify"]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.to_lowercase().contains("malformedrequest (1)"),
        "{text}"
    );

    // GET form (RFC 6960 Appendix A.1), without a nonce: cacheable.
    let req = server.work("req.der");
    openssl(&[
        "ocsp",
        "-issuer",
        p(&server.pki("operational-ca.pem")),
        "-cert",
        p(&d.op.1),
        "-no_nonce",
        "-reqout",
        p(&req),
    ]);
    let b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        std::fs::read(&req).unwrap(),
    );
    let encoded = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let get_resp = server.work("get.resp");
    let out = run(Command::new("curl")
        .args(["-sS", "-D", "-", "-o", p(&get_resp)])
        .arg(format!("{url}/{encoded}")));
    let headers = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        headers.contains("Content-Type: application/ocsp-response") && headers.contains("max-age="),
        "{headers}"
    );
    let out = run(Command::new("openssl").args([
        "ocsp",
        "-respin",
        p(&get_resp),
        "-issuer",
        p(&server.pki("operational-ca.pem")),
        "-CAfile",
        p(&server.root()),
        "-cert",
        p(&d.op.1),
    ]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Response verify OK") && text.contains(": revoked"),
        "{text}"
    );
}

#[test]
fn a_decommissioned_device_never_gets_another_certificate() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let d = device(&server, "SN-D");
    let out = fleetca(&server, &["device", "decommission", "SN-D", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2,
        "birth and operational revoked"
    );

    let key = server.work("x.key");
    new_key(&key);
    let csr = server.work("x.b64");
    new_csr_b64(&key, "/CN=SN-D/serialNumber=SN-D", &csr);
    for (op, client) in [("simpleenroll", &d.birth), ("simplereenroll", &d.op)] {
        let a = post_csr(&server, op, Some((&client.1, &client.0)), &csr, &[]);
        assert_eq!(a.status, 403, "{op}: {}", a.text());
        assert!(
            a.text().contains("decommissioned") || a.text().contains("revoked"),
            "{}",
            a.text()
        );
    }
    // An enrollment account cannot bring it back either, not even the widest one.
    let out = fleetca(
        &server,
        &[
            "account",
            "add",
            "boot",
            "--any-serial",
            "--allow-known-devices",
        ],
    );
    let user = format!("boot:{}", String::from_utf8_lossy(&out.stdout).trim());
    let a = post_csr(&server, "simpleenroll", None, &csr, &["-u", &user]);
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(
        a.text().contains("device SN-D is decommissioned"),
        "{}",
        a.text()
    );
    // Nor the administrator, with a new birth certificate.
    let pem_csr = server.work("x.csr");
    openssl(&[
        "req",
        "-new",
        "-key",
        p(&key),
        "-subj",
        "/CN=SN-D/serialNumber=SN-D",
        "-out",
        p(&pem_csr),
    ]);
    let out = fleetca(
        &server,
        &["device", "birth", "--serial", "SN-D", "--csr", p(&pem_csr)],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("decommissioned"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And decommissioning is final.
    let out = fleetca(&server, &["device", "resume", "SN-D"]);
    assert!(!out.status.success());
}

#[test]
fn a_suspended_device_is_blocked_until_resumed() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let d = device(&server, "SN-H");
    let out = fleetca(&server, &["device", "suspend", "SN-H"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let key = server.work("r.key");
    new_key(&key);
    let csr = server.work("r.b64");
    new_csr_b64(&key, "/CN=SN-H/serialNumber=SN-H", &csr);
    let a = post_csr(
        &server,
        "simplereenroll",
        Some((&d.op.1, &d.op.0)),
        &csr,
        &[],
    );
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("suspended"), "{}", a.text());
    let held = ocsp(&server, &d.op.1);
    assert!(
        held.contains(": revoked") && held.contains("certificateHold"),
        "{held}"
    );

    let out = fleetca(&server, &["device", "resume", "SN-H"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = post_csr(
        &server,
        "simplereenroll",
        Some((&d.op.1, &d.op.0)),
        &csr,
        &[],
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let good = ocsp(&server, &d.op.1);
    assert!(good.contains(": good"), "{good}");
    let _ = &d.birth;
}

#[test]
fn revocation_commands_refuse_bad_input_clearly() {
    let server = Server::start();
    for (args, needle) in [
        (
            vec!["cert", "revoke", "zz", "--reason", "keyCompromise"],
            "is not a certificate serial",
        ),
        (
            vec!["cert", "revoke", "0102", "--reason", "keyCompromise"],
            "certificate 0000000000000000000000000000000000000102 not found",
        ),
        (
            vec!["cert", "revoke", "0102", "--reason", "lost"],
            "unknown revocation reason 'lost'",
        ),
        (
            vec!["device", "suspend", "SN-NONE"],
            "device SN-NONE not found",
        ),
    ] {
        let out = fleetca(&server, &args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
