//! CSR keys and signatures fleetca does not take are refused with 400 and the real reason
//! (issue 13, "Also"): RSA-1024 is too small, an RSASSA-PSS signature with OpenSSL's default
//! (maximum) salt names the parameters to use, an RSASSA-PSS key, an EC key with explicit
//! parameters and an unsupported curve say what is supported, without raw bytes or a
//! doubled "is not supported". An RSASSA-PSS signature with a digest-length salt is issued.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::process::Command;

use common::*;

/// (name, openssl key generation steps, `req` signature options, expected refusal or None
/// for issued).
type Case = (
    &'static str,
    &'static [&'static [&'static str]],
    &'static [&'static str],
    Option<&'static str>,
);

#[test]
fn unsupported_csr_keys_and_signatures_are_refused_with_the_real_reason() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let (birth_key, birth_cert) = birth(&server, "SN-KEYS");
    let subj = "/CN=SN-KEYS/serialNumber=SN-KEYS";
    let w = |f: &str| server.work(f).display().to_string();
    let cases: [Case; 6] = [
        (
            "rsa1024",
            &[&["genrsa", "-out", "rsa1024.key", "1024"]],
            &[],
            Some("RSA with 1024 bits, too small"),
        ),
        (
            "pss-max-salt",
            &[&["genrsa", "-out", "pss-max-salt.key", "2048"]],
            &["-sigopt", "rsa_padding_mode:pss"],
            Some("salt length 222"),
        ),
        (
            "pss-key",
            &[&[
                "genpkey",
                "-algorithm",
                "RSA-PSS",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "pss-key.key",
            ]],
            &[],
            Some("RSASSA-PSS public keys"),
        ),
        (
            "ec-explicit",
            &[&[
                "ecparam",
                "-name",
                "prime256v1",
                "-param_enc",
                "explicit",
                "-genkey",
                "-noout",
                "-out",
                "ec-explicit.key",
            ]],
            &[],
            Some("explicit curve parameters"),
        ),
        (
            "secp256k1",
            &[&[
                "ecparam",
                "-name",
                "secp256k1",
                "-genkey",
                "-noout",
                "-out",
                "secp256k1.key",
            ]],
            &[],
            Some("EC curve 1.3.132.0.10 is not supported (P-256 and P-384 are)"),
        ),
        (
            "pss-digest-salt",
            &[&["genrsa", "-out", "pss-digest-salt.key", "2048"]],
            &[
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
            ],
            None,
        ),
    ];
    for (name, keygen, sigopts, refusal) in cases {
        for step in keygen {
            run_ok(
                Command::new("openssl")
                    .args(*step)
                    .current_dir(server.dir.path()),
            );
        }
        let der = run_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-new",
                    "-key",
                    &w(&format!("{name}.key")),
                    "-subj",
                    subj,
                    "-outform",
                    "DER",
                ])
                .args(sigopts),
        )
        .stdout;
        let csr = server.work(&format!("{name}.b64"));
        std::fs::write(&csr, base64_lines(&der)).unwrap();
        let a = post_csr(
            &server,
            "simpleenroll",
            Some((&birth_cert, &birth_key)),
            &csr,
            &[],
        );
        let text = a.text();
        match refusal {
            Some(reason) => {
                assert_eq!(a.status, 400, "{name}: {text}");
                assert!(text.contains(reason), "{name}: {text}");
                assert!(!text.contains("proof of possession"), "{name}: {text}");
                assert!(
                    !text.contains("not supported is not supported"),
                    "{name}: {text}"
                );
                assert!(
                    !text.contains("02 01 01") && text.len() < 400,
                    "{name}: {text}"
                );
            }
            None => assert_eq!(a.status, 200, "{name}: {text}"),
        }
    }
}
