//! Bad SCEP input against a real `fleetca serve`: garbage, a truncated message, a message
//! for another server's RA certificate, a tampered one, an oversized body, unknown
//! operations. Each gets a SCEP FAILURE with its failInfo (read with `openssl cms`) or a
//! 4xx, never a 5xx, and the server keeps serving. A replayed request is answered with the
//! certificate it was issued, never a new one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::certmonger::Certmonger;
use common::*;

fn fleetca(server: &Server, args: &[&str]) -> Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(server.data()))
}

fn scep_server() -> Server {
    Server::start_with(|config| config.push_str("\n[scep]\nhttp_listen = \"127.0.0.1:0\"\n"))
}

fn url(server: &Server, query: &str) -> String {
    format!("http://{}/scep?{query}", server.scep_addr)
}

/// POSTs `body` as a PKIOperation; returns the status and the body.
fn post(server: &Server, body: &[u8]) -> (u16, Vec<u8>) {
    let file = server.work("message.der");
    std::fs::write(&file, body).unwrap();
    let answer = curl(
        server,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/x-pki-message",
            "--data-binary",
            &format!("@{}", file.display()),
        ],
        &url(server, "operation=PKIOperation"),
    );
    (answer.status, answer.body)
}

/// The pkiStatus and failInfo of a CertRep, as `openssl cms -cmsout -print` reads them.
fn cert_rep(server: &Server, reply: &[u8]) -> (String, Option<String>) {
    let file = server.work("reply.der");
    std::fs::write(&file, reply).unwrap();
    let out = openssl(&[
        "cms",
        "-cmsout",
        "-print",
        "-inform",
        "DER",
        "-in",
        file.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = |oid: &str| {
        let mut lines = text.lines().skip_while(|l| !l.contains(oid));
        lines.next()?;
        lines
            .find_map(|l| l.trim().strip_prefix("PRINTABLESTRING:"))
            .map(str::to_string)
    };
    let status = value("(2.16.840.1.113733.1.9.3)").unwrap_or_else(|| panic!("{text}"));
    (status, value("(2.16.840.1.113733.1.9.4)"))
}

fn challenge(server: &Server, serial: &str) -> String {
    let out = fleetca(server, &["scep", "challenge", "create", "--serial", serial]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn request(
    cm: &Certmonger,
    ca: &str,
    name: &str,
    serial: &str,
    secret: &str,
) -> std::path::PathBuf {
    let (key, cert) = (
        cm.file(&format!("{name}.key")),
        cm.file(&format!("{name}.pem")),
    );
    cm.getcert(&[
        "request",
        "-c",
        ca,
        "-k",
        key.to_str().unwrap(),
        "-f",
        cert.to_str().unwrap(),
        "-N",
        &format!("CN={serial},serialNumber={serial}"),
        "-L",
        secret,
    ]);
    cert
}

fn certificates_of(server: &Server, serial: &str) -> usize {
    let out = fleetca(server, &["cert", "list", "--device", serial]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(serial))
        .count()
}

fn still_serving(server: &Server) {
    let caps = curl(server, &[], &url(server, "operation=GetCACaps"));
    assert_eq!(caps.status, 200);
    assert!(caps.text().contains("POSTPKIOperation"));
}

#[test]
fn bad_scep_input_gets_a_failure_or_a_4xx_and_the_server_keeps_serving() {
    require_tools!("certmonger", "openssl", "curl");
    let a = scep_server();
    let b = scep_server();
    let cm = Certmonger::start();
    cm.getcert(&[
        "add-scep-ca",
        "-c",
        "a",
        "-u",
        &format!("http://{}/scep", a.scep_addr),
    ]);
    // A real pkiMessage for server a, made by certmonger.
    let secret = challenge(&a, "SN-BAD-1");
    let cert = request(&cm, "a", "dev", "SN-BAD-1", &secret);
    cm.wait_for(&cert, &["MONITORING"]);
    let message = cm.message(&cert, "scep_req");
    assert_eq!(certificates_of(&a, "SN-BAD-1"), 1);

    // Replayed: answered SUCCESS with the certificate it was issued, none issued anew.
    let (status, reply) = post(&a, &message);
    assert_eq!(status, 200);
    assert_eq!(cert_rep(&a, &reply), ("0".to_string(), None));
    assert_eq!(
        certificates_of(&a, "SN-BAD-1"),
        1,
        "a replay issues nothing"
    );
    // The same by GET (base64 in the message parameter).
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&message);
    let encoded: String = url_encode(&b64);
    let got = curl(
        &a,
        &[],
        &url(&a, &format!("operation=PKIOperation&message={encoded}")),
    );
    assert_eq!(got.status, 200);
    assert_eq!(cert_rep(&a, &got.body).0, "0");

    // Another server: the envelope is not for its RA certificate.
    let (status, reply) = post(&b, &message);
    assert_eq!(status, 200);
    assert_eq!(
        cert_rep(&b, &reply),
        ("2".to_string(), Some("1".to_string())),
        "FAILURE badMessageCheck"
    );
    assert!(b
        .log()
        .contains("not addressed to this server's current SCEP RA certificate"));

    // Tampered content (one byte of the envelope flipped): the messageDigest fails.
    let mut tampered = message.clone();
    let middle = 600.min(tampered.len() / 3);
    tampered[middle] ^= 0x01;
    let (status, reply) = post(&a, &tampered);
    assert_eq!(status, 200);
    assert_eq!(
        cert_rep(&a, &reply),
        ("2".to_string(), Some("1".to_string()))
    );

    // Truncated, garbage, empty: no transaction to answer: 400 with the reason.
    for (what, body) in [
        ("truncated", message[..message.len() / 2].to_vec()),
        ("garbage", b"this is not a PKCS#7 message".to_vec()),
        ("empty", Vec::new()),
    ] {
        let (status, body) = post(&a, &body);
        assert_eq!(status, 400, "{what}: {}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("not a SCEP pkiMessage"));
    }
    // Oversized body: 413 before it is read whole.
    let (status, _) = post(&a, &vec![0x30; 200 * 1024]);
    assert_eq!(status, 413);
    // Unknown or missing operation, bad base64, wrong method: 4xx.
    for (query, method, expected) in [
        ("operation=GetNextCACert", "GET", 400),
        ("", "GET", 400),
        ("operation=PKIOperation&message=%%%not-base64", "GET", 400),
        ("operation=PKIOperation", "GET", 400),
        ("operation=GetCACaps", "POST", 405),
    ] {
        let answer = curl(&a, &["-X", method], &url(&a, query));
        assert_eq!(
            answer.status,
            expected,
            "{query} {method}: {}",
            answer.text()
        );
    }
    let unknown_label = curl(
        &a,
        &[],
        &format!(
            "http://{}/scep/nosuchlabel?operation=GetCACaps",
            a.scep_addr
        ),
    );
    assert_eq!(unknown_label.status, 404);
    // EST is not served on the plain-HTTP listener.
    let est = curl(
        &a,
        &[],
        &format!("http://{}/.well-known/est/cacerts", a.scep_addr),
    );
    assert_eq!(est.status, 404);

    for server in [&a, &b] {
        assert!(
            !server.log().contains("SCEP request failed"),
            "{}",
            server.log()
        );
        still_serving(server);
    }
    // The requests are counted by operation and status, never a 5xx.
    let metrics = run_ok(Command::new("curl").args([
        "-sS",
        "--max-time",
        "10",
        &format!("http://{}/metrics", a.metrics_addr),
    ]));
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let count = |endpoint: &str, status: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("fleetca_est_requests_total{")
                    && l.contains(&format!("endpoint=\"{endpoint}\""))
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert!(count("scep-pkioperation", "200") >= 4, "{metrics}");
    assert!(count("scep-pkioperation", "400") >= 3, "{metrics}");
    assert_eq!(count("scep-pkioperation", "413"), 1, "{metrics}");
    assert!(count("scep-getcacaps", "200") >= 1, "{metrics}");
    assert!(
        !metrics
            .lines()
            .any(|l| l.contains("endpoint=\"scep-") && l.contains("status=\"5")),
        "{metrics}"
    );
    verify(&a, &cert);
}

fn verify(server: &Server, cert: &Path) {
    let out = openssl(&[
        "verify",
        "-CAfile",
        server.root().to_str().unwrap(),
        "-untrusted",
        server.pki("operational-ca.pem").to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    assert!(out.status.success());
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `fleetca bench enroll --scep`: the SCEP phase of the benchmark enrolls its devices by
/// PKCSReq and renews every one of them by RenewalReq, in the same run as EST.
#[test]
fn bench_enroll_with_scep_renews_every_scep_device() {
    let server = scep_server();
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["bench", "enroll", "--url"])
            .arg(format!("https://{}/.well-known/est", server.addr))
            .arg("--ca")
            .arg(server.root())
            .arg("--data-dir")
            .arg(server.data())
            .args(["--devices", "4", "--concurrency", "2", "--warm-up"])
            .args(["--scep", &format!("http://{}/scep", server.scep_addr)])
            .args(["--scep-devices", "3"]),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("requests: 4 ok, 0 failed"), "{report}");
    assert!(
        report.contains("scep RenewalReq: 3 ok, 0 failed"),
        "{report}"
    );
    assert!(report.contains("(same run):"), "{report}");
    let list = fleetca(&server, &["cert", "list", "--limit", "1000"]);
    let list = String::from_utf8_lossy(&list.stdout);
    let scep_devices: Vec<&str> = list
        .lines()
        .filter(|l| l.contains("scep-bench-") && l.contains("operational"))
        .collect();
    assert_eq!(
        scep_devices.len(),
        6,
        "PKCSReq and RenewalReq per device: {list}"
    );
    assert!(
        server.log().contains("client=\"operational\""),
        "{}",
        server.log()
    );
}
