//! What the SCEP tests with independent clients (micromdm's `scepclient`, pyscep) share: a
//! server with SCEP on a plain-HTTP listener and a legacy label, one-time challenges from
//! the CLI, RSA keys and CSRs made with `openssl`, and `openssl verify` to the root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::*;

/// A profile `name` (a copy of `operational`) served at the label `name`, with SCEP on a
/// plain-HTTP listener, `name` listed in `[scep] legacy_algorithms` when `legacy` is true.
pub fn add_legacy_profile(config: &mut String, name: &str, legacy: bool) {
    let start = config.find("[profiles.operational]\n").unwrap();
    let end = start + config[start..].find("\n# Birth certificates").unwrap();
    let copy = config[start..end]
        .replace("[profiles.operational]", &format!("[profiles.{name}]"))
        .replace(
            "[[profiles.operational.rules]]",
            &format!("[[profiles.{name}.rules]]"),
        );
    config.insert_str(end, &format!("\n{copy}\n"));
    *config = config.replacen(
        "[est.labels]\n",
        &format!("[est.labels]\n{name} = \"{name}\"\n"),
        1,
    );
    config.push_str("\n[scep]\nhttp_listen = \"127.0.0.1:0\"\n");
    if legacy {
        config.push_str(&format!("legacy_algorithms = [\"{name}\"]\n"));
    }
}

/// A server whose CAs have `key_algorithm` keys, SCEP on plain HTTP, the profile and label
/// `legacy` (legacy algorithms allowed when `legacy`), and `edit` applied to its
/// configuration.
pub fn scep_server(key_algorithm: &str, legacy: bool, edit: impl FnOnce(&mut String)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run_ok(
        Command::new(fleetca_bin())
            .args(["init", "--organization", "Test Fleet", "--key-algorithm"])
            .arg(key_algorithm)
            .arg("--data-dir")
            .arg(&data),
    );
    let path = data.join("fleetca.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    add_legacy_profile(&mut config, "legacy", legacy);
    edit(&mut config);
    std::fs::write(&path, config).unwrap();
    Server::spawn(dir)
}

/// `fleetca ARGS --data-dir DATA`.
pub fn fleetca(server: &Server, args: &[&str]) -> Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(server.data()))
}

/// A one-time challenge for `serial`, from the CLI.
pub fn challenge(server: &Server, serial: &str) -> String {
    let out = fleetca(server, &["scep", "challenge", "create", "--serial", serial]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The SCEP URL of `label` (None: the default profile) on the plain-HTTP listener.
pub fn scep_url(server: &Server, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("http://{}/scep/{l}", server.scep_addr),
        None => format!("http://{}/scep", server.scep_addr),
    }
}

/// A 2048-bit RSA key in PKCS#1 PEM ("RSA PRIVATE KEY", what scepclient reads).
pub fn rsa_key(path: &Path) {
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        path.to_str().unwrap(),
        "2048",
    ]);
}

/// A PEM CSR for `subj` (openssl `-subj` syntax, `/CN=.../serialNumber=...`) signed by
/// `key`, with a challengePassword if given (openssl writes attributes only with the
/// subject in its configuration, not with `-subj`).
pub fn csr(key: &Path, subj: &str, challenge: Option<&str>, out: &Path) {
    let config = out.with_extension("cnf");
    let mut text =
        String::from("[req]\ndistinguished_name = dn\nattributes = attrs\nprompt = no\n[dn]\n");
    for part in subj.split('/').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap();
        text.push_str(&format!("{k} = {v}\n"));
    }
    text.push_str("[attrs]\n");
    if let Some(c) = challenge {
        text.push_str(&format!("challengePassword = {c}\n"));
    }
    std::fs::write(&config, text).unwrap();
    openssl(&[
        "req",
        "-new",
        "-config",
        config.to_str().unwrap(),
        "-key",
        key.to_str().unwrap(),
        "-out",
        out.to_str().unwrap(),
    ]);
}

/// A self-signed certificate of `key` (the signer of a first request).
pub fn self_signed(key: &Path, subj: &str, out: &Path) {
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        subj,
        "-days",
        "1",
        "-out",
        out.to_str().unwrap(),
    ]);
}

/// `openssl verify` of `cert` to the server's root, through the operational CA.
pub fn verify_to_root(server: &Server, cert: &Path) {
    let out = run(Command::new("openssl").args([
        "verify",
        "-CAfile",
        server.root().to_str().unwrap(),
        "-untrusted",
        server.pki("operational-ca.pem").to_str().unwrap(),
        cert.to_str().unwrap(),
    ]));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The subject's serialNumber attribute of a PEM certificate.
pub fn subject_serial(cert: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-nameopt",
        "sep_multiline",
    ]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("serialNumber=").map(str::to_string))
        .unwrap_or_default()
}

/// The server's log lines saying a SCEP request was answered, for `message_type`.
pub fn answered(server: &Server, message_type: &str) -> Vec<String> {
    server
        .log()
        .lines()
        .filter(|l| {
            l.contains("SCEP request answered")
                && l.contains(&format!("message_type=\"{message_type}\""))
        })
        .map(str::to_string)
        .collect()
}

/// A file in a fresh directory under the server's work directory.
pub fn client_dir(server: &Server, name: &str) -> PathBuf {
    let dir = server.work(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
