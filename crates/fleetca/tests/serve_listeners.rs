//! `fleetca serve` start-up messages about its listeners (issue 15, item 12): a bind
//! failure names the listener, the address and the setting and flag that choose it; a
//! `--status-listen` that moves the CRL/OCSP listener away from the URL certificates name
//! is warned about, naming the setting to change.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{birth, enroll, fleetca_bin, openssl, Server};

/// Runs `fleetca serve` on `data` with `args` and expects it to exit (within 60 s) with an
/// error; returns its stderr.
fn serve_fails(data: &Path, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut child = Command::new(fleetca_bin())
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "serve {args:?} kept running: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn a_listener_that_cannot_bind_is_named_with_its_address_setting_and_flag() {
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let free = "127.0.0.1:0";

    let cases = [
        (
            [
                "--listen",
                &busy,
                "--status-listen",
                free,
                "--metrics-listen",
                free,
            ],
            [
                "EST listener",
                "given by --listen",
                "[server] listen in fleetca.toml (or FLEETCA_LISTEN)",
            ],
        ),
        (
            [
                "--listen",
                free,
                "--status-listen",
                &busy,
                "--metrics-listen",
                free,
            ],
            [
                "CRL/OCSP status listener",
                "given by --status-listen",
                "[publication] listen",
            ],
        ),
        (
            [
                "--listen",
                free,
                "--status-listen",
                free,
                "--metrics-listen",
                &busy,
            ],
            [
                "metrics listener",
                "given by --metrics-listen",
                "[monitoring] metrics_listen",
            ],
        ),
    ];
    for (args, expected) in cases {
        let stderr = serve_fails(&data, &args);
        assert!(stderr.contains(&format!("on {busy}")), "{stderr}");
        assert!(stderr.contains("in use"), "the cause is kept: {stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{e}: {stderr}");
        }
    }

    // From fleetca.toml, without a flag: the message leads with the setting.
    let config = data.join("fleetca.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:8080\""));
    std::fs::write(
        &config,
        text.replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"{busy}\""),
        ),
    )
    .unwrap();
    let stderr = serve_fails(&data, &["--listen", free, "--metrics-listen", free]);
    assert!(
        stderr.contains(&format!(
            "CRL/OCSP status listener on {busy} ([publication] listen in fleetca.toml; or override it with --status-listen)"
        )),
        "{stderr}"
    );
    drop(taken);
}

/// The CRL distribution point a certificate names.
fn crl_url(pem: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        pem.to_str().unwrap(),
        "-noout",
        "-ext",
        "crlDistributionPoints",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let start = text.find("URI:").expect("a CRL distribution point") + 4;
    text[start..].lines().next().unwrap().trim().to_string()
}

#[test]
fn status_listen_away_from_the_base_url_of_issued_certificates_is_warned_about() {
    require_tools!("openssl");
    // The harness serves with --status-listen 127.0.0.1:0 on a directory initialised with
    // the default base URL http://127.0.0.1:8080.
    let server = Server::start();
    require_tools!("curl");
    let (birth_key, birth_cert) = birth(&server, "SN-LISTEN-0001");
    let (_, cert) = enroll(
        &server,
        "simpleenroll",
        (&birth_cert, &birth_key),
        "/CN=SN-LISTEN-0001/serialNumber=SN-LISTEN-0001",
        "operational",
    );
    let named = crl_url(&cert);
    assert!(named.starts_with("http://127.0.0.1:8080/"), "{named}");
    assert!(!named.contains(&server.status_addr), "served elsewhere");
    let log = server.log();
    assert!(
        log.contains("certificates name http://127.0.0.1:8080 for their CRL and OCSP URLs")
            && log.contains(&format!("the status listener is on {}", server.status_addr))
            && log.contains("Set [publication] base_url in fleetca.toml"),
        "{log}"
    );
    drop(server);

    // A base URL that names the listener's address: no warning.
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = data.join("fleetca.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "base_url = \"http://127.0.0.1:8080\"",
        &format!("base_url = \"http://127.0.0.1:{port}\""),
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("stderr");
    let mut child = Command::new(fleetca_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--status-listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut started = false;
    for line in stdout {
        if line.unwrap().starts_with("fleetca: EST listening on") {
            started = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(started, "{log}");
    assert!(!log.contains("base_url"), "{log}");
}
