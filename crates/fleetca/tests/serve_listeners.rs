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

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fleetca_bin, Server};

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

/// Starts `fleetca serve` on `data` with `--status-listen status`, waits until it serves,
/// stops it and returns its log.
fn start_and_stop(data: &Path, status: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut child = Command::new(fleetca_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(["--status-listen", status])
        .arg("--data-dir")
        .arg(data)
        .env("FLEETCA_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
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
    log
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn status_listen_away_from_the_base_url_of_issued_certificates_is_warned_about() {
    // An existing data directory: certificates name the base URL fleetca init wrote.
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let config = data.join("fleetca.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("base_url = \"http://127.0.0.1:8080\""),
        "{text}"
    );

    // Moved elsewhere with --status-listen: warned, naming the setting to change.
    let port = free_port();
    let log = start_and_stop(&data, &format!("127.0.0.1:{port}"));
    assert!(
        log.contains("certificates name http://127.0.0.1:8080 for their CRL and OCSP URLs")
            && log.contains(&format!("the status listener is on 127.0.0.1:{port}"))
            && log.contains("Set [publication] base_url in fleetca.toml"),
        "{log}"
    );

    // A base URL that names the listener's address: no warning.
    let port = free_port();
    std::fs::write(
        &config,
        text.replace(
            "base_url = \"http://127.0.0.1:8080\"",
            &format!("base_url = \"http://127.0.0.1:{port}\""),
        ),
    )
    .unwrap();
    let log = start_and_stop(&data, &format!("127.0.0.1:{port}"));
    assert!(!log.contains("[publication] base_url"), "{log}");
    // Nor for port 0 (any free port: tests and tools), which no base URL could name.
    let log = start_and_stop(&data, "127.0.0.1:0");
    assert!(!log.contains("[publication] base_url"), "{log}");
}
