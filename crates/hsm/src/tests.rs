//! Against a real SoftHSM2. SoftHSM reads `SOFTHSM2_CONF` once, at `C_Initialize`, so this
//! test binary has one configuration file and token directory of its own (in a temporary
//! directory), created before the module is loaded, with one token per test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use fleetca_pki::{KeyAlgorithm, Signer};

use crate::{HsmError, Pin, Pkcs11Key, Token};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "1234";
const TOKENS: [&str; 7] = [
    "generate", "protect", "errors", "parallel", "relogin", "exists", "rsa",
];

struct SoftHsm {
    _dir: tempfile::TempDir,
}

/// `None` (with a note) where SoftHSM2 is not installed; a failure under CI=true.
fn softhsm() -> Option<&'static SoftHsm> {
    static FIXTURE: OnceLock<Option<SoftHsm>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            if !Path::new(MODULE).exists() {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{MODULE} is missing: CI must install softhsm2 (.ci/run does)");
                }
                eprintln!(
                    "skipped: SoftHSM2 is not installed ({MODULE}); apt-get install softhsm2"
                );
                return None;
            }
            let dir = tempfile::tempdir().unwrap();
            let tokens = dir.path().join("tokens");
            std::fs::create_dir(&tokens).unwrap();
            let conf = dir.path().join("softhsm2.conf");
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    tokens.display()
                ),
            )
            .unwrap();
            for label in TOKENS {
                let out = Command::new("softhsm2-util")
                    .env("SOFTHSM2_CONF", &conf)
                    .args(["--init-token", "--free", "--label", label])
                    .args(["--pin", PIN, "--so-pin", "5678"])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // Before any test loads the module (tests start after this returns).
            std::env::set_var("SOFTHSM2_CONF", &conf);
            Some(SoftHsm { _dir: dir })
        })
        .as_ref()
}

fn token(label: &str) -> Option<Token> {
    softhsm()?;
    Some(Token::open(Path::new(MODULE), label, Pin::new(PIN)).unwrap())
}

/// A self-signed certificate made with the token key, verified with x509-parser.
fn assert_signs_verifiable_certificates(key: &Pkcs11Key) {
    let params = rcgen::CertificateParams::new(vec!["hsm.test".to_string()]).unwrap();
    let cert = params.self_signed(key).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    parsed.verify_signature(None).unwrap();
    assert_eq!(
        parsed.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(key).as_slice()
    );
}

#[test]
fn keys_are_generated_in_the_token_and_sign_verifiable_certificates() {
    let Some(token) = token("generate") else {
        return;
    };
    for alg in [
        KeyAlgorithm::P256,
        KeyAlgorithm::P384,
        KeyAlgorithm::Ed25519,
    ] {
        let label = format!("ca-{alg}");
        let key = Pkcs11Key::generate(&token, &label, alg).unwrap();
        assert_eq!(key.key_algorithm(), alg);
        assert_signs_verifiable_certificates(&key);
        // Found again by label, with the same public key.
        let again = Pkcs11Key::open(&token, &label).unwrap();
        assert_eq!(again.key_algorithm(), alg);
        assert_eq!(
            rcgen::PublicKeyData::der_bytes(&again),
            rcgen::PublicKeyData::der_bytes(&key)
        );
        assert_signs_verifiable_certificates(&again);
    }
}

#[test]
fn rsa_keys_sign_with_sha256_rsa_pkcs() {
    let Some(token) = token("rsa") else { return };
    let key = Pkcs11Key::generate(&token, "ca-rsa", KeyAlgorithm::Rsa2048).unwrap();
    assert_signs_verifiable_certificates(&key);
    assert_eq!(
        Pkcs11Key::open(&token, "ca-rsa").unwrap().key_algorithm(),
        KeyAlgorithm::Rsa2048
    );
    // Asked for another algorithm: refused with the reason.
    let err = Pkcs11Key::open_as(&token, "ca-rsa", KeyAlgorithm::P256).unwrap_err();
    assert!(err.to_string().contains("not a p256 key"), "{err}");
}

#[test]
fn keys_are_sensitive_and_never_extractable() {
    let Some(token) = token("protect") else {
        return;
    };
    let key = Pkcs11Key::generate(&token, "root", KeyAlgorithm::P256).unwrap();
    let p = key.protection().unwrap();
    assert!(
        p.sensitive && !p.extractable && p.never_extractable,
        "{p:?}"
    );
    assert!(p.token_object && p.private, "{p:?}");
    assert!(!key.private_value_readable().unwrap());
    let debug = format!("{key:?}");
    assert!(debug.contains("root") && debug.contains("P256"), "{debug}");
}

#[test]
fn a_taken_label_is_not_generated_twice() {
    let Some(token) = token("exists") else { return };
    Pkcs11Key::generate(&token, "operational", KeyAlgorithm::P256).unwrap();
    let err = Pkcs11Key::generate(&token, "operational", KeyAlgorithm::P256).unwrap_err();
    assert!(matches!(err, HsmError::KeyExists { .. }), "{err}");
    assert!(
        err.to_string().contains("'operational' already exists"),
        "{err}"
    );
}

#[test]
fn token_errors_name_module_token_key_and_return_code() {
    let Some(_) = softhsm() else { return };
    let module = Path::new(MODULE);

    let err = Token::open(module, "errors", Pin::new("wrong-pin-4321")).unwrap_err();
    let text = err.to_string();
    for needle in [
        MODULE,
        "slot ",
        "token 'errors'",
        "C_Login",
        "CKR_PIN_INCORRECT",
    ] {
        assert!(text.contains(needle), "expected '{needle}' in: {text}");
    }
    assert!(!text.contains("wrong-pin-4321") && !format!("{err:?}").contains("wrong-pin-4321"));

    let err = Token::open(module, "no-such-token", Pin::new(PIN)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HsmError::TokenNotFound { .. }));
    assert!(
        text.contains("token 'no-such-token': no such token"),
        "{text}"
    );
    assert!(
        text.contains("'errors'"),
        "lists the tokens present: {text}"
    );

    let err = Token::open(
        Path::new("/nonexistent/libpkcs11.so"),
        "errors",
        Pin::new(PIN),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot load PKCS#11 module /nonexistent/libpkcs11.so"),
        "{err}"
    );

    let token = Token::open(module, "errors", Pin::new(PIN)).unwrap();
    let err = Pkcs11Key::open(&token, "missing-key").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HsmError::KeyNotFound { .. }));
    assert!(
        text.contains("token 'errors'") && text.contains("no private key labelled 'missing-key'"),
        "{text}"
    );
}

#[test]
fn many_threads_sign_at_once_on_pooled_sessions() {
    let Some(token) = token("parallel") else {
        return;
    };
    let key = Arc::new(Pkcs11Key::generate(&token, "issuing", KeyAlgorithm::P256).unwrap());
    let public = rcgen::PublicKeyData::der_bytes(key.as_ref()).to_vec();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let key = Arc::clone(&key);
            let public = public.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let msg = format!("thread {t} message {i}");
                    let sig = rcgen::SigningKey::sign(key.as_ref(), msg.as_bytes()).unwrap();
                    aws_lc_rs::signature::UnparsedPublicKey::new(
                        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
                        &public,
                    )
                    .verify(msg.as_bytes(), &sig)
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_lost_login_is_restored_on_a_new_session() {
    let Some(token) = token("relogin") else {
        return;
    };
    let key = Pkcs11Key::generate(&token, "ocsp", KeyAlgorithm::P256).unwrap();
    key.try_sign(b"before").unwrap();
    token.logout_for_test().unwrap();
    key.try_sign(b"after").unwrap();
}

#[test]
fn the_pin_file_must_be_private_and_non_empty() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("pin");
    std::fs::write(&path, "1234\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Pin::from_file(&path).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pin = Pin::from_file(&path).unwrap();
    assert_eq!(format!("{pin:?}"), "Pin(***)");
    std::fs::write(&path, "\n").unwrap();
    assert!(Pin::from_file(&path)
        .unwrap_err()
        .to_string()
        .contains("empty"));
}
