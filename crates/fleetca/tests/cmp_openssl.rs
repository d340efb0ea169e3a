//! CMP (RFC 9483) with the real `openssl cmp` client against a real `fleetca serve`: each
//! operation a device or production line uses, and each refusal with the PKIFailureInfo
//! openssl prints. Every issued certificate verifies to the root with `openssl verify`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::cmp::*;
use common::*;
use std::process::Command;

fn p(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// ir signed with the birth certificate, kur signed with the operational certificate, then
/// the device revokes its certificate (rr) and can no longer renew with it.
#[test]
fn ir_with_birth_certificate_kur_and_rr() {
    require_tools!("openssl");
    let server = cmp_server(|_| {});
    let (birth_key, birth_cert) = birth(&server, "SN-1");
    let op_key = server.work("op.key");
    let op_cert = server.work("op.pem");
    new_key(&op_key);
    let manufacturing = server.pki("manufacturing-ca.pem");
    let ir = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-cert",
            p(&birth_cert),
            "-key",
            p(&birth_key),
            "-extracerts",
            p(&manufacturing),
            "-newkey",
            p(&op_key),
            "-subject",
            "/CN=SN-1/serialNumber=SN-1",
            "-certout",
            p(&op_cert),
        ],
    );
    assert!(ir.ok, "{}", ir.output);
    assert!(ir.output.contains("received PKICONF"), "{}", ir.output);
    assert_verifies(&server, &op_cert);

    let new_key_path = server.work("op2.key");
    let new_cert = server.work("op2.pem");
    new_key(&new_key_path);
    let kur = openssl_cmp(
        &server,
        &[
            "-cmd",
            "kur",
            "-cert",
            p(&op_cert),
            "-key",
            p(&op_key),
            "-newkey",
            p(&new_key_path),
            "-certout",
            p(&new_cert),
        ],
    );
    assert!(kur.ok, "{}", kur.output);
    assert_verifies(&server, &new_cert);
    assert_ne!(serial_of(&op_cert), serial_of(&new_cert));

    let rr = openssl_cmp(
        &server,
        &[
            "-cmd",
            "rr",
            "-cert",
            p(&new_cert),
            "-key",
            p(&new_key_path),
            "-oldcert",
            p(&new_cert),
            "-revreason",
            "5",
        ],
    );
    assert!(rr.ok, "{}", rr.output);
    assert!(rr.output.contains("revocation accepted"), "{}", rr.output);

    // A revoked certificate renews nothing.
    let third = server.work("op3.key");
    new_key(&third);
    let refused = openssl_cmp(
        &server,
        &[
            "-cmd",
            "kur",
            "-cert",
            p(&new_cert),
            "-key",
            p(&new_key_path),
            "-newkey",
            p(&third),
            "-certout",
            p(&server.work("op3.pem")),
        ],
    );
    assert_refused(&refused, "certRevoked");
    assert!(
        refused.output.contains("client-certificate-status"),
        "{}",
        refused.output
    );
    // The revocation is in the trail with its actor.
    let audit = run_ok(
        std::process::Command::new(fleetca_bin())
            .args(["audit", "list", "--data-dir"])
            .arg(server.data()),
    );
    assert!(String::from_utf8_lossy(&audit.stdout).contains("cmp-revoke"));
}

/// ir MAC-protected with a one-time secret (PasswordBasedMac): the certificate and the root
/// in caPubs; the same secret a second time is refused.
#[test]
fn ir_with_shared_secret_once() {
    require_tools!("openssl");
    let server = cmp_server(|_| {});
    let (reference, secret) = cmp_secret(&server, "SN-2");
    let key = server.work("m.key");
    let cert = server.work("m.pem");
    let capubs = server.work("capubs.pem");
    new_key(&key);
    let pass = format!("pass:{secret}");
    let ir = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-ref",
            &reference,
            "-secret",
            &pass,
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-2/serialNumber=SN-2",
            "-certout",
            p(&cert),
            "-cacertsout",
            p(&capubs),
        ],
    );
    assert!(ir.ok, "{}", ir.output);
    assert_verifies(&server, &cert);
    let root = openssl(&["x509", "-in", p(&capubs), "-noout", "-subject"]);
    assert!(String::from_utf8_lossy(&root.stdout).contains("Root CA"));

    let again = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-ref",
            &reference,
            "-secret",
            &pass,
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-2/serialNumber=SN-2",
            "-certout",
            p(&server.work("m2.pem")),
        ],
    );
    assert_refused(&again, "notAuthorized");
    assert!(again.output.contains("already used"), "{}", again.output);

    // A wrong secret: the MAC does not verify.
    let (reference, _) = cmp_secret(&server, "SN-3");
    let wrong = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-ref",
            &reference,
            "-secret",
            "pass:not-the-secret",
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-3/serialNumber=SN-3",
            "-certout",
            p(&server.work("m3.pem")),
        ],
    );
    assert_refused(&wrong, "badMessageCheck");

    // A secret is for its own device: another subject is refused by the RA.
    let (reference, secret) = cmp_secret(&server, "SN-4");
    let other = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-ref",
            &reference,
            "-secret",
            &format!("pass:{secret}"),
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-5/serialNumber=SN-5",
            "-certout",
            p(&server.work("m5.pem")),
        ],
    );
    assert_refused(&other, "notAuthorized");
}

/// p10cr (a PKCS#10 inside CMP) signed by the operational certificate renews it; genm
/// returns the CA certificates.
#[test]
fn p10cr_and_genm_ca_certs() {
    require_tools!("openssl");
    let server = cmp_server(|_| {});
    let (birth_key, birth_cert) = birth(&server, "SN-6");
    let (op_key, op_cert) = enroll(
        &server,
        "simpleenroll",
        (&birth_cert, &birth_key),
        "/CN=SN-6/serialNumber=SN-6",
        "op",
    );
    let key = server.work("p10.key");
    let csr = server.work("p10.csr");
    let cert = server.work("p10.pem");
    new_key(&key);
    openssl(&[
        "req",
        "-new",
        "-key",
        p(&key),
        "-subj",
        "/CN=SN-6/serialNumber=SN-6",
        "-out",
        p(&csr),
    ]);
    let p10cr = openssl_cmp(
        &server,
        &[
            "-cmd",
            "p10cr",
            "-cert",
            p(&op_cert),
            "-key",
            p(&op_key),
            "-csr",
            p(&csr),
            "-certout",
            p(&cert),
        ],
    );
    assert!(p10cr.ok, "{}", p10cr.output);
    assert_verifies(&server, &cert);

    let genm = openssl_cmp(
        &server,
        &[
            "-cmd",
            "genm",
            "-cert",
            p(&cert),
            "-key",
            p(&key),
            "-infotype",
            "caCerts",
        ],
    );
    assert!(genm.ok, "{}", genm.output);
    assert!(genm.output.contains("id-it-caCerts"), "{}", genm.output);
}

/// Each refusal, with the failure info openssl prints: a birth certificate cannot renew
/// (kur), an unknown signer is not trusted, a message for another CA is refused, and a
/// birth certificate enrolls its own device only.
#[test]
fn refusals_name_their_failure() {
    require_tools!("openssl");
    let server = cmp_server(|_| {});
    let (birth_key, birth_cert) = birth(&server, "SN-7");
    let key = server.work("n.key");
    new_key(&key);

    let kur = openssl_cmp(
        &server,
        &[
            "-cmd",
            "kur",
            "-cert",
            p(&birth_cert),
            "-key",
            p(&birth_key),
            "-newkey",
            p(&key),
            "-certout",
            p(&server.work("n1.pem")),
        ],
    );
    assert_refused(&kur, "notAuthorized");

    // A certificate from a CA fleetca does not know.
    let stranger_ca_key = server.work("stranger-ca.key");
    let stranger_ca = server.work("stranger-ca.pem");
    let stranger_csr = server.work("stranger.csr");
    let stranger = server.work("stranger.pem");
    new_key(&stranger_ca_key);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        p(&stranger_ca_key),
        "-subj",
        "/CN=Stranger CA",
        "-days",
        "1",
        "-out",
        p(&stranger_ca),
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        p(&key),
        "-subj",
        "/CN=SN-7/serialNumber=SN-7",
        "-out",
        p(&stranger_csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        p(&stranger_csr),
        "-CA",
        p(&stranger_ca),
        "-CAkey",
        p(&stranger_ca_key),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        p(&stranger),
    ]);
    let unknown = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-cert",
            p(&stranger),
            "-key",
            p(&key),
            "-recipient",
            "/O=Test Fleet/CN=Test Fleet Operational CA",
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-7/serialNumber=SN-7",
            "-certout",
            p(&server.work("n2.pem")),
        ],
    );
    assert_refused(&unknown, "signerNotTrusted");

    let elsewhere = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-cert",
            p(&birth_cert),
            "-key",
            p(&birth_key),
            "-recipient",
            "/CN=Some Other CA",
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-7/serialNumber=SN-7",
            "-certout",
            p(&server.work("n3.pem")),
        ],
    );
    assert_refused(&elsewhere, "wrongAuthority");

    let other_device = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-cert",
            p(&birth_cert),
            "-key",
            p(&birth_key),
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-8/serialNumber=SN-8",
            "-certout",
            p(&server.work("n4.pem")),
        ],
    );
    assert_refused(&other_device, "notAuthorized");
    // The server still serves.
    let genm = openssl_cmp(
        &server,
        &[
            "-cmd",
            "genm",
            "-cert",
            p(&birth_cert),
            "-key",
            p(&birth_key),
            "-infotype",
            "caCerts",
        ],
    );
    assert!(genm.ok, "{}", genm.output);
}

/// A replayed ir finds its transactionID in use; a replayed certConf carries a stale
/// recipNonce. openssl saves the requests it sent (-reqout) and sends them again (-reqin).
/// The same signed kur sent eight times at once, then again to a restarted server (which
/// remembers no transactionID in memory, as another node would not): the transaction is
/// recorded with the certificate in one commit, so exactly one certificate is issued and
/// every other copy is refused as a transactionID in use.
#[test]
fn replays_of_a_kur_issue_one_certificate_concurrently_and_after_a_restart() {
    require_tools!("openssl", "curl");
    let server = cmp_server(|_| {});
    let (birth_key, birth_cert) = birth(&server, "SN-R");
    let op_key = server.work("op.key");
    let op_cert = server.work("op.pem");
    new_key(&op_key);
    let ir = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-cert",
            p(&birth_cert),
            "-key",
            p(&birth_key),
            "-newkey",
            p(&op_key),
            "-subject",
            "/CN=SN-R/serialNumber=SN-R",
            "-certout",
            p(&op_cert),
        ],
    );
    assert!(ir.ok, "{}", ir.output);

    let der_path = server.work("op.der");
    openssl(&[
        "x509",
        "-in",
        p(&op_cert),
        "-outform",
        "DER",
        "-out",
        p(&der_path),
    ]);
    let der = std::fs::read(&der_path).unwrap();
    let current =
        fleetca_pki::SoftwareKey::from_pkcs8_pem(&std::fs::read_to_string(&op_key).unwrap())
            .unwrap();
    let next = fleetca_pki::KeyAlgorithm::P256.generate().unwrap();
    let kur = fleetca_cmp::client::key_update_request(
        &der,
        &current,
        &next,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let sends: Vec<_> = (0..8)
            .map(|i| {
                let (server, kur) = (&server, &kur);
                scope.spawn(move || post_cmp(server, kur, &format!("kur-{i}.der")))
            })
            .collect();
        sends.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let mut issued = Vec::new();
    for answer in &answers {
        match fleetca_cmp::client::issued_certificate(&answer.body) {
            Ok(certificate) => issued.push(certificate),
            Err(e) => assert!(e.contains("transactionID is already in use"), "{e}"),
        }
    }
    assert_eq!(
        issued.len(),
        1,
        "one certificate for eight copies of one kur"
    );
    let server = server.kill_and_restart();
    let replay = post_cmp(&server, &kur, "kur-replay.der");
    let refused = fleetca_cmp::client::issued_certificate(&replay.body).unwrap_err();
    assert!(
        refused.contains("transactionID is already in use"),
        "{refused}"
    );
    let list = run_ok(
        Command::new(fleetca_bin())
            .args(["cert", "list", "--device", "SN-R", "--data-dir"])
            .arg(server.data()),
    );
    let list = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        list.lines().filter(|l| l.contains("operational")).count(),
        2,
        "the ir's certificate and one renewal: {list}"
    );
}

#[test]
fn replays_are_refused() {
    require_tools!("openssl");
    let server = cmp_server(|_| {});
    let (birth_key, birth_cert) = birth(&server, "SN-9");
    let key = server.work("r.key");
    new_key(&key);
    let ir_der = server.work("ir.der");
    let conf_der = server.work("certconf.der");
    let reqout = format!("{},{}", p(&ir_der), p(&conf_der));
    let first = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-cert",
            p(&birth_cert),
            "-key",
            p(&birth_key),
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-9/serialNumber=SN-9",
            "-certout",
            p(&server.work("r.pem")),
            "-reqout",
            &reqout,
        ],
    );
    assert!(first.ok, "{}", first.output);
    let replay = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-cert",
            p(&birth_cert),
            "-key",
            p(&birth_key),
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-9/serialNumber=SN-9",
            "-certout",
            p(&server.work("r2.pem")),
            "-reqin",
            p(&ir_der),
        ],
    );
    assert_refused(&replay, "transactionIdInUse");
    let replay_conf = openssl_cmp(
        &server,
        &[
            "-cmd",
            "ir",
            "-cert",
            p(&birth_cert),
            "-key",
            p(&birth_key),
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-9/serialNumber=SN-9",
            "-certout",
            p(&server.work("r3.pem")),
            "-reqin",
            p(&conf_der),
        ],
    );
    assert_refused(&replay_conf, "badRecipientNonce");
}

/// A request waiting for manual approval: ip says "waiting", openssl polls (pollReq,
/// pollRep with checkAfter) until an operator approves, then gets the certificate.
#[test]
fn polling_through_a_manual_approval() {
    require_tools!("openssl");
    let server = cmp_server(|config| {
        *config = config.replacen(
            "[profiles.operational]\n",
            "[profiles.operational]\nmanual_approval = \"client.role == 'birth'\"\napproval_retry_after = \"1s\"\n",
            1,
        );
    });
    let (birth_key, birth_cert) = birth(&server, "SN-10");
    let key = server.work("w.key");
    let cert = server.work("w.pem");
    new_key(&key);
    let root = server.root();
    let client = std::process::Command::new("timeout")
        .arg("60")
        .args(["openssl", "cmp", "-server"])
        .arg(format!("https://{}", server.addr))
        .args(["-path", ".well-known/cmp", "-tls_used", "-tls_trusted"])
        .arg(&root)
        .arg("-trusted")
        .arg(&root)
        .args(["-cmd", "ir", "-cert", p(&birth_cert), "-key", p(&birth_key)])
        .args(["-extracerts", p(&server.pki("manufacturing-ca.pem"))])
        .args([
            "-newkey",
            p(&key),
            "-subject",
            "/CN=SN-10/serialNumber=SN-10",
        ])
        .args(["-certout", p(&cert)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The request appears in the approval queue; the operator approves it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let id = loop {
        assert!(std::time::Instant::now() < deadline, "no pending request");
        let list = run_ok(
            std::process::Command::new(fleetca_bin())
                .args(["request", "list", "--data-dir"])
                .arg(server.data()),
        );
        let text = String::from_utf8_lossy(&list.stdout).into_owned();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("SN-10") && l.contains("pending"))
        {
            break line.split_whitespace().next().unwrap().to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    run_ok(
        std::process::Command::new(fleetca_bin())
            .args(["request", "approve", &id, "--data-dir"])
            .arg(server.data()),
    );
    let out = client.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("received 'waiting' PKIStatus"),
        "{printed}"
    );
    assert!(
        printed.contains("received ip/cp/kup after polling"),
        "{printed}"
    );
    assert_verifies(&server, &cert);
}

/// A factory station signs an ir under the `birth` label: a birth certificate for a serial
/// in its range, from the manufacturing CA. The station's credential obtains nothing else.
#[test]
fn station_obtains_birth_certificates_on_the_birth_label() {
    require_tools!("openssl");
    let server = cmp_server(|_| {});
    let stations = server.add_station("line-1");
    let (station_cert, station_key) = (stations.join("line-1.pem"), stations.join("line-1.key"));
    let key = server.work("b.key");
    let cert = server.work("b.pem");
    new_key(&key);
    let root = server.root();
    let run_at = |path: &str, out: &std::path::Path| {
        let out = run(std::process::Command::new("timeout")
            .arg("60")
            .args(["openssl", "cmp", "-server"])
            .arg(format!("https://{}", server.addr))
            .args(["-path", path, "-tls_used", "-tls_trusted"])
            .arg(&root)
            .arg("-trusted")
            .arg(&root)
            .args([
                "-cmd",
                "ir",
                "-cert",
                p(&station_cert),
                "-key",
                p(&station_key),
            ])
            .args([
                "-newkey",
                p(&key),
                "-subject",
                "/CN=SN-11/serialNumber=SN-11",
            ])
            .args(["-certout", p(out)]));
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, printed) = run_at(".well-known/cmp/p/birth", &cert);
    assert!(ok, "{printed}");
    let issuer = openssl(&["x509", "-in", p(&cert), "-noout", "-issuer"]);
    assert!(
        String::from_utf8_lossy(&issuer.stdout).contains("Manufacturing CA"),
        "{}",
        String::from_utf8_lossy(&issuer.stdout)
    );
    let verified = run(std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(server.pki("manufacturing-ca.pem"))
        .arg(&cert));
    assert!(verified.status.success());
    // Under the operational default label the station is refused.
    let (ok, printed) = run_at(".well-known/cmp", &server.work("o.pem"));
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("PKIFailureInfo: notAuthorized"),
        "{printed}"
    );
}
