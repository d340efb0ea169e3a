//! What binds a device to its birth (issue 13, items 4 and 5), against a real server: the
//! CA it was born under, the manufacturer CA's serial scope, the profile it first enrolled
//! under, and enrolling again with a birth certificate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn fleetca(data: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A self-signed manufacturer CA in `dir`: (certificate, key).
fn vendor_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}-ca.key"));
    let cert = dir.join(format!("{name}-ca.pem"));
    new_key(&key);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        s(&key),
        "-subj",
        &format!("/O={name}/CN={name} IDevID CA"),
        "-days",
        "365",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        s(&cert),
    ]);
    (cert, key)
}

/// A birth certificate for `serial` from a manufacturer CA: (certificate, key).
fn vendor_birth(dir: &Path, ca: &(PathBuf, PathBuf), serial: &str) -> (PathBuf, PathBuf) {
    let stem = format!("{}-{serial}", ca.0.file_stem().unwrap().to_str().unwrap());
    let key = dir.join(format!("{stem}.key"));
    let csr = dir.join(format!("{stem}.csr"));
    let cert = dir.join(format!("{stem}.pem"));
    let ext = dir.join("vendor-ext.cnf");
    new_key(&key);
    openssl(&[
        "req",
        "-new",
        "-key",
        s(&key),
        "-subj",
        &format!("/CN={serial}/serialNumber={serial}"),
        "-out",
        s(&csr),
    ]);
    std::fs::write(&ext, "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        s(&csr),
        "-CA",
        s(&ca.0),
        "-CAkey",
        s(&ca.1),
        "-set_serial",
        &format!("0x{}", hex_of(&stem)),
        "-days",
        "30",
        "-extfile",
        s(&ext),
        "-out",
        s(&cert),
    ]);
    (cert, key)
}

fn hex_of(text: &str) -> String {
    text.bytes().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A first enrollment with a birth certificate (cert, key) for a fresh key.
fn enroll_with(server: &Server, label: &str, birth: &(PathBuf, PathBuf), serial: &str) -> Answer {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let key = server.work(&format!("e{n}.key"));
    let csr = server.work(&format!("e{n}.b64"));
    new_key(&key);
    new_csr_b64(&key, &format!("/serialNumber={serial}"), &csr);
    let op = if label.is_empty() {
        "simpleenroll".to_string()
    } else {
        format!("{label}/simpleenroll")
    };
    post_csr(server, &op, Some((&birth.0, &birth.1)), &csr, &[])
}

fn refused_by(a: &Answer, rule: &str) {
    assert_eq!(a.status, 403, "expected 403 by {rule}: {}", a.text());
    assert!(
        a.text().contains(rule),
        "expected rule {rule}: {}",
        a.text()
    );
}

/// Item 5: after `trust add-manufacturer`, that CA's birth certificate for a serial born
/// under fleetca's own manufacturing CA got the device's operational certificate.
#[test]
fn a_manufacturer_ca_cannot_enroll_devices_born_elsewhere() {
    require_tools!("openssl", "curl");
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let rogue = vendor_ca(dir.path(), "rogue");
    let acme = vendor_ca(dir.path(), "acme");
    let out = fleetca(&data, &["trust", "add-manufacturer", "rogue", s(&rogue.0)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A pattern that is not a regular expression is refused.
    let out = fleetca(
        &data,
        &[
            "trust",
            "add-manufacturer",
            "acme",
            s(&acme.0),
            "--serial-pattern",
            "AC-[",
        ],
    );
    assert!(!out.status.success());
    let out = fleetca(
        &data,
        &[
            "trust",
            "add-manufacturer",
            "acme",
            s(&acme.0),
            "--serial-pattern",
            "AC-[0-9]{4}",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::spawn(dir);
    let work = server.dir.path().to_path_buf();

    // SN-0001 is born here; the rogue CA (unscoped) vouches for the same serial.
    let (own_key, own_cert) = birth(&server, "SN-0001");
    let own = (own_cert, own_key);
    let forged = vendor_birth(&work, &rogue, "SN-0001");
    refused_by(
        &enroll_with(&server, "", &forged, "SN-0001"),
        "birth-issuer",
    );
    // The device's own birth certificate still enrolls.
    assert_eq!(enroll_with(&server, "", &own, "SN-0001").status, 200);

    // A scoped manufacturer: only its serials, matched whole.
    for outside in ["SN-0002", "XAC-0001", "AC-00011"] {
        let cert = vendor_birth(&work, &acme, outside);
        refused_by(
            &enroll_with(&server, "", &cert, outside),
            "manufacturer-scope",
        );
    }
    let acme_1 = vendor_birth(&work, &acme, "AC-0001");
    assert_eq!(enroll_with(&server, "", &acme_1, "AC-0001").status, 200);
    // AC-0001 is now born under acme: the rogue CA cannot enroll it either.
    let forged = vendor_birth(&work, &rogue, "AC-0001");
    refused_by(
        &enroll_with(&server, "", &forged, "AC-0001"),
        "birth-issuer",
    );
    // Nor can fleetca's own station line issue it a second, other-CA birth certificate.
    let out = fleetca(
        &server.data(),
        &[
            "device",
            "birth",
            "--serial",
            "AC-0001",
            "--csr",
            s(&work.join("acme-ca-AC-0001.csr")),
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("birth-issuer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The import is audited, with its scope.
    let out = fleetca(&server.data(), &["audit", "list"]);
    let audit = String::from_utf8_lossy(&out.stdout);
    assert!(
        audit.contains("trust-add-manufacturer") && audit.contains("AC-[0-9]{4}"),
        "{audit}"
    );
}

const PROFILES: &str = "[profiles.long]
issuer = \"operational\"
validity = \"3650d\"
key_usage = [\"digitalSignature\"]
extended_key_usage = [\"clientAuth\"]
allowed_keys = [\"p256\"]
subject = [{ attribute = \"serialNumber\", value = \"{serial}\" }]

[profiles.restricted]
issuer = \"operational\"
validity = \"7d\"
key_usage = [\"digitalSignature\"]
extended_key_usage = [\"clientAuth\"]
allowed_keys = [\"p256\"]
subject = [{ attribute = \"serialNumber\", value = \"{serial}\" }]
max_active_certificates = 1

[profiles.wide]
issuer = \"operational\"
validity = \"30d\"
key_usage = [\"digitalSignature\"]
extended_key_usage = [\"clientAuth\"]
allowed_keys = [\"p256\"]
subject = [{ attribute = \"serialNumber\", value = \"{serial}\" }]
enroll_from = [\"restricted\"]

[profiles.birth]";

/// A server with the review's extra labels: `long` (10 years), `restricted`
/// (`max_active_certificates = 1`) and `wide` (accepts devices of `restricted`).
fn labelled_server() -> Server {
    Server::start_with(|config| {
        *config = config
            .replace(
                "# sensors = \"operational\"",
                "long = \"long\"\nrestricted = \"restricted\"\nwide = \"wide\"",
            )
            .replace("[profiles.birth]", PROFILES);
    })
}

/// Item 4: the same birth certificate got 200 on every label (bypassing
/// `max_active_certificates = 1`), and enrolled again after a keyCompromise revocation.
#[test]
fn a_birth_certificate_enrolls_once_under_its_profile() {
    require_tools!("openssl", "curl");
    let server = labelled_server();
    let data = server.data();
    let (key, cert) = birth(&server, "SN-0001");
    let b = (cert, key);

    // The first enrollment binds the device to `restricted`.
    let first = enroll_with(&server, "restricted", &b, "SN-0001");
    assert_eq!(first.status, 200, "{}", first.text());
    let first_pem = server.work("first.pem");
    certs_only_to_pem(&first.body, &first_pem);
    // The attack: the same birth certificate on another label.
    refused_by(
        &enroll_with(&server, "long", &b, "SN-0001"),
        "device-profile",
    );
    refused_by(&enroll_with(&server, "", &b, "SN-0001"), "device-profile");
    // And again on its own label, while its operational certificate is live.
    refused_by(
        &enroll_with(&server, "restricted", &b, "SN-0001"),
        "birth-reenrollment",
    );

    // After a keyCompromise revocation the birth certificate needs the operator too.
    let serial = serial_of(&first_pem);
    let out = fleetca(
        &data,
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
    let a = enroll_with(&server, "restricted", &b, "SN-0001");
    refused_by(&a, "birth-reenrollment");
    assert!(a.text().contains("keyCompromise"), "{}", a.text());
    // The refusals are in the decision log with their rule.
    let out = fleetca(&data, &["decision", "list", "--device", "SN-0001"]);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("birth-reenrollment") && log.contains("device-profile"),
        "{log}"
    );

    // The legitimate path: the operator lets the device enroll again, under its profile.
    let out = fleetca(
        &data,
        &["device", "force-reenroll", "SN-0001", "--for", "1h"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = enroll_with(&server, "restricted", &b, "SN-0001");
    assert_eq!(a.status, 200, "{}", a.text());
    // Still not under another label, and the limit still counts for the device.
    refused_by(
        &enroll_with(&server, "long", &b, "SN-0001"),
        "device-profile",
    );
    refused_by(
        &enroll_with(&server, "restricted", &b, "SN-0001"),
        "max-active-certificates",
    );
    let out = fleetca(&data, &["audit", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("force-reenroll"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A profile that lists another in `enroll_from` accepts that profile's devices.
#[test]
fn enroll_from_lets_a_profile_accept_another_profiles_devices() {
    require_tools!("openssl", "curl");
    let server = labelled_server();
    let (key, cert) = birth(&server, "SN-0002");
    let b = (cert, key);
    let first = enroll_with(&server, "restricted", &b, "SN-0002");
    assert_eq!(first.status, 200, "{}", first.text());
    let pem = server.work("sn2.pem");
    certs_only_to_pem(&first.body, &pem);
    // Not live any more (not a compromise): the device may enroll again, under `wide`.
    let out = fleetca(
        &server.data(),
        &["cert", "revoke", &serial_of(&pem), "--reason", "superseded"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = enroll_with(&server, "wide", &b, "SN-0002");
    assert_eq!(a.status, 200, "{}", a.text());
    // `long` does not accept `restricted` devices.
    refused_by(
        &enroll_with(&server, "long", &b, "SN-0002"),
        "device-profile",
    );
}

/// Simultaneous first enrollments with one birth certificate under a profile without
/// limits: each passes the RA alone (no live certificate yet), the recording commit lets
/// one through.
#[test]
fn simultaneous_birth_enrollments_give_one_certificate() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let (key, cert) = birth(&server, "SN-0003");
    let b = (cert, key);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| enroll_with(&server, "", &b, "SN-0003").status))
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
