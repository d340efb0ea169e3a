//! Configured profile rules over real EST: a CEL rule and `max_active_certificates` deny
//! with 403 and name the rule; a request that satisfies them is issued.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::*;

#[test]
fn profile_rules_deny_with_403_naming_the_rule() {
    let server = Server::start_with(|config| {
        *config = config
            .replace("max_active_certificates = 3", "max_active_certificates = 1")
            // The limit, not the operator override, is what this test exercises.
            .replace(
                "birth_reenrollment = \"needs-operator\"",
                "birth_reenrollment = \"within-limits\"",
            )
            .replace(
                "# Birth certificates (IDevID)",
                "[[profiles.operational.rules]]\nname = \"p384-only\"\nexpression = 'request.key_algorithm == \"p384\" && client.role == \"birth\"'\nmessage = \"this fleet uses P-384 keys\"\n\n# Birth certificates (IDevID)",
            );
    });
    let (birth_key, birth_cert) = birth(&server, "SN-0001");
    let client = Some((birth_cert.as_path(), birth_key.as_path()));

    // P-256: the CEL rule denies, and the body names it and gives its message.
    let p256 = server.work("p256.key");
    let csr = server.work("p256.csr.b64");
    new_key(&p256);
    new_csr_b64(&p256, "/CN=SN-0001/serialNumber=SN-0001", &csr);
    let a = post_csr(&server, "simpleenroll", client, &csr, &[]);
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(
        a.text().contains("p384-only") && a.text().contains("this fleet uses P-384 keys"),
        "{}",
        a.text()
    );

    // P-384 passes the rule and is issued.
    let p384 = server.work("p384.key");
    let csr = server.work("p384.csr.b64");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        p384.to_str().unwrap(),
    ]);
    new_csr_b64(&p384, "/CN=SN-0001/serialNumber=SN-0001", &csr);
    let a = post_csr(&server, "simpleenroll", client, &csr, &[]);
    assert_eq!(a.status, 200, "{}", a.text());

    // A second first enrollment would give the device two live certificates.
    let a = post_csr(&server, "simpleenroll", client, &csr, &[]);
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("max-active-certificates"), "{}", a.text());
}

/// Simultaneous first enrollments of one device against `max_active_certificates = 1`:
/// each passes the RA alone, but the recording commit lets exactly one through.
#[test]
fn a_device_limit_holds_for_simultaneous_requests() {
    require_tools!("openssl", "curl");
    let server = Server::start_with(|config| {
        *config = config.replace("max_active_certificates = 3", "max_active_certificates = 1");
    });
    let (birth_key, birth_cert) = birth(&server, "SN-0002");
    let csrs: Vec<_> = (0..8)
        .map(|i| {
            let key = server.work(&format!("k{i}.key"));
            let csr = server.work(&format!("k{i}.csr.b64"));
            new_key(&key);
            new_csr_b64(&key, "/CN=SN-0002/serialNumber=SN-0002", &csr);
            csr
        })
        .collect();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = csrs
            .iter()
            .map(|csr| {
                let (server, cert, key) = (&server, &birth_cert, &birth_key);
                s.spawn(move || {
                    post_csr(server, "simpleenroll", Some((cert, key)), csr, &[]).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 403),
        "{statuses:?}"
    );
}

/// Issue 15 item 1, server side: with the configuration `fleetca init` writes, a device
/// that asks for certificate after certificate (a renewal loop) is stopped by the default
/// per-device limits after a few, with a 403 naming the rule, instead of filling the
/// inventory. A healthy device holds at most two valid certificates at a time.
#[test]
fn the_default_profile_stops_a_device_that_renews_in_a_loop() {
    let server = Server::start();
    let (birth_key, birth_cert) = birth(&server, "SN-LOOP-1");
    let subj = "/CN=SN-LOOP-1/serialNumber=SN-LOOP-1";
    let (mut key, mut cert) = enroll(
        &server,
        "simpleenroll",
        (&birth_cert, &birth_key),
        subj,
        "loop-0",
    );
    let mut issued = 1;
    let mut refusal = None;
    for n in 1..=12 {
        let next_key = server.work(&format!("loop-{n}.key"));
        let csr = server.work(&format!("loop-{n}.csr.b64"));
        new_key(&next_key);
        new_csr_b64(&next_key, subj, &csr);
        let a = post_csr(&server, "simplereenroll", Some((&cert, &key)), &csr, &[]);
        if a.status != 200 {
            refusal = Some(a);
            break;
        }
        issued += 1;
        let next_cert = server.work(&format!("loop-{n}.pem"));
        certs_only_to_pem(&a.body, &next_cert);
        (key, cert) = (next_key, next_cert);
    }
    let refusal = refusal.expect("twelve renewals in a row were all issued");
    assert_eq!(refusal.status, 403, "{}", refusal.text());
    assert!(
        refusal.text().contains("max-active-certificates") || refusal.text().contains("rate-limit"),
        "{}",
        refusal.text()
    );
    assert!(issued <= 10, "{issued} issued: {}", refusal.text());
}

/// Issue 15 item 6: a CEL rule naming an undeclared variable (`devce.shipped.status`)
/// passed `--check-config`, then denied every device of its profile after the restart.
/// Now `--check-config` (and so `serve` and a SIGHUP reload) refuses it, naming the rule
/// and the column.
#[test]
fn a_rule_with_an_unknown_variable_is_refused_at_load() {
    let dir = Server::prepare(|config| {
        *config = config.replace(
            "# Birth certificates (IDevID)",
            "[[profiles.operational.rules]]\nname = \"shipped-only\"\nexpression = 'devce.shipped.status == \"shipped\"'\nmessage = \"not shipped\"\n\n# Birth certificates (IDevID)",
        );
    });
    let out = run(std::process::Command::new(fleetca_bin())
        .args(["serve", "--check-config", "--data-dir"])
        .arg(dir.path().join("data")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for needle in [
        "rule 'shipped-only'",
        "unknown variable 'devce' at column 1",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from: {stderr}");
    }
}
