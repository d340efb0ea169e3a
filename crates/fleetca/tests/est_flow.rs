//! The EST happy paths with third-party clients: curl over TLS 1.2 and TLS 1.3 for
//! cacerts → simpleenroll → simplereenroll, decoded by `openssl pkcs7`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::process::Command;

use common::*;

fn assert_certs_only_headers(a: &Answer) {
    assert_eq!(a.status, 200, "{}", a.text());
    // Canonical capitalisation on the wire: some EST clients match names case-sensitively.
    assert!(
        a.headers
            .contains("\r\nContent-Type: application/pkcs7-mime; smime-type=certs-only\r\n"),
        "{}",
        a.headers
    );
    assert!(
        a.headers
            .contains("\r\nContent-Transfer-Encoding: base64\r\n"),
        "{}",
        a.headers
    );
    let len = format!("\r\nContent-Length: {}\r\n", a.body.len());
    assert!(a.headers.contains(&len), "{}", a.headers);
    let text = a.text();
    assert!(
        text.lines().all(|l| l.len() <= 64),
        "base64 must be wrapped at 64 columns"
    );
}

fn flow(tls: &str) {
    let server = Server::start();
    let tls_args: Vec<&str> = match tls {
        "1.2" => vec!["--tlsv1.2", "--tls-max", "1.2"],
        _ => vec!["--tlsv1.3"],
    };

    // cacerts: the operational CA and the root.
    let a = curl(&server, &tls_args, &server.est("cacerts"));
    assert_certs_only_headers(&a);
    let chain = server.work("chain.pem");
    certs_only_to_pem(&a.body, &chain);
    let text = std::fs::read_to_string(&chain).unwrap();
    assert!(
        text.contains("Test Fleet Root CA") && text.contains("Test Fleet Operational CA"),
        "{text}"
    );

    // simpleenroll with a birth certificate.
    let (birth_key, birth_cert) = birth(&server, "SN-0001");
    let op_key = server.work("op.key");
    let csr = server.work("op.csr.b64");
    new_key(&op_key);
    new_csr_b64(&op_key, "/CN=SN-0001/serialNumber=SN-0001", &csr);
    let a = post_csr(
        &server,
        "simpleenroll",
        Some((&birth_cert, &birth_key)),
        &csr,
        &tls_args,
    );
    assert_certs_only_headers(&a);
    let op_cert = server.work("op.pem");
    certs_only_to_pem(&a.body, &op_cert);
    let verify = openssl(&[
        "verify",
        "-CAfile",
        server.root().to_str().unwrap(),
        "-untrusted",
        server.pki("operational-ca.pem").to_str().unwrap(),
        "-purpose",
        "sslclient",
        op_cert.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&verify.stdout).contains("OK"));
    let shown = String::from_utf8(
        openssl(&[
            "x509",
            "-in",
            op_cert.to_str().unwrap(),
            "-noout",
            "-subject",
            "-ext",
            "basicConstraints,extendedKeyUsage",
        ])
        .stdout,
    )
    .unwrap();
    assert!(shown.contains("serialNumber = SN-0001"), "{shown}");
    assert!(
        shown.contains("CA:FALSE") && shown.contains("TLS Web Client Authentication"),
        "{shown}"
    );

    // simplereenroll with the operational certificate and a new key.
    let new_key_path = server.work("op2.key");
    let csr2 = server.work("op2.csr.b64");
    new_key(&new_key_path);
    new_csr_b64(&new_key_path, "/CN=SN-0001/serialNumber=SN-0001", &csr2);
    // This client also sends the (optional) Content-Transfer-Encoding header.
    let mut extra = tls_args.clone();
    extra.extend(["-H", "Content-Transfer-Encoding: base64"]);
    let a = post_csr(
        &server,
        "simplereenroll",
        Some((&op_cert, &op_key)),
        &csr2,
        &extra,
    );
    assert_certs_only_headers(&a);
    let renewed = server.work("op2.pem");
    certs_only_to_pem(&a.body, &renewed);

    // The inventory links the renewal to the certificate it renews.
    let shown = run_ok(
        Command::new(fleetca_bin())
            .args(["cert", "show", &serial_of(&op_cert), "--data-dir"])
            .arg(server.data()),
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    let renewed_serial = serial_of(&renewed);
    assert!(
        shown.contains(&format!("renewed by:   {renewed_serial}")),
        "{shown}"
    );
}

#[test]
fn cacerts_enroll_reenroll_over_tls13_with_curl() {
    require_tools!("openssl", "curl");
    flow("1.3");
}

#[test]
fn cacerts_enroll_reenroll_over_tls12_with_curl() {
    require_tools!("openssl", "curl");
    flow("1.2");
}

/// Every connection is a full handshake: the server sends no TLS 1.3 session ticket (none
/// arrives while a request is answered), and openssl's `-reconnect` (five reconnections
/// offering the first session) is never resumed.
#[test]
fn sessions_are_never_resumed() {
    require_tools!("openssl");
    let server = Server::start();
    let request = format!(
        "GET /.well-known/est/cacerts HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let s_client = |args: &[&str], input: &str| {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &server.addr])
            .args(args)
            .arg("-CAfile")
            .arg(server.root())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let answered = s_client(&["-tls1_3", "-ign_eof"], &request);
    assert!(answered.contains("HTTP/1.1 200 OK"), "{answered}");
    assert!(!answered.contains("New Session Ticket"), "{answered}");
    for version in ["-tls1_3", "-tls1_2"] {
        let log = s_client(&[version, "-reconnect"], "");
        assert!(log.matches("New, TLSv1").count() >= 6, "{version}: {log}");
        assert!(!log.contains("Reused, TLSv1"), "{version}: {log}");
    }
}

#[test]
fn keep_alive_and_connection_close_clients_are_both_served() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    // Two requests in one curl invocation reuse the connection.
    let out = run_ok(
        Command::new("curl")
            .args(["-sS", "-v", "--cacert"])
            .arg(server.root())
            .args(["-o", "/dev/null", "-o", "/dev/null"])
            .arg(server.est("cacerts"))
            .arg(server.est("csrattrs")),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("Re-using existing connection") || log.contains("Reusing existing"),
        "{log}"
    );
    assert_eq!(log.matches("< HTTP/1.1 200 OK").count(), 2, "{log}");
    let a = curl(
        &server,
        &["-H", "Connection: close"],
        &server.est("cacerts"),
    );
    assert_eq!(a.status, 200);
}

#[test]
fn csrattrs_lists_key_type_and_serial_number() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let a = curl(&server, &[], &server.est("csrattrs"));
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.headers
            .contains("\r\nContent-Type: application/csrattrs\r\n"),
        "{}",
        a.headers
    );
    let b64 = server.work("attrs.b64");
    let der = server.work("attrs.der");
    std::fs::write(&b64, &a.body).unwrap();
    openssl(&[
        "base64",
        "-d",
        "-in",
        b64.to_str().unwrap(),
        "-out",
        der.to_str().unwrap(),
    ]);
    let parsed = String::from_utf8(
        openssl(&["asn1parse", "-inform", "DER", "-in", der.to_str().unwrap()]).stdout,
    )
    .unwrap();
    for needle in [
        "id-ecPublicKey",
        "prime256v1",
        "ecdsa-with-SHA256",
        "serialNumber",
    ] {
        assert!(parsed.contains(needle), "{needle} missing in {parsed}");
    }
    assert!(
        !parsed.contains("challengePassword"),
        "tls-unique must never be asked for: {parsed}"
    );
}

#[test]
fn an_enrollment_account_enrolls_within_its_serial_pattern() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let out = run_ok(
        Command::new(fleetca_bin())
            .args([
                "account",
                "add",
                "bootstrap",
                "--serial-pattern",
                "^SN-[0-9]+$",
                "--data-dir",
            ])
            .arg(server.data()),
    );
    let password = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(password.len() >= 20, "generated password too short");
    let key = server.work("acct.key");
    new_key(&key);
    let user = format!("bootstrap:{password}");
    for (serial, status) in [("SN-42", 200), ("XX-42", 403)] {
        let csr = server.work(&format!("{serial}.b64"));
        new_csr_b64(&key, &format!("/serialNumber={serial}"), &csr);
        let c = format!("@{}", csr.display());
        let a = curl(
            &server,
            &[
                "-u",
                &user,
                "-H",
                "Content-Type: application/pkcs10",
                "--data-binary",
                &c,
            ],
            &server.est("simpleenroll"),
        );
        assert_eq!(a.status, status, "{serial}: {}", a.text());
        if status == 403 {
            assert!(a.text().contains("account-scope"), "{}", a.text());
        }
    }
}

#[test]
fn an_issued_certificate_survives_a_crash_right_after_the_response() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let (bk, bc) = birth(&server, "SN-7");
    let (_, pem) = enroll(
        &server,
        "simpleenroll",
        (&bc, &bk),
        "/serialNumber=SN-7",
        "k",
    );
    // SIGKILL: no shutdown path runs. The certificate was committed before it was sent.
    server.kill();
    let shown = run_ok(
        Command::new(fleetca_bin())
            .args(["cert", "show", &serial_of(&pem), "--data-dir"])
            .arg(server.data()),
    );
    assert!(String::from_utf8_lossy(&shown.stdout).contains("device:       SN-7"));
}

#[test]
fn a_label_serves_its_profile_and_accounts_stay_in_their_label() {
    require_tools!("openssl", "curl");
    let server = Server::start_with(|config| {
        *config = config
            .replace("# sensors = \"operational\"", "sensors = \"short\"")
            .replace("[profiles.birth]", "[profiles.short]\nissuer = \"operational\"\nvalidity = \"7d\"\nkey_usage = [\"digitalSignature\"]\nextended_key_usage = [\"clientAuth\"]\nallowed_keys = [\"p256\"]\nsubject = [{ attribute = \"serialNumber\", value = \"{serial}\" }, { attribute = \"O\", value = \"Sensors\" }]\n\n[profiles.birth]");
    });
    assert_eq!(
        curl(&server, &[], &server.est("sensors/cacerts")).status,
        200
    );
    let out = run_ok(
        Command::new(fleetca_bin())
            .args([
                "account",
                "add",
                "sensors-boot",
                "--label",
                "sensors",
                "--any-serial",
                "--data-dir",
            ])
            .arg(server.data()),
    );
    let user = format!(
        "sensors-boot:{}",
        String::from_utf8(out.stdout).unwrap().trim()
    );
    let key = server.work("s.key");
    new_key(&key);
    let csr = server.work("s.b64");
    new_csr_b64(&key, "/serialNumber=SENS-1", &csr);
    let c = format!("@{}", csr.display());
    let args = [
        "-u",
        user.as_str(),
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        c.as_str(),
    ];
    let a = curl(&server, &args, &server.est("sensors/simpleenroll"));
    assert_eq!(a.status, 200, "{}", a.text());
    let pem = server.work("s.pem");
    certs_only_to_pem(&a.body, &pem);
    let text = String::from_utf8(
        openssl(&[
            "x509",
            "-in",
            pem.to_str().unwrap(),
            "-noout",
            "-subject",
            "-dates",
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains("subject=serialNumber = SENS-1, O = Sensors"),
        "{text}"
    );
    // The account is bound to its label: the unlabelled endpoint refuses it.
    let a = curl(&server, &args, &server.est("simpleenroll"));
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(
        a.text().contains("may enroll only under label 'sensors'"),
        "{}",
        a.text()
    );
}

/// `server.key_exchange_groups` is what the listener offers: a server limited to P-256
/// refuses a client that offers only X25519 and agrees on P-256 with one that offers it.
/// By default all groups are on (OpenSSL 3.0 has no ML-KEM, so it never gets the hybrid).
#[test]
fn the_operator_chooses_the_key_exchange_groups() {
    require_tools!("openssl");
    let handshake = |server: &Server, groups: &str| {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &server.addr,
                "-tls1_3",
                "-groups",
                groups,
            ])
            .arg("-CAfile")
            .arg(server.root())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let p256_only = Server::start_with(|c| {
        *c = c.replace(
            "max_body_bytes = 65536\n",
            "max_body_bytes = 65536\nkey_exchange_groups = [\"secp256r1\"]\n",
        )
    });
    let refused = handshake(&p256_only, "X25519");
    assert!(refused.contains("handshake failure"), "{refused}");
    let agreed = handshake(&p256_only, "X25519:P-256");
    assert!(
        agreed.contains("Server Temp Key: ECDH, prime256v1"),
        "{agreed}"
    );
    // By default every group is on, and the client's order decides.
    let default = Server::start();
    let agreed = handshake(&default, "X25519:P-256");
    assert!(agreed.contains("Server Temp Key: X25519"), "{agreed}");
    let agreed = handshake(&default, "P-256:X25519");
    assert!(
        agreed.contains("Server Temp Key: ECDH, prime256v1"),
        "{agreed}"
    );
}
