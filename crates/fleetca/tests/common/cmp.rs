//! Helpers of the CMP tests: a server with `[cmp] enabled`, and `openssl cmp` against it.

use std::path::Path;
use std::process::Command;

use super::*;

/// A server answering CMP (and any further configuration edit).
pub fn cmp_server(edit: impl FnOnce(&mut String)) -> Server {
    Server::start_with(|config| {
        config.push_str("\n[cmp]\nenabled = true\n");
        edit(config);
    })
}

/// What `openssl cmp` did: its exit status and everything it printed.
pub struct CmpRun {
    pub ok: bool,
    pub output: String,
}

/// `openssl cmp` against the server's `/.well-known/cmp` over TLS, trusting the root for
/// TLS and for the servers's signed answers, with `args`.
pub fn openssl_cmp(server: &Server, args: &[&str]) -> CmpRun {
    let root = server.root();
    let out = run(Command::new("timeout")
        .arg("60")
        .args(["openssl", "cmp", "-server"])
        .arg(format!("https://{}", server.addr))
        .args(["-path", ".well-known/cmp", "-tls_used", "-tls_trusted"])
        .arg(&root)
        .arg("-trusted")
        .arg(&root)
        .args(args));
    CmpRun {
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A DER PKIMessage POSTed with curl to the server's `/.well-known/cmp`.
pub fn post_cmp(server: &Server, message: &[u8], name: &str) -> Answer {
    let file = server.work(name);
    std::fs::write(&file, message).unwrap();
    curl(
        server,
        &[
            "-H",
            "Content-Type: application/pkixcmp",
            "--data-binary",
            &format!("@{}", file.display()),
        ],
        &format!("https://{}/.well-known/cmp", server.addr),
    )
}

/// Asserts that openssl failed and printed the failure info `fail`.
pub fn assert_refused(run: &CmpRun, fail: &str) {
    assert!(!run.ok, "openssl cmp succeeded:\n{}", run.output);
    assert!(
        run.output.contains(&format!("PKIFailureInfo: {fail}")),
        "expected PKIFailureInfo: {fail}:\n{}",
        run.output
    );
}

/// Asserts that `cert` verifies to the server's root (intermediates from `pki/`).
pub fn assert_verifies(server: &Server, cert: &Path) {
    let out = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(server.root())
        .arg("-untrusted")
        .arg(server.pki("operational-ca.pem"))
        .arg(cert));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK"),
        "{} does not verify: {}{}",
        cert.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates a one-time secret for `serial`; returns (reference, secret).
pub fn cmp_secret(server: &Server, serial: &str) -> (String, String) {
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["cmp", "secret", "create", "--serial", serial, "--data-dir"])
            .arg(server.data()),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    (field("reference "), field("secret "))
}
