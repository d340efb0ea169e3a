//! Key usage that fits the key (RFC 8813 section 3, RFC 8410 section 5): a profile listing
//! keyEncipherment gives it to RSA devices only, `--check-config` notes it, and a server
//! certificate written with keyEncipherment on its EC key is re-issued at start-up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::*;

fn text_of(pem: &std::path::Path) -> String {
    String::from_utf8(openssl(&["x509", "-in", pem.to_str().unwrap(), "-noout", "-text"]).stdout)
        .unwrap()
}

#[test]
fn key_encipherment_is_issued_to_rsa_devices_only() {
    require_tools!("openssl", "curl");
    let dir = Server::prepare(|config| {
        *config = config.replacen(
            "key_usage = [\"digitalSignature\"]",
            "key_usage = [\"digitalSignature\", \"keyEncipherment\"]",
            1,
        );
    });
    let check = run_ok(
        std::process::Command::new(fleetca_bin())
            .args(["serve", "--check-config", "--data-dir"])
            .arg(dir.path().join("data")),
    );
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.contains("note: profile 'operational': key_usage keyEncipherment does not apply to p256, p384, ed25519 keys"),
        "{stdout}"
    );
    let server = Server::spawn(dir);
    for (serial, keygen) in [
        (
            "SN-EC",
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        ),
        (
            "SN-RSA",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        ),
    ] {
        let (birth_key, birth_cert) = birth(&server, serial);
        let key = server.work(&format!("{serial}.key"));
        let mut args = keygen.clone();
        args.extend(["-out", key.to_str().unwrap()]);
        openssl(&args);
        let csr = server.work(&format!("{serial}.csr.b64"));
        new_csr_b64(&key, &format!("/CN={serial}/serialNumber={serial}"), &csr);
        let a = post_csr(
            &server,
            "simpleenroll",
            Some((&birth_cert, &birth_key)),
            &csr,
            &[],
        );
        assert_eq!(a.status, 200, "{serial}: {}", a.text());
        let cert = server.work(&format!("{serial}.pem"));
        certs_only_to_pem(&a.body, &cert);
        let text = text_of(&cert);
        assert!(text.contains("Digital Signature"), "{text}");
        assert_eq!(
            text.contains("Key Encipherment"),
            serial == "SN-RSA",
            "{serial}: {text}"
        );
    }
}

#[test]
fn a_server_certificate_with_key_encipherment_on_an_ec_key_is_reissued_at_start_up() {
    require_tools!("openssl");
    let dir = Server::prepare(|_| {});
    let pki = dir.path().join("data/pki");
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
    // What versions before this fix wrote: keyEncipherment on the P-256 server key.
    let csr = dir.path().join("server.csr");
    openssl(&[
        "req",
        "-new",
        "-key",
        &p("server.key"),
        "-subj",
        "/O=Test Fleet/CN=localhost",
        "-out",
        csr.to_str().unwrap(),
    ]);
    let ext = dir.path().join("ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    let old = dir.path().join("old-server.pem");
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        &p("operational-ca.pem"),
        "-CAkey",
        &p("operational-ca.key"),
        "-days",
        "300",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        old.to_str().unwrap(),
    ]);
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(&old).unwrap(),
        std::fs::read_to_string(pki.join("operational-ca.pem")).unwrap()
    );
    std::fs::write(pki.join("server.pem"), chain).unwrap();
    assert!(text_of(&pki.join("server.pem")).contains("Key Encipherment"));

    let server = Server::spawn(dir);
    let text = text_of(&server.pki("server.pem"));
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(!text.contains("Key Encipherment"), "{text}");
    assert!(
        server.log().contains("key usage did not fit its key"),
        "{}",
        server.log()
    );
}
