//! The bad-input catalogue: each case gets a specific status and message, the server keeps
//! serving, and the inventory does not change.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

struct Fixture {
    server: Server,
    birth_key: String,
    birth_cert: String,
    op_key: String,
    op_cert: String,
}

fn fixture() -> Fixture {
    let server = Server::start_with(|config| {
        *config = config
            .replace("header_timeout = \"10s\"", "header_timeout = \"2s\"")
            .replace("body_timeout = \"30s\"", "body_timeout = \"2s\"");
    });
    let (bk, bc) = birth(&server, "SN-B");
    let (op_key, op_cert) = enroll(
        &server,
        "simpleenroll",
        (&bc, &bk),
        "/CN=SN-B/serialNumber=SN-B",
        "op",
    );
    assert!(server.alive());
    Fixture {
        birth_key: bk.display().to_string(),
        birth_cert: bc.display().to_string(),
        op_key: op_key.display().to_string(),
        op_cert: op_cert.display().to_string(),
        server,
    }
}

fn inventory_size(server: &Server) -> usize {
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["cert", "list", "--data-dir"])
            .arg(server.data()),
    );
    String::from_utf8_lossy(&out.stdout).lines().count() - 1
}

fn assert_still_serving(server: &Server) {
    assert!(server.alive(), "server died; log:\n{}", server.log());
    let a = curl(server, &[], &server.est("cacerts"));
    assert_eq!(a.status, 200, "server stopped serving: {}", a.text());
}

fn post(
    f: &Fixture,
    cert: Option<(&str, &str)>,
    content_type: &str,
    body_file: &std::path::Path,
    op: &str,
) -> Answer {
    let data = format!("@{}", body_file.display());
    let header = format!("Content-Type: {content_type}");
    let mut args = vec!["-H", header.as_str(), "--data-binary", data.as_str()];
    if let Some((c, k)) = cert {
        args.extend(["--cert", c, "--key", k]);
    }
    curl(&f.server, &args, &f.server.est(op))
}

fn expect(a: &Answer, status: u16, needle: &str) {
    assert_eq!(a.status, status, "body: {}", a.text());
    assert!(
        a.text().contains(needle),
        "expected '{needle}' in: {}",
        a.text()
    );
    assert!(
        a.headers
            .contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{}",
        a.headers
    );
}

#[test]
fn the_bad_input_catalogue() {
    require_tools!("openssl", "curl");
    let f = fixture();
    let before = inventory_size(&f.server);
    let birth = Some((f.birth_cert.as_str(), f.birth_key.as_str()));
    let op = Some((f.op_cert.as_str(), f.op_key.as_str()));
    let file = |name: &str, contents: &[u8]| {
        let p = f.server.work(name);
        std::fs::write(&p, contents).unwrap();
        p
    };
    let key = f.server.work("k.key");
    new_key(&key);
    let good_csr_der = |subj: &str| {
        run_ok(Command::new("openssl").args([
            "req",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            subj,
            "-outform",
            "DER",
        ]))
        .stdout
    };

    // Empty body.
    let a = post(
        &f,
        birth,
        "application/pkcs10",
        &file("empty", b""),
        "simpleenroll",
    );
    expect(&a, 400, "empty");
    assert_still_serving(&f.server);

    // Not base64.
    let a = post(
        &f,
        birth,
        "application/pkcs10",
        &file("nb64", b"this is %% not base64 !!"),
        "simpleenroll",
    );
    expect(&a, 400, "not valid base64");
    assert_still_serving(&f.server);

    // base64 of garbage.
    let a = post(
        &f,
        birth,
        "application/pkcs10",
        &file(
            "garbage",
            base64_lines(b"garbage garbage garbage").as_bytes(),
        ),
        "simpleenroll",
    );
    expect(&a, 400, "not a PKCS#10");
    assert_still_serving(&f.server);

    // CSR with a broken signature.
    let mut der = good_csr_der("/serialNumber=SN-B");
    let last = der.len() - 1;
    der[last] ^= 0x55;
    let a = post(
        &f,
        birth,
        "application/pkcs10",
        &file("badsig", base64_lines(&der).as_bytes()),
        "simpleenroll",
    );
    expect(&a, 400, "proof of possession");
    assert_still_serving(&f.server);

    // CSR asking for CA:TRUE.
    let der = run_ok(Command::new("openssl").args([
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/serialNumber=SN-B",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-outform",
        "DER",
    ]))
    .stdout;
    let a = post(
        &f,
        birth,
        "application/pkcs10",
        &file("ca", base64_lines(&der).as_bytes()),
        "simpleenroll",
    );
    expect(&a, 403, "no-ca-request");
    assert_still_serving(&f.server);

    // CSR naming another device.
    let a = post(
        &f,
        birth,
        "application/pkcs10",
        &file(
            "foreign",
            base64_lines(&good_csr_der("/CN=SN-OTHER/serialNumber=SN-OTHER")).as_bytes(),
        ),
        "simpleenroll",
    );
    expect(&a, 403, "rule 'subject'");
    assert_still_serving(&f.server);

    // Re-enroll with a different subject.
    let a = post(
        &f,
        op,
        "application/pkcs10",
        &file(
            "resubj",
            base64_lines(&good_csr_der("/CN=SN-C/serialNumber=SN-B")).as_bytes(),
        ),
        "simplereenroll",
    );
    expect(&a, 403, "differs from the current certificate");
    assert_still_serving(&f.server);

    // Re-enroll with a birth certificate.
    let a = post(
        &f,
        birth,
        "application/pkcs10",
        &file(
            "rebirth",
            base64_lines(&good_csr_der("/CN=SN-B/serialNumber=SN-B")).as_bytes(),
        ),
        "simplereenroll",
    );
    expect(&a, 403, "birth certificate authenticates only simpleenroll");
    assert_still_serving(&f.server);

    // Enroll without credentials.
    let csr_file = file(
        "ok",
        base64_lines(&good_csr_der("/serialNumber=SN-B")).as_bytes(),
    );
    let a = post(&f, None, "application/pkcs10", &csr_file, "simpleenroll");
    expect(&a, 401, "authentication required");
    // hyper's title case writes "Www-Authenticate"; names are case-insensitive (RFC 9110).
    assert!(
        a.headers
            .to_ascii_lowercase()
            .contains("\r\nwww-authenticate: basic realm=\"fleetca\"\r\n"),
        "{}",
        a.headers
    );
    assert_still_serving(&f.server);

    // Wrong password (and an unknown account: same answer).
    run_ok(
        Command::new(fleetca_bin())
            .args(["account", "add", "acct", "--any-serial", "--data-dir"])
            .arg(f.server.data()),
    );
    for user in ["acct:wrong-password", "nobody:whatever"] {
        let c = format!("@{}", csr_file.display());
        let a = curl(
            &f.server,
            &[
                "-u",
                user,
                "-H",
                "Content-Type: application/pkcs10",
                "--data-binary",
                &c,
            ],
            &f.server.est("simpleenroll"),
        );
        expect(&a, 401, "invalid username or password");
    }
    assert_still_serving(&f.server);

    // A serial number with '?': a PrintableString character that the DER writer under
    // rcgen asserts on. It made the task serving the request panic (the connection was
    // dropped with no answer); now the RA refuses it with the reason.
    assert!(account_add(&f.server, "quiz", "correct horse battery")
        .status
        .success());
    let question = file(
        "question",
        base64_lines(&good_csr_der("/serialNumber=SN?1")).as_bytes(),
    );
    let a = curl(
        &f.server,
        &[
            "-u",
            "quiz:correct horse battery",
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", question.display()),
        ],
        &f.server.est("simpleenroll"),
    );
    expect(&a, 403, "device serial number contains '?'");
    assert_still_serving(&f.server);

    // Expired client certificate.
    let (ek, ec) = expired_birth_certificate(&f.server, "SN-E");
    let a = post(
        &f,
        Some((&ec, &ek)),
        "application/pkcs10",
        &csr_file,
        "simpleenroll",
    );
    expect(&a, 401, "expired at");
    assert_still_serving(&f.server);

    // Certificate from an unknown CA.
    let foreign_key = f.server.work("foreign.key");
    let foreign_cert = f.server.work("foreign.pem");
    new_key(&foreign_key);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        foreign_key.to_str().unwrap(),
        "-subj",
        "/CN=SN-B/serialNumber=SN-B",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "extendedKeyUsage=clientAuth",
        "-out",
        foreign_cert.to_str().unwrap(),
    ]);
    let a = post(
        &f,
        Some((
            foreign_cert.to_str().unwrap(),
            foreign_key.to_str().unwrap(),
        )),
        "application/pkcs10",
        &csr_file,
        "simpleenroll",
    );
    expect(&a, 401, "not issued by a CA this server trusts");
    assert_still_serving(&f.server);

    // Wrong content type.
    let a = post(&f, birth, "application/json", &csr_file, "simpleenroll");
    expect(&a, 415, "application/pkcs10");
    assert_still_serving(&f.server);

    // 1 MiB body, announced with Content-Length and streamed chunked.
    let big = file("big", &vec![b'A'; 1024 * 1024]);
    let a = post(&f, birth, "application/pkcs10", &big, "simpleenroll");
    expect(&a, 413, "larger than 65536 bytes");
    let data = format!("@{}", big.display());
    let a = curl(
        &f.server,
        &[
            "--cert",
            &f.birth_cert,
            "--key",
            &f.birth_key,
            "-H",
            "Content-Type: application/pkcs10",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &data,
        ],
        &f.server.est("simpleenroll"),
    );
    expect(&a, 413, "larger than 65536 bytes");
    assert_still_serving(&f.server);

    // Unknown label, unknown operation, wrong method.
    expect(
        &curl(&f.server, &[], &f.server.est("nolabel/cacerts")),
        404,
        "unknown EST label 'nolabel'",
    );
    expect(
        &curl(&f.server, &[], &f.server.est("frobnicate")),
        404,
        "unknown EST operation",
    );
    expect(
        &curl(&f.server, &[], &f.server.est("simpleenroll")),
        405,
        "POST",
    );
    assert_still_serving(&f.server);

    // Nothing above was issued.
    assert_eq!(inventory_size(&f.server), before);
}

/// A birth certificate that expired nine days ago, signed by the real manufacturing CA.
fn expired_birth_certificate(server: &Server, serial: &str) -> (String, String) {
    use fleetca_pki::*;
    let cert_pem = std::fs::read_to_string(server.pki("manufacturing-ca.pem")).unwrap();
    let der = pem_to_der(&cert_pem);
    let key = SoftwareKey::from_pkcs8_pem(
        &std::fs::read_to_string(server.pki("manufacturing-ca.key")).unwrap(),
    )
    .unwrap();
    let issuer = Issuer::new("manufacturing", der, Arc::new(key)).unwrap();
    let mut profile = CertificateProfile::default_birth();
    profile.validity = time::Duration::days(1);
    let device_key = KeyAlgorithm::P256.generate().unwrap();
    let prepared = issuer
        .prepare(
            &profile,
            &IssuanceOrder {
                device_serial: serial.into(),
                spki_der: device_key.public_key_der(),
            },
            time::OffsetDateTime::now_utc() - time::Duration::days(10),
        )
        .unwrap();
    let issued = issuer.issue(prepared).unwrap();
    let key_path = server.work("expired.key");
    let cert_path = server.work("expired.pem");
    std::fs::write(&key_path, device_key.to_pkcs8_pem()).unwrap();
    std::fs::write(
        &cert_path,
        format!(
            "-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----\n",
            base64_lines(&issued.der)
        ),
    )
    .unwrap();
    (
        key_path.display().to_string(),
        cert_path.display().to_string(),
    )
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// Spawns `openssl s_client` connected to the server with its stdin held open.
fn s_client(server: &Server) -> std::process::Child {
    Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &server.addr, "-CAfile"])
        .arg(server.root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

#[test]
fn a_client_that_never_sends_a_request_is_timed_out() {
    require_tools!("openssl", "curl");
    let f = fixture();
    // Handshake done, then silence: the header deadline (2 s here) closes the connection.
    let mut idle = s_client(&f.server);
    let stdin = idle.stdin.take();
    let started = Instant::now();
    assert!(
        wait_exit(&mut idle, Duration::from_secs(15)),
        "server did not close an idle connection"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed before the deadline"
    );
    drop(stdin);
    assert_still_serving(&f.server);
}

#[test]
fn a_client_that_stalls_mid_body_gets_408() {
    require_tools!("openssl", "curl");
    let f = fixture();
    // A real account, so that authentication passes and the server waits for the body.
    assert!(account_add(&f.server, "slow", "correct horse battery")
        .status
        .success());
    let mut slow = s_client(&f.server);
    let mut stdin = slow.stdin.take().unwrap();
    let request = format!(
        "POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: {}\r\nContent-Type: application/pkcs10\r\nAuthorization: Basic c2xvdzpjb3JyZWN0IGhvcnNlIGJhdHRlcnk=\r\nContent-Length: 1000\r\n\r\nMIIB",
        f.server.addr
    );
    stdin.write_all(request.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let mut stdout = slow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    assert!(
        wait_exit(&mut slow, Duration::from_secs(15)),
        "server did not give up on a stalled body"
    );
    drop(stdin);
    let answer = reader.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("request body not received within 2 s"),
        "{answer}"
    );
    assert_still_serving(&f.server);
}
