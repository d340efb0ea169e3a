//! SCEP against a real `fleetca serve` with micromdm's `scepclient` (Debian package
//! `scep`, 2.1.0), an independent Go client. It sends what certmonger never does: a
//! `RenewalReq` (type 17) when it already holds a certificate, signed with that
//! certificate. And it protects every request with legacy algorithms it cannot be told
//! to change: single DES-CBC content encryption and SHA-1 digests (its PKCS#7 library's
//! defaults). fleetca refuses those with badAlg unless the profile is listed in
//! `[scep] legacy_algorithms`, where it enrolls and renews, and where a request waiting for
//! approval is sent again until it is answered. Every certificate is checked with
//! `openssl verify` to the root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::scep::*;
use common::*;

/// The SHA-256 fingerprint of the RA certificate: scepclient's `-ca-fingerprint` picks the
/// envelope's recipient among the certificates of GetCACert (without it, it encrypts to
/// every one, the EC CAs included, which it cannot).
fn ra_fingerprint(server: &Server) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        server.pki("scep-ra.pem").to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim().rsplit('=').next().unwrap().to_string()
}

/// A device's scepclient: its directory holds `key.pem` (the key it signs with),
/// `csr.pem` (the request it sends, made by scepclient when absent) and `cert.pem`.
struct Device {
    dir: PathBuf,
}

impl Device {
    fn new(server: &Server, name: &str) -> Self {
        let dir = client_dir(server, name);
        rsa_key(&dir.join("key.pem"));
        Self { dir }
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// scepclient against `url`: a PKCSReq with `challenge` for `cn` when the device has
    /// no certificate yet, a RenewalReq signed with its certificate when it has one.
    fn command(&self, server: &Server, url: &str, cn: &str, challenge: &str) -> Command {
        let mut command = Command::new("timeout");
        command
            .arg("150")
            .arg("scepclient")
            .args(["-server-url", url, "-private-key"])
            .arg(self.key())
            .arg("-certificate")
            .arg(self.cert())
            .args(["-challenge", challenge, "-cn", cn])
            // The profile issues CN and serialNumber: no O, OU or C in the request.
            .args(["-organization", "", "-ou", "", "-country", ""])
            .args(["-ca-fingerprint", &ra_fingerprint(server)]);
        command
    }

    /// Runs [`Device::command`].
    fn scepclient(&self, server: &Server, url: &str, cn: &str, challenge: &str) -> Output {
        run(&mut self.command(server, url, cn, challenge))
    }

    /// Enrolls with `challenge`; expects success.
    fn enroll(&self, server: &Server, url: &str, serial: &str, challenge: &str) {
        let out = self.scepclient(server, url, serial, challenge);
        assert!(
            out.status.success() && self.cert().exists(),
            "scepclient: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
    }

    /// Prepares a renewal: a new key and its CSR (same subject) where scepclient reads
    /// its request; returns the new key. The request is still signed with the current
    /// key and certificate.
    fn new_key_for_renewal(&self, serial: &str) -> PathBuf {
        let new_key = self.dir.join("new-key.pem");
        rsa_key(&new_key);
        csr(
            &new_key,
            &format!("/CN={serial}/serialNumber={serial}"),
            None,
            &self.dir.join("csr.pem"),
        );
        new_key
    }
}

fn public_key(path: &Path, is_cert: bool) -> Vec<u8> {
    let args: Vec<&str> = if is_cert {
        vec!["x509", "-in", path.to_str().unwrap(), "-noout", "-pubkey"]
    } else {
        vec!["pkey", "-in", path.to_str().unwrap(), "-pubout"]
    };
    openssl(&args).stdout
}

fn caps(server: &Server, label: Option<&str>) -> Vec<String> {
    let answer = curl(
        server,
        &[],
        &format!("{}?operation=GetCACaps", scep_url(server, label)),
    );
    assert_eq!(answer.status, 200);
    answer.text().lines().map(str::to_string).collect()
}

fn failed_with(out: &Output, message_type: &str, fail_info: &str) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !out.status.success()
            && text.contains(&format!(
                "{message_type} request failed, failInfo: {fail_info}"
            )),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scepclient_des_and_sha1_are_refused_with_bad_alg_by_default() {
    require_tools!("scepclient", "openssl", "curl");
    let server = scep_server("p256", false, |_| {});
    // No profile allows legacy algorithms: no label advertises them.
    for label in [None, Some("legacy")] {
        let caps = caps(&server, label);
        assert!(caps.iter().any(|c| c == "AES"), "{caps:?}");
        assert!(
            !caps.iter().any(|c| c == "DES3" || c == "SHA-1"),
            "{caps:?}"
        );
    }
    let device = Device::new(&server, "refused");
    let secret = challenge(&server, "SN-MDM-0");
    let out = device.scepclient(&server, &scep_url(&server, None), "SN-MDM-0", &secret);
    failed_with(&out, "PKCSReq (19)", "badAlg (0)");
    assert!(!device.cert().exists());
    let log = server.log();
    let refused = log
        .lines()
        .find(|l| l.contains("SCEP request refused"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        refused.contains("fail_info=\"badAlg\"")
            && refused.contains("rule=\"scep-algorithms\"")
            && refused.contains("SHA-1 is refused"),
        "{refused}"
    );
    // The same on the label of a profile that does not allow them.
    let out = device.scepclient(
        &server,
        &scep_url(&server, Some("legacy")),
        "SN-MDM-0",
        &secret,
    );
    failed_with(&out, "PKCSReq (19)", "badAlg (0)");
}

#[test]
fn scepclient_enrolls_and_renews_with_renewal_req_on_a_legacy_profile() {
    require_tools!("scepclient", "openssl", "curl");
    let server = scep_server("p256", true, |_| {});
    let legacy = scep_url(&server, Some("legacy"));
    // GetCACaps says what is true of each label (RFC 8894 section 3.5.2).
    let caps_legacy = caps(&server, Some("legacy"));
    for cap in [
        "AES",
        "DES3",
        "SHA-1",
        "SHA-256",
        "Renewal",
        "POSTPKIOperation",
    ] {
        assert!(
            caps_legacy.iter().any(|c| c == cap),
            "{cap}: {caps_legacy:?}"
        );
    }
    let caps_default = caps(&server, None);
    assert!(
        !caps_default.iter().any(|c| c == "DES3" || c == "SHA-1"),
        "{caps_default:?}"
    );

    // PKCSReq (19) with a challenge, DES-CBC and SHA-1.
    let device = Device::new(&server, "device1");
    let secret = challenge(&server, "SN-MDM-1");
    device.enroll(&server, &legacy, "SN-MDM-1", &secret);
    verify_to_root(&server, &device.cert());
    assert_eq!(subject_serial(&device.cert()), "SN-MDM-1");
    let first = serial_of(&device.cert());
    let lines = answered(&server, "PKCSReq");
    assert!(
        lines.iter().any(|l| l.contains("digest=\"SHA-1\"")
            && l.contains("cipher=\"DES-CBC\"")
            && l.contains("label=\"legacy\"")
            && l.contains("status=\"SUCCESS\"")),
        "{lines:?}"
    );

    // RenewalReq (17): a new key, the request signed with the current certificate.
    let new_key = device.new_key_for_renewal("SN-MDM-1");
    let out = device.scepclient(&server, &legacy, "SN-MDM-1", "");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        server.log()
    );
    let renewed = serial_of(&device.cert());
    assert_ne!(renewed, first, "a new certificate");
    assert_eq!(
        public_key(&device.cert(), true),
        public_key(&new_key, false),
        "for the new key"
    );
    verify_to_root(&server, &device.cert());
    assert_eq!(subject_serial(&device.cert()), "SN-MDM-1");
    let lines = answered(&server, "RenewalReq");
    assert!(
        lines.iter().any(|l| l.contains("status=\"SUCCESS\"")
            && l.contains("digest=\"SHA-1\"")
            && l.contains("cipher=\"DES-CBC\"")),
        "the server saw a RenewalReq and answered it: {lines:?}\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("operation=\"simplereenroll\" client=\"operational\""),
        "decided as a re-enrollment by the operational certificate: {log}"
    );
    // The inventory links the renewal to the certificate it replaces.
    let shown = fleetca(&server, &["cert", "show", &renewed]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.contains(&first), "{shown}");
    std::fs::rename(&new_key, device.key()).unwrap();

    // Refused: a renewal signed by a revoked certificate.
    let revoked = fleetca(
        &server,
        &[
            "cert",
            "revoke",
            &renewed,
            "--reason",
            "keyCompromise",
            "--yes",
        ],
    );
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    device.new_key_for_renewal("SN-MDM-1");
    let out = device.scepclient(&server, &legacy, "SN-MDM-1", "");
    failed_with(&out, "RenewalReq (17)", "badRequest (2)");
    assert_eq!(
        serial_of(&device.cert()),
        renewed,
        "the certificate is kept"
    );
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("SCEP request refused")
            && l.contains("message_type=\"RenewalReq\"")
            && l.contains("revoked")),
        "the revoked signer is named in the refusal: {log}"
    );

    // Refused: the challenge used by device1, again.
    let reused = Device::new(&server, "reused");
    let out = reused.scepclient(&server, &legacy, "SN-MDM-1", &secret);
    failed_with(&out, "PKCSReq (19)", "badRequest (2)");
    assert!(server
        .log()
        .lines()
        .any(|l| l.contains("SCEP request refused") && l.contains("rule=\"scep-challenge\"")));

    // Refused: a challenge for one device, a request for another (the RA's subject rule).
    let other = challenge(&server, "SN-MDM-2");
    let mismatch = Device::new(&server, "mismatch");
    let out = mismatch.scepclient(&server, &legacy, "SN-MDM-3", &other);
    failed_with(&out, "PKCSReq (19)", "badRequest (2)");
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("SCEP request refused")
            && l.contains("SN-MDM-3")
            && l.contains("rule=\"subject\"")),
        "{log}"
    );
    assert!(!reused.cert().exists() && !mismatch.cert().exists());
}

#[test]
fn scepclient_sends_its_pending_request_again_until_it_is_approved() {
    require_tools!("scepclient", "openssl", "curl");
    let server = scep_server("p256", true, |config| {
        *config = config.replacen(
            "[profiles.legacy]\n",
            "[profiles.legacy]\nmanual_approval = \"true\"\n",
            1,
        );
    });
    let device = Device::new(&server, "pending");
    let secret = challenge(&server, "SN-MDM-10");
    // scepclient answers PENDING by sleeping 30 s and sending the same PKCSReq again.
    let log = std::fs::File::create(server.work("scepclient.log")).unwrap();
    let mut child = device
        .command(
            &server,
            &scep_url(&server, Some("legacy")),
            "SN-MDM-10",
            &secret,
        )
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let id = loop {
        let queue = fleetca(&server, &["request", "list"]);
        let queue = String::from_utf8_lossy(&queue.stdout).into_owned();
        if let Some(line) = queue.lines().find(|l| l.contains("SN-MDM-10")) {
            break line.split_whitespace().next().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // The request is recorded before the PENDING answer goes out and is logged: wait for
    // the answer too.
    while !answered(&server, "PKCSReq")
        .iter()
        .any(|l| l.contains("status=\"PENDING\""))
    {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(fleetca(&server, &["request", "approve", &id])
        .status
        .success());
    let status = child.wait().unwrap();
    let output = std::fs::read_to_string(server.work("scepclient.log")).unwrap();
    assert!(status.success(), "{output}\n{}", server.log());
    assert!(
        output.contains("PENDING") && output.contains("SUCCESS"),
        "{output}"
    );
    verify_to_root(&server, &device.cert());
    assert_eq!(subject_serial(&device.cert()), "SN-MDM-10");
    let all = fleetca(&server, &["request", "list", "--all"]);
    let all = String::from_utf8_lossy(&all.stdout).into_owned();
    assert!(
        all.lines().filter(|l| l.contains("SN-MDM-10")).count() == 1 && all.contains("issued"),
        "one request, issued: {all}"
    );
}
