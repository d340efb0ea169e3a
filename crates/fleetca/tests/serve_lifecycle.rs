//! Starting and running `fleetca serve` as an operator does (issue 15 items 2-4): a
//! mistyped data directory never becomes a second CA.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::process::Command;

use common::*;

/// `serve` on a data directory without a CA, from `cwd`, with `args`; it must exit.
fn serve_refused(cwd: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(fleetca_bin())
        .current_dir(cwd)
        .env_remove("FLEETCA_DATA_DIR")
        .arg("serve")
        .args(args)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--status-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "serve started: {text}");
    text
}

/// Issue 15 item 2: a mistyped `--data-dir` used to create and serve a new CA; the default
/// path's advice was to run `fleetca init`, which does the same. Now both are refused,
/// nothing is created, and the message points at the path first.
#[test]
fn serve_refuses_a_missing_data_directory_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("fleetca-dta");
    let text = serve_refused(dir.path(), &["--data-dir", typo.to_str().unwrap()]);
    assert!(text.contains("holds no fleetca CA"), "{text}");
    assert!(text.contains("check the path for a typo"), "{text}");
    assert!(!typo.exists(), "{} was created", typo.display());

    // The default ./fleetca-data, not named: refused too.
    let text = serve_refused(dir.path(), &[]);
    assert!(text.contains("holds no fleetca CA"), "{text}");
    assert!(!dir.path().join("fleetca-data").exists());

    // A non-empty directory without a configuration, even with --init.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "x").unwrap();
    let text = serve_refused(
        dir.path(),
        &["--init", "--data-dir", other.to_str().unwrap()],
    );
    assert!(text.contains("not a fleetca data directory"), "{text}");
    assert!(!other.join("pki").exists());

    // --check-config never creates anything.
    let text = serve_refused(
        dir.path(),
        &["--check-config", "--data-dir", typo.to_str().unwrap()],
    );
    assert!(text.contains("holds no fleetca CA"), "{text}");
    assert!(!typo.exists());
}

/// An empty directory the operator made and named, or `--init` on a missing one, is
/// initialised and served; `--init` on an existing CA serves it unchanged.
#[test]
fn serve_initialises_an_empty_named_directory_or_with_init() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let server = Server::spawn(dir);
    assert!(server.pki("root-ca.pem").exists());
    drop(server);

    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn_with(dir, Vec::new(), &["--init"]);
    let root = std::fs::read(server.pki("root-ca.pem")).unwrap();
    // Again with --init on the existing CA: validated and kept.
    run_ok(
        Command::new(fleetca_bin())
            .args(["serve", "--init", "--check-config", "--data-dir"])
            .arg(server.data()),
    );
    assert_eq!(std::fs::read(server.pki("root-ca.pem")).unwrap(), root);
}

/// Waits until the server log contains `needle` `count` times (bounded).
fn wait_for_log(server: &Server, needle: &str, count: usize) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = server.log();
        if log.matches(needle).count() >= count {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "'{needle}' not logged {count} time(s):\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn sighup(server: &Server) {
    run_ok(Command::new("kill").args(["-HUP", &server.pid().to_string()]));
}

/// Issue 15 item 3: SIGHUP ended the server (exit 129, no log line). Now it reloads: a bad
/// file is refused with the reason and the running configuration kept (the server goes on
/// issuing); a good file's new custom rule starts denying at once, its monitoring settings
/// restart the expiry scan, and a changed listener is logged as needing a restart.
#[test]
fn sighup_refuses_a_bad_file_and_applies_a_good_one_while_serving() {
    let server = Server::start();
    let config_path = server.data().join("fleetca.toml");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let (birth_key, birth_cert) = birth(&server, "SN-HUP-1");
    let subj = "/CN=SN-HUP-1/serialNumber=SN-HUP-1";

    // A bad file: a CEL expression that does not compile.
    let rule = "[[profiles.operational.rules]]\nname = \"no-p256\"\nexpression = 'request.key_algorithm != \"p256\"'\nmessage = \"P-256 is retired\"\n\n# Birth certificates (IDevID)";
    let bad = original.replace(
        "# Birth certificates (IDevID)",
        &rule.replace("!= \"p256\"'", "!= \"p256\" &&'"),
    );
    std::fs::write(&config_path, &bad).unwrap();
    sighup(&server);
    let log = wait_for_log(&server, "configuration reload refused", 1);
    assert!(
        log.contains("no-p256"),
        "the refusal names the rule:\n{log}"
    );
    assert!(server.alive(), "{log}");
    // Still serving, with the running configuration: P-256 is issued.
    enroll(
        &server,
        "simpleenroll",
        (&birth_cert, &birth_key),
        subj,
        "hup-1",
    );

    // A good file: the new rule denies the next request. The listen address changed too:
    // that needs a restart, and says so.
    let good = original
        .replace("# Birth certificates (IDevID)", rule)
        .replace("listen = \"127.0.0.1:8443\"", "listen = \"127.0.0.1:8444\"")
        .replace("scan_interval = \"15m\"", "scan_interval = \"14m\"");
    std::fs::write(&config_path, &good).unwrap();
    sighup(&server);
    let log = wait_for_log(&server, "configuration reloaded", 1);
    assert!(log.contains("server.listen"), "{log}");
    // The monitoring settings changed: the scan restarts with them (and scans at once).
    wait_for_log(
        &server,
        "monitoring restarted with the reloaded settings",
        1,
    );
    wait_for_log(&server, "expiry scan candidates=", 2);
    let (key, cert) = (server.work("hup-1.key"), server.work("hup-1.pem"));
    let next = server.work("hup-2.key");
    let csr = server.work("hup-2.csr.b64");
    new_key(&next);
    new_csr_b64(&next, subj, &csr);
    let a = post_csr(&server, "simplereenroll", Some((&cert, &key)), &csr, &[]);
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("P-256 is retired"), "{}", a.text());
    assert!(server.alive());

    // SIGTERM still stops it cleanly.
    run_ok(Command::new("kill").args(["-TERM", &server.pid().to_string()]));
    wait_for_log(&server, "fleetca stopped", 1);
}

/// A plain HTTP GET on loopback: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

/// Issue 15 item 4: after a crash the restarted node waited for its own expiry-scan lease
/// to expire (three scan intervals: 45 minutes by default), silently. Its identity is now
/// kept in the data directory, so it takes the lease back and scans at once. The status
/// listener answers `/healthz` and `/readyz`, and `/metrics` says whether a scan is overdue.
#[test]
fn after_kill_9_the_node_takes_its_scan_lease_back_at_once_and_answers_probes() {
    let server = Server::start();
    wait_for_log(&server, "expiry scan lease taken: this node scans", 1);
    let id = std::fs::read_to_string(server.data().join("node-id")).unwrap();

    let server = server.kill_and_restart();
    let log = wait_for_log(&server, "expiry scan lease taken: this node scans", 1);
    wait_for_log(&server, "expiry scan candidates=", 1);
    assert_eq!(
        std::fs::read_to_string(server.data().join("node-id")).unwrap(),
        id,
        "{log}"
    );

    let (status, body) = http_get(&server.status_addr, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http_get(&server.status_addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("database: ok"), "{body}");
    assert!(
        body.contains("expiry scan: last success on this node"),
        "{body}"
    );
    let (_, metrics) = http_get(&server.metrics_addr, "/metrics");
    assert!(
        metrics.contains("fleetca_expiry_scan_overdue 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fleetca_expiry_scan_last_timestamp_seconds"),
        "{metrics}"
    );
}

/// A loopback TCP relay that can be cut: every relayed connection is shut down and new
/// ones are refused (a database that becomes unreachable).
struct CuttableRelay {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::Mutex<Option<Vec<std::net::TcpStream>>>>,
}

impl CuttableRelay {
    fn start(upstream: String) -> Self {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::Mutex::new(Some(Vec::new())));
        let streams = std::sync::Arc::clone(&open);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mut guard = streams.lock().unwrap();
                let Some(list) = guard.as_mut() else {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Self { addr, open }
    }

    fn cut(&self) {
        if let Some(list) = self.open.lock().unwrap().take() {
            for s in list {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// `/readyz` answers 503 while the database is unreachable (PostgreSQL behind a relay that
/// is cut), and the process stays alive for `/healthz`.
#[test]
fn readyz_is_503_while_the_database_is_unreachable() {
    let url = fleetca_testpg::database_url().unwrap_or_else(|e| panic!("{e}"));
    // postgres://user:password@HOST:PORT/db?...: send HOST:PORT through the relay.
    let (head, rest) = url.split_once('@').unwrap();
    let (hostport, tail) = rest.split_once('/').unwrap();
    let relay = CuttableRelay::start(hostport.to_string());
    let relayed = format!("{head}@{}/{tail}", relay.addr);
    let dir = Server::prepare(|config| {
        *config = config.replace("path = \"fleetca.db\"", &format!("url = \"{relayed}\""));
    });
    let server = Server::spawn(dir);
    let (status, body) = http_get(&server.status_addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("database: ok"), "{body}");

    relay.cut();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let body = loop {
        let (status, body) = http_get(&server.status_addr, "/readyz");
        if status == 503 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {status}: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(body.starts_with("not ready"), "{body}");
    assert!(
        body.contains("database:") && !body.contains("database: ok"),
        "{body}"
    );
    let (status, _) = http_get(&server.status_addr, "/healthz");
    assert_eq!(status, 200);
    assert!(server.alive());
}
