//! Factory stations over real mutual TLS: provisioning, serverkeygen checked by openssl,
//! every refusal the issue lists, batch reruns, the audit trail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn fleetca(server: &Server, args: &[&str]) -> std::process::Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(server.data()))
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Adds a station with a credential in the work directory: (cert, key).
fn station(server: &Server, name: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let out_dir = server.work("stations");
    let mut args = vec![
        "factory",
        "add-station",
        name,
        "--serial-pattern",
        "SN-[0-9]+",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = fleetca(server, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out_dir.join(format!("{name}.pem")),
        out_dir.join(format!("{name}.key")),
    )
}

fn provision(server: &Server, cred: &(PathBuf, PathBuf), args: &[&str]) -> std::process::Output {
    let url = format!("https://{}", server.addr);
    let out = server.work("bundles");
    run(Command::new(fleetca_bin())
        .args([
            "factory",
            "provision",
            "--server",
            &url,
            "--ca",
            &p(&server.root()),
            "--station-cert",
            &p(&cred.0),
            "--station-key",
            &p(&cred.1),
            "--out",
            &p(&out),
        ])
        .args(args))
}

/// A birth-label request with the station credential, through curl.
fn station_post(
    server: &Server,
    cred: &(PathBuf, PathBuf),
    op: &str,
    serial: &str,
    extra: &[&str],
) -> Answer {
    let key = server.work(&format!("{serial}-csr.key"));
    new_key(&key);
    let csr = server.work(&format!("{serial}.b64"));
    new_csr_b64(&key, &format!("/serialNumber={serial}"), &csr);
    post_csr(
        server,
        &format!("birth/{op}"),
        Some((&cred.0, &cred.1)),
        &csr,
        extra,
    )
}

#[test]
fn a_station_provisions_devices_that_then_enroll() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let cred = station(&server, "line-1", &["--serial-range", "SN-1..SN-50"]);
    let key_mode = std::fs::metadata(&cred.1).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);

    let out = provision(
        &server,
        &cred,
        &["--serial", "SN-1", "--model", "sensor-v2", "--batch", "B7"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = server.work("bundles").join("SN-1");
    assert_eq!(
        std::fs::metadata(bundle.join("birth.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let text = String::from_utf8(
        openssl(&[
            "x509",
            "-in",
            &p(&bundle.join("birth.pem")),
            "-noout",
            "-subject",
            "-issuer",
            "-ext",
            "extendedKeyUsage",
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains("serialNumber = SN-1")
            && text.contains("Manufacturing CA")
            && text.contains("Client Authentication"),
        "{text}"
    );
    let chain = std::fs::read_to_string(bundle.join("chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(std::fs::read_to_string(bundle.join("agent.toml"))
        .unwrap()
        .contains("birth_certificate"));
    let shown =
        String::from_utf8(fleetca(&server, &["cert", "list", "--device", "SN-1"]).stdout).unwrap();
    assert!(shown.contains(" birth "), "{shown}");

    // The provisioned device makes first contact with its birth certificate.
    enroll(
        &server,
        "simpleenroll",
        (&bundle.join("birth.pem"), &bundle.join("birth.key")),
        "/CN=SN-1/serialNumber=SN-1",
        "sn1-op",
    );
}

#[test]
fn serverkeygen_output_is_read_by_openssl_and_the_key_matches() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let cred = station(&server, "line-k", &[]);
    let a = station_post(&server, &cred, "serverkeygen", "SN-20", &[]);
    assert_eq!(a.status, 200, "{}", a.text());
    let boundary = a
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: multipart/mixed; boundary="))
        .expect("multipart content type")
        .trim()
        .to_string();
    let body = a.text();
    let delimiter = format!("--{boundary}");
    let mut parts = body.split(&delimiter).filter(|p| p.contains("\r\n\r\n"));
    let part = |p: &str| p.split_once("\r\n\r\n").unwrap().1.trim().to_string();
    let key_part = parts.next().unwrap();
    let cert_part = parts.next().unwrap();
    assert!(
        key_part.contains("Content-Type: application/pkcs8"),
        "{key_part}"
    );
    assert!(
        cert_part.contains("Content-Type: application/pkcs7-mime; smime-type=certs-only"),
        "{cert_part}"
    );

    let (key_b64, key_der, key_pem) = (
        server.work("k.b64"),
        server.work("k.der"),
        server.work("k.pem"),
    );
    std::fs::write(&key_b64, part(key_part)).unwrap();
    openssl(&["base64", "-d", "-in", &p(&key_b64), "-out", &p(&key_der)]);
    openssl(&[
        "pkcs8",
        "-inform",
        "DER",
        "-nocrypt",
        "-in",
        &p(&key_der),
        "-out",
        &p(&key_pem),
    ]);
    let cert = server.work("kg.pem");
    certs_only_to_pem(part(cert_part).as_bytes(), &cert);
    let from_key = openssl(&["pkey", "-in", &p(&key_pem), "-pubout"]).stdout;
    let from_cert = openssl(&["x509", "-in", &p(&cert), "-noout", "-pubkey"]).stdout;
    assert_eq!(
        from_key, from_cert,
        "the generated key belongs to the certificate"
    );
    // Never stored: the key appears nowhere in the data directory's database.
    let db = std::fs::read(server.data().join("fleetca.db")).unwrap();
    let key_bytes = std::fs::read(&key_der).unwrap();
    assert!(
        !db.windows(32)
            .any(|w| key_bytes.windows(32).any(|k| k == w)),
        "private key material in the database"
    );
}

#[test]
fn station_refusals_each_say_why() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let cred = station(
        &server,
        "line-q",
        &["--serial-range", "SN-100..SN-199", "--quota", "2"],
    );

    // Out of range, and outside the pattern.
    let a = station_post(&server, &cred, "simpleenroll", "SN-200", &[]);
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(
        a.text()
            .contains("station 'line-q': serial SN-200 is above the range bound SN-199"),
        "{}",
        a.text()
    );
    let a = station_post(&server, &cred, "simpleenroll", "XX-150", &[]);
    assert!(
        a.status == 403 && a.text().contains("does not match station 'line-q' pattern"),
        "{}",
        a.text()
    );

    // Two good ones, then a duplicate, then the quota.
    assert_eq!(
        station_post(&server, &cred, "simpleenroll", "SN-100", &[]).status,
        200
    );
    let dup = station_post(
        &server,
        &cred,
        "simpleenroll",
        "SN-100",
        &["-H", "fleetca-reissue: true"],
    );
    assert!(
        dup.status == 403
            && dup.text().contains("birth-duplicate")
            && dup.text().contains("may not re-issue"),
        "{}",
        dup.text()
    );
    assert_eq!(
        station_post(&server, &cred, "simpleenroll", "SN-101", &[]).status,
        200
    );
    let over = station_post(&server, &cred, "simpleenroll", "SN-102", &[]);
    assert!(
        over.status == 403 && over.text().contains("quota of 2"),
        "{}",
        over.text()
    );

    // Suspended, then resumed (without a restart).
    let cred2 = station(&server, "line-s", &[]);
    assert!(fleetca(&server, &["factory", "suspend", "line-s"])
        .status
        .success());
    let a = station_post(&server, &cred2, "simpleenroll", "SN-300", &[]);
    assert!(
        a.status == 403 && a.text().contains("station 'line-s' is suspended"),
        "{}",
        a.text()
    );
    assert!(fleetca(&server, &["factory", "resume", "line-s"])
        .status
        .success());
    assert_eq!(
        station_post(&server, &cred2, "simpleenroll", "SN-300", &[]).status,
        200
    );

    // Separation of roles.
    let (bk, bc) = birth(&server, "SN-400");
    let as_station = post_csr(
        &server,
        "birth/simpleenroll",
        Some((&bc, &bk)),
        &server.work("SN-300.b64"),
        &[],
    );
    assert!(
        as_station.status == 403
            && as_station
                .text()
                .contains("only to the administrator or a factory station"),
        "{}",
        as_station.text()
    );
    let key = server.work("x.key");
    new_key(&key);
    let csr = server.work("x.b64");
    new_csr_b64(&key, "/serialNumber=SN-301", &csr);
    let a = post_csr(
        &server,
        "simpleenroll",
        Some((&cred2.0, &cred2.1)),
        &csr,
        &[],
    );
    assert!(
        a.status == 403 && a.text().contains("can do nothing but birth enrollment"),
        "{}",
        a.text()
    );
    let (ok, oc) = enroll(
        &server,
        "simpleenroll",
        (&bc, &bk),
        "/CN=SN-400/serialNumber=SN-400",
        "op400",
    );
    let a = post_csr(&server, "birth/simpleenroll", Some((&oc, &ok)), &csr, &[]);
    assert_eq!(
        a.status,
        403,
        "an operational certificate cannot act as a station: {}",
        a.text()
    );

    // The audit trail has the station's grants and refusals, and the chain is intact.
    let list =
        String::from_utf8(fleetca(&server, &["audit", "list", "--actor", "station:line-q"]).stdout)
            .unwrap();
    assert_eq!(
        list.lines().filter(|l| l.contains("granted")).count(),
        2,
        "{list}"
    );
    assert!(
        list.lines().filter(|l| l.contains("refused")).count() >= 4,
        "{list}"
    );
    let verify = fleetca(&server, &["audit", "verify"]);
    assert!(String::from_utf8_lossy(&verify.stdout).contains("audit chain intact"));
    let stations = String::from_utf8(fleetca(&server, &["factory", "list"]).stdout).unwrap();
    assert!(
        stations
            .lines()
            .any(|l| l.starts_with("line-q") && l.contains(" 2 ") && l.contains(" 0 ")),
        "{stations}"
    );
}

#[test]
fn a_batch_can_be_rerun_and_skips_the_devices_done() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let cred = station(&server, "line-b", &["--serial-range", "SN-1..SN-5"]);
    let list = server.work("serials.txt");
    std::fs::write(&list, "# batch 7\nSN-1\nSN-2\nSN-3\nSN-9\n\n").unwrap();
    let first = provision(&server, &cred, &["--serials", &p(&list)]);
    assert!(!first.status.success(), "SN-9 is out of range");
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(
        err.contains("provisioned 3 device(s)") && err.contains("SN-9: HTTP 403"),
        "{err}"
    );
    std::fs::write(&list, "SN-1\nSN-2\nSN-3\nSN-4\n").unwrap();
    let second = provision(&server, &cred, &["--serials", &p(&list)]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{err}");
    assert!(
        err.contains("provisioned 1 device(s), skipped 3 already done"),
        "{err}"
    );
}

#[test]
fn a_station_credential_can_also_be_a_pkcs12_bundle() {
    require_tools!("openssl");
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let pass = dir.path().join("pass.txt");
    std::fs::write(&pass, "correct horse battery\n").unwrap();
    let out = run(Command::new(fleetca_bin())
        .args([
            "factory",
            "add-station",
            "line-p",
            "--serial-pattern",
            "SN-[0-9]+",
            "--p12-passphrase-file",
            &p(&pass),
            "--out",
            &p(dir.path()),
            "--data-dir",
        ])
        .arg(&data));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p12 = dir.path().join("line-p.p12");
    assert_eq!(
        std::fs::metadata(&p12).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let info = run(Command::new("openssl").args([
        "pkcs12",
        "-in",
        &p(&p12),
        "-passin",
        &format!("file:{}", p(&pass)),
        "-nodes",
        "-info",
    ]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&info.stdout),
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(
        text.contains("CN = line-p")
            && text.contains("Registration CA")
            && text.contains("BEGIN PRIVATE KEY"),
        "{text}"
    );
    assert!(text.contains("AES-256-CBC"), "{text}");
    // A wrong passphrase does not open it.
    std::fs::write(&pass, "wrong passphrase\n").unwrap();
    let bad = run(Command::new("openssl").args([
        "pkcs12",
        "-in",
        &p(&p12),
        "-passin",
        &format!("file:{}", p(&pass)),
        "-nodes",
        "-info",
    ]));
    assert!(!bad.status.success());
}

#[test]
fn a_reissue_needs_permission_and_is_recorded_as_such() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let cred = station(&server, "line-r", &["--allow-reissue"]);
    assert_eq!(
        station_post(&server, &cred, "simpleenroll", "SN-7", &[]).status,
        200
    );
    // Not asked for: refused even though the station may re-issue.
    let a = station_post(&server, &cred, "simpleenroll", "SN-7", &[]);
    assert!(
        a.status == 403 && a.text().contains("re-issue must be asked for explicitly"),
        "{}",
        a.text()
    );
    let a = station_post(
        &server,
        &cred,
        "simpleenroll",
        "SN-7",
        &["-H", "fleetca-reissue: true"],
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let list =
        String::from_utf8(fleetca(&server, &["audit", "list", "--actor", "station:line-r"]).stdout)
            .unwrap();
    assert!(list.contains("re-issue of the birth certificate"), "{list}");
    let certs =
        String::from_utf8(fleetca(&server, &["cert", "list", "--device", "SN-7"]).stdout).unwrap();
    assert_eq!(
        certs.lines().filter(|l| l.contains(" birth ")).count(),
        2,
        "{certs}"
    );
}

/// Issue 13, item 3: a station's pattern matches the whole serial and its range refuses
/// serials of another shape (the range comparison fell back to bytes for `ST-1001x`).
#[test]
fn a_station_pattern_and_range_confine_the_whole_serial() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let out_dir = server.work("stations");
    let out = fleetca(
        &server,
        &[
            "factory",
            "add-station",
            "line-st",
            "--serial-pattern",
            "ST-1[0-9]{3}",
            "--serial-range",
            "ST-1000..ST-1999",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cred = (out_dir.join("line-st.pem"), out_dir.join("line-st.key"));
    for attack in ["ST-1001x", "XST-1500", "ST-10011", "ST-1500-2"] {
        let a = station_post(&server, &cred, "simpleenroll", attack, &[]);
        assert_eq!(a.status, 403, "{attack}: {}", a.text());
        assert!(a.text().contains("station-scope"), "{attack}: {}", a.text());
    }
    let a = station_post(&server, &cred, "simpleenroll", "ST-1001", &[]);
    assert_eq!(a.status, 200, "{}", a.text());

    // A range of two shapes, or without a number, is refused when the station is added.
    for range in ["ST-A..ST-B", "ST-1000..SX-1999"] {
        let out = fleetca(
            &server,
            &[
                "factory",
                "add-station",
                "line-bad",
                "--serial-pattern",
                "ST-.*",
                "--serial-range",
                range,
                "--out",
                out_dir.to_str().unwrap(),
            ],
        );
        assert!(!out.status.success(), "{range} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("PREFIX<number>"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Issue 15, item 10: a used-up quota is refused under its own rule, also for requests
/// racing each other; the summary says which failures a rerun can fix; `factory
/// set-quota` raises the quota (audited) and the rerun provisions the rest.
#[test]
fn a_quota_refusal_names_its_rule_and_set_quota_lets_the_batch_finish() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let cred = station(&server, "line-k", &["--quota", "3"]);
    let list = server.work("serials.txt");
    let serials: Vec<String> = (1..=12).map(|i| format!("SN-{i}")).collect();
    std::fs::write(&list, serials.join("\n")).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["--serials", list.to_str().unwrap(), "--concurrency", "8"];
        args.extend(extra);
        provision(&server, &cred, &args)
    };
    let first = run(&["--format", "json"]);
    assert!(!first.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(summary["provisioned"], 3, "{summary}");
    assert_eq!(summary["failed"], 9, "{summary}");
    assert_eq!(summary["worth_retry"], 0, "{summary}");
    for f in summary["failures"].as_array().unwrap() {
        assert_eq!(f["status"], 403, "{f}");
        assert_eq!(f["rule"], "station-quota", "{f}");
        assert_eq!(f["worth_retry"], false, "{f}");
    }
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(err.contains("fix what their errors name first"), "{err}");

    let out = fleetca(
        &server,
        &[
            "factory",
            "set-quota",
            "line-k",
            "20",
            "--comment",
            "CHG-77",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stations = String::from_utf8(fleetca(&server, &["factory", "list"]).stdout).unwrap();
    let row = stations.lines().find(|l| l.starts_with("line-k")).unwrap();
    assert!(row.contains(" 20 ") && row.contains(" 17 "), "{row}");
    let audit = String::from_utf8(fleetca(&server, &["audit", "list"]).stdout).unwrap();
    assert!(
        audit.contains("station-set-quota") && audit.contains("quota 20; comment: CHG-77"),
        "{audit}"
    );
    for bad in [
        vec!["factory", "set-quota", "line-k", "-1"],
        vec!["factory", "set-quota", "nope", "5"],
    ] {
        let out = fleetca(&server, &bad);
        assert!(!out.status.success(), "{bad:?}");
    }

    // The rerun: one line per device with --verbose, the done ones skipped.
    let second = run(&["--verbose"]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{err}");
    for s in &serials {
        assert_eq!(
            err.lines()
                .filter(|l| l.starts_with(&format!("{s}: ")))
                .count(),
            1,
            "{s}: {err}"
        );
    }
    assert_eq!(
        err.matches("skipped, its bundle is complete").count(),
        3,
        "{err}"
    );
    assert!(
        err.contains("provisioned 9 device(s), skipped 3 already done, 0 failed"),
        "{err}"
    );
}

/// Issue 15, item 10: the bundle carries the root on its own, agent.toml points to it, and
/// the birth certificate verifies against it.
#[test]
fn a_bundle_carries_its_root_and_agent_toml_points_to_it() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let cred = station(&server, "line-r2", &[]);
    let out = provision(&server, &cred, &["--serial", "SN-42"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = server.work("bundles").join("SN-42");
    let root = std::fs::read_to_string(bundle.join("root-ca.pem")).unwrap();
    assert_eq!(root, std::fs::read_to_string(server.root()).unwrap());
    // chain.pem starts with the root, as agent.toml now says.
    let chain = std::fs::read_to_string(bundle.join("chain.pem")).unwrap();
    assert!(chain.starts_with(&root), "{chain}");
    let agent = std::fs::read_to_string(bundle.join("agent.toml")).unwrap();
    assert!(
        agent.contains("trust_anchor = \"/var/lib/fleetca-agent/root-ca.pem\"")
            && agent.contains("root first")
            && !agent.contains("last in"),
        "{agent}"
    );
    let verify = openssl(&[
        "verify",
        "-CAfile",
        &p(&bundle.join("root-ca.pem")),
        "-untrusted",
        &p(&bundle.join("chain.pem")),
        &p(&bundle.join("birth.pem")),
    ]);
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains(": OK"),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn a_bad_station_request_is_refused_before_the_registration_ca_is_created() {
    let server = Server::start();
    // A data directory from before factory stations: no registration CA yet.
    let registration = server.data().join("pki/registration-ca.pem");
    std::fs::remove_file(&registration).unwrap();
    std::fs::remove_file(server.data().join("pki/registration-ca.key")).unwrap();
    let out_dir = server.work("stations");
    for (name, pattern, what) in [
        ("bad name!", "SN-[0-9]+", "station name 'bad name!'"),
        ("line-x", "SN-[", "not a valid regular expression"),
    ] {
        let out = fleetca(
            &server,
            &[
                "factory",
                "add-station",
                name,
                "--serial-pattern",
                pattern,
                "--out",
                out_dir.to_str().unwrap(),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(what), "{stderr}");
        assert!(
            !registration.exists(),
            "refused request created the registration CA: {stderr}"
        );
    }
}
