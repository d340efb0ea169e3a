//! Rules before issuance over real EST, with real inventories on loopback: an HTTP CMDB
//! this test serves (known, unknown, decommissioned devices, slow answers, 500s, invalid
//! JSON), a CSV file that changes during the test, a SQLite table; manual approval end to
//! end; `fleetca policy test`; every file in `examples/rules` loaded by `--check-config`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

// ---------------------------------------------------------------------------------------
// A small CMDB: GET /api/devices/<serial> with a bearer token, answers from a table.

#[derive(Clone)]
enum Answer {
    Json(&'static str),
    Status(u16),
    Slow(Duration),
    Garbage,
}

struct Cmdb {
    addr: String,
    requests: Arc<AtomicUsize>,
    table: Arc<Mutex<HashMap<String, Answer>>>,
}

const TOKEN: &str = "s3cret-cmdb-token";

impl Cmdb {
    fn start(table: &[(&str, Answer)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let table = Arc::new(Mutex::new(
            table
                .iter()
                .map(|(s, a)| (s.to_string(), a.clone()))
                .collect::<HashMap<_, _>>(),
        ));
        let (r, t) = (Arc::clone(&requests), Arc::clone(&table));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, t) = (Arc::clone(&r), Arc::clone(&t));
                std::thread::spawn(move || serve(stream, &r, &t));
            }
        });
        Self {
            addr,
            requests,
            table,
        }
    }

    fn set(&self, serial: &str, answer: Answer) {
        self.table.lock().unwrap().insert(serial.into(), answer);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, requests: &AtomicUsize, table: &Mutex<HashMap<String, Answer>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut authorized = false;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if h.to_ascii_lowercase().starts_with("authorization:") {
            authorized = h.trim_end().ends_with(&format!("Bearer {TOKEN}"));
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let path = line.split(' ').nth(1).unwrap_or("");
    let serial = path.strip_prefix("/api/devices/").unwrap_or("");
    let answer = if authorized {
        table
            .lock()
            .unwrap()
            .get(serial)
            .cloned()
            .unwrap_or(Answer::Status(404))
    } else {
        Answer::Status(401)
    };
    let (status, body) = match answer {
        Answer::Json(b) => (200, b.to_string()),
        Answer::Status(s) => (s, "{}".to_string()),
        Answer::Slow(d) => {
            std::thread::sleep(d);
            (200, r#"{"status":"active"}"#.to_string())
        }
        Answer::Garbage => (200, "<html>maintenance</html>".to_string()),
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
    let _ = stream.read(&mut [0u8; 1]);
}

// ---------------------------------------------------------------------------------------
// Configuration: an example file from examples/rules merged into `fleetca init`'s config.

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/rules")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (Some(toml::Value::Array(a)), toml::Value::Array(b)) => a.extend(b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// The configuration with `fragment` merged in (tables merged, arrays appended).
fn with_fragment(config: &mut String, fragment: &str) {
    let mut table: toml::Table = config.parse().unwrap();
    merge(&mut table, fragment.parse().unwrap());
    *config = toml::to_string(&table).unwrap();
}

/// Copies an example from examples/rules, unedited, into the data directory's `conf.d/`.
fn include_example(dir: &tempfile::TempDir, name: &str) {
    let conf_d = dir.path().join("data/conf.d");
    std::fs::create_dir_all(&conf_d).unwrap();
    std::fs::write(conf_d.join(name), example(name)).unwrap();
}

fn data_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join("data").join(name)
}

fn fleetca(server: &Server, args: &[&str]) -> std::process::Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(server.data()))
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A first enrollment of `serial` with its birth certificate and a new P-256 key.
fn first_enrollment(server: &Server, serial: &str) -> common::Answer {
    let (birth_key, birth_cert) = birth(server, serial);
    let key = server.work(&format!("{serial}.key"));
    let csr = server.work(&format!("{serial}.csr.b64"));
    new_key(&key);
    new_csr_b64(&key, &format!("/CN={serial}/serialNumber={serial}"), &csr);
    post_csr(
        server,
        "simpleenroll",
        Some((birth_cert.as_path(), birth_key.as_path())),
        &csr,
        &[],
    )
}

/// A PEM CSR for `/CN=SERIAL/serialNumber=SERIAL` with the key at `key`.
fn pem_csr(key: &Path, serial: &str, out: &Path) {
    openssl(&[
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        &format!("/CN={serial}/serialNumber={serial}"),
        "-out",
        out.to_str().unwrap(),
    ]);
}

/// Posts the CSR `first_enrollment` made for `serial` again, with its birth certificate.
fn again(server: &Server, serial: &str) -> common::Answer {
    post_csr(
        server,
        "simpleenroll",
        Some((
            server.work(&format!("{serial}-birth.pem")).as_path(),
            server.work(&format!("{serial}-birth.key")).as_path(),
        )),
        &server.work(&format!("{serial}.csr.b64")),
        &[],
    )
}

/// `fleetca serve --check-config` on a prepared directory.
fn check_config(dir: &tempfile::TempDir) -> std::process::Output {
    run(Command::new(fleetca_bin())
        .args(["serve", "--check-config", "--data-dir"])
        .arg(dir.path().join("data")))
}

fn retry_after(a: &common::Answer) -> Option<u64> {
    a.headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------

#[test]
fn an_http_cmdb_decides_and_its_failures_fail_closed() {
    let cmdb = Cmdb::start(&[
        (
            "SN-ACTIVE",
            Answer::Json(r#"{"status":"active","site":"plant-1"}"#),
        ),
        ("SN-RETIRED", Answer::Json(r#"{"status":"decommissioned"}"#)),
        ("SN-SLOW", Answer::Slow(Duration::from_secs(3))),
        ("SN-BROKEN", Answer::Status(500)),
        ("SN-GARBAGE", Answer::Garbage),
    ]);
    let dir = Server::prepare(|config| {
        let fragment = example("cmdb-active.toml")
            .replace("https://cmdb.example.com", &format!("http://{}", cmdb.addr))
            .replace("timeout = \"2s\"", "timeout = \"500ms\"");
        with_fragment(config, &fragment);
        // SN-ACTIVE enrolls twice with its birth certificate (the cache below), which the
        // default `needs-operator` refuses while the first certificate is live.
        *config = config.replace(
            "birth_reenrollment = \"needs-operator\"",
            "birth_reenrollment = \"within-limits\"",
        );
    });
    std::fs::write(data_file(&dir, "cmdb.token"), format!("{TOKEN}\n")).unwrap();
    let server = Server::spawn(dir);

    let a = first_enrollment(&server, "SN-ACTIVE");
    assert_eq!(a.status, 200, "{}", a.text());

    let a = first_enrollment(&server, "SN-RETIRED");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(
        a.text().contains("cmdb-active") && a.text().contains("not active in the CMDB"),
        "{}",
        a.text()
    );

    let a = first_enrollment(&server, "SN-UNKNOWN");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(
        a.text().contains("'inventory'") && a.text().contains("not in the inventory 'cmdb'"),
        "{}",
        a.text()
    );

    // Slow, 500, not JSON: 503 with the configured Retry-After; the body names the rule,
    // not the CMDB's address or its error.
    for serial in ["SN-SLOW", "SN-BROKEN", "SN-GARBAGE"] {
        let a = first_enrollment(&server, serial);
        assert_eq!(a.status, 503, "{serial}: {}", a.text());
        assert_eq!(retry_after(&a), Some(30), "{serial}: {}", a.headers);
        assert!(a.text().contains("'inventory'"), "{}", a.text());
        assert!(
            !a.text().contains(&cmdb.addr) && !a.text().contains("500"),
            "{}",
            a.text()
        );
    }

    // The decision log has every rule, and the operator-side detail of the failure.
    let out = fleetca(&server, &["decision", "list", "--verbose", "--limit", "20"]);
    let log = stdout(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("issued") && log.contains("SN-ACTIVE"), "{log}");
    assert!(
        log.contains("denied") && log.contains("SN-RETIRED") && log.contains("custom-rule"),
        "{log}"
    );
    assert!(
        log.contains("unavailable") && log.contains("SN-SLOW"),
        "{log}"
    );
    assert!(log.contains("timed out"), "operator sees why: {log}");
    assert!(log.contains("HTTP 500"), "{log}");
    for stage in ["technical", "authentication", "identity", "eligibility"] {
        assert!(log.contains(stage), "{stage}: {log}");
    }

    // Once the CMDB recovers, the same device enrolls; the server kept serving throughout.
    cmdb.set("SN-BROKEN", Answer::Json(r#"{"status":"active"}"#));
    let a = again(&server, "SN-BROKEN");
    assert_eq!(a.status, 200, "{}", a.text());

    // The cache: asking again for a known device does not reach the CMDB.
    let before = cmdb.requests();
    let a = again(&server, "SN-ACTIVE");
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(cmdb.requests(), before, "served from the cache");
    assert!(server.alive());
}

#[test]
fn a_csv_inventory_is_reloaded_and_the_serial_must_match_the_birth_certificate() {
    let dir = Server::prepare(|config| {
        let fragment = example("serial-matches-birth.toml")
            .replace("reload_interval = \"5s\"", "reload_interval = \"200ms\"");
        with_fragment(config, &fragment);
    });
    let csv = data_file(&dir, "shipped-devices.csv");
    std::fs::write(&csv, "serial,model,batch\nSN-1001,s1,b1\n").unwrap();
    let server = Server::spawn(dir);

    let a = first_enrollment(&server, "SN-1001");
    assert_eq!(a.status, 200, "{}", a.text());

    // Not (yet) in the file: refused, naming the rule.
    let a = first_enrollment(&server, "SN-1002");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("shipped"), "{}", a.text());
    // The file changes while the server runs; the same request then passes.
    std::fs::write(&csv, "serial,model,batch\nSN-1001,s1,b1\nSN-1002,s1,b2\n").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let a = again(&server, "SN-1002");
    assert_eq!(a.status, 200, "{}", a.text());

    // A serial outside the fleet's pattern stops at the identity stage.
    let a = first_enrollment(&server, "XYZ-1");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("serial-pattern"), "{}", a.text());

    // A CSR naming another device than the birth certificate is refused.
    let key = server.work("other.key");
    let csr = server.work("other.csr.b64");
    new_key(&key);
    new_csr_b64(&key, "/CN=SN-1002/serialNumber=SN-1002", &csr);
    let a = post_csr(
        &server,
        "simpleenroll",
        Some((
            server.work("SN-1001-birth.pem").as_path(),
            server.work("SN-1001-birth.key").as_path(),
        )),
        &csr,
        &[],
    );
    assert_eq!(a.status, 403, "{}", a.text());
}

fn assets_db(path: &Path, rows: &[(&str, &str)]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS devices (serial TEXT PRIMARY KEY, owner TEXT, status TEXT)",
    )
    .unwrap();
    for (serial, owner) in rows {
        conn.execute(
            "INSERT INTO devices VALUES (?1, ?2, 'active')",
            [serial, owner],
        )
        .unwrap();
    }
}

#[test]
fn unknown_devices_wait_for_approval_which_survives_a_restart() {
    let dir = Server::prepare(|config| with_fragment(config, &example("manual-approval.toml")));
    assets_db(&data_file(&dir, "assets.db"), &[("SN-KNOWN", "team-a")]);
    let mut server = Server::spawn(dir);

    // A device in the SQLite table is issued at once.
    let a = first_enrollment(&server, "SN-KNOWN");
    assert_eq!(a.status, 200, "{}", a.text());

    // Unknown: 202 Accepted with Retry-After, and the same request polled again is the
    // same queued request.
    let a = first_enrollment(&server, "SN-NEW");
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(retry_after(&a), Some(60), "{}", a.headers);
    assert_eq!(again(&server, "SN-NEW").status, 202);
    let list = stdout(&fleetca(&server, &["request", "list"]));
    let line = list
        .lines()
        .find(|l| l.contains("SN-NEW"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains("pending") && line.contains("polls 2"),
        "{line}"
    );
    let id = line.split_whitespace().next().unwrap().to_string();

    let a = first_enrollment(&server, "SN-ROGUE");
    assert_eq!(a.status, 202, "{}", a.text());
    let list = stdout(&fleetca(&server, &["request", "list"]));
    let rogue = list
        .lines()
        .find(|l| l.contains("SN-ROGUE"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    // Pending requests survive a restart.
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    server.kill();
    let server = Server::spawn(dir);
    assert_eq!(again(&server, "SN-NEW").status, 202);

    // Approve: the next poll gets the certificate, and polling again returns the same one.
    let out = fleetca(&server, &["request", "approve", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = again(&server, "SN-NEW");
    assert_eq!(a.status, 200, "{}", a.text());
    let first = server.work("SN-NEW-1.pem");
    certs_only_to_pem(&a.body, &first);
    let a = again(&server, "SN-NEW");
    assert_eq!(a.status, 200, "{}", a.text());
    let second = server.work("SN-NEW-2.pem");
    certs_only_to_pem(&a.body, &second);
    assert_eq!(serial_of(&first), serial_of(&second), "issued once");
    let certs = stdout(&fleetca(&server, &["cert", "list", "--device", "SN-NEW"]));
    assert_eq!(
        certs.lines().filter(|l| l.contains("operational")).count(),
        1,
        "{certs}"
    );

    // Reject: 403 with the operator's reason; approving afterwards is refused.
    let out = fleetca(
        &server,
        &["request", "reject", &rogue, "--reason", "not one of ours"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = again(&server, "SN-ROGUE");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(
        a.text().contains("manual-approval") && a.text().contains("not one of ours"),
        "{}",
        a.text()
    );
    let out = fleetca(&server, &["request", "approve", "999999"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("approval request 999999 not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fleetca(&server, &["request", "approve", &rogue]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not pending"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The decisions are recorded, and the audit trail has the operator's actions.
    let log = stdout(&fleetca(
        &server,
        &["decision", "list", "--device", "SN-NEW"],
    ));
    assert!(log.contains("pending") && log.contains("issued"), "{log}");
    let audit = stdout(&fleetca(&server, &["audit", "list"]));
    assert!(
        audit.contains("approve") && audit.contains("reject"),
        "{audit}"
    );
}

#[test]
fn policy_test_evaluates_offline_and_writes_nothing() {
    let dir = Server::prepare(|config| {
        with_fragment(config, &example("ec-keys-only.toml"));
        with_fragment(config, &example("manual-approval.toml"));
    });
    assets_db(&data_file(&dir, "assets.db"), &[("SN-1", "team-a")]);
    let server = Server::spawn(dir);
    let (birth_key, birth_cert) = birth(&server, "SN-1");
    let _ = birth_key;
    let p256 = server.work("p256.key");
    new_key(&p256);
    let csr = server.work("p256.csr");
    pem_csr(&p256, "SN-1", &csr);
    let test = |csr: &Path, cert: &Path| {
        fleetca(
            &server,
            &[
                "policy",
                "test",
                "--csr",
                csr.to_str().unwrap(),
                "--client-cert",
                cert.to_str().unwrap(),
            ],
        )
    };
    let out = test(&csr, &birth_cert);
    let table = stdout(&out);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "technical       key-algorithm",
        "authentication  authentication",
        "eligibility     inventory",
        "eligibility     custom-rule",
        "approval        manual-approval",
    ] {
        assert!(table.contains(row), "{row}: {table}");
    }
    assert!(table.contains("outcome: issue to SN-1"), "{table}");

    // An Ed25519 key fails the example's CEL rule ec-keys-only; the table says so and the
    // exit status too.
    let ed = server.work("ed.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "ED25519",
        "-out",
        ed.to_str().unwrap(),
    ]);
    let ed_csr = server.work("ed.csr");
    pem_csr(&ed, "SN-1", &ed_csr);
    let out = test(&ed_csr, &birth_cert);
    let table = stdout(&out);
    assert!(!out.status.success(), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("custom-rule") && l.contains("ec-keys-only") && l.contains("FAIL")),
        "{table}"
    );

    // A file that is not a CSR is refused, naming the file.
    let garbage = server.work("garbage.csr");
    std::fs::write(&garbage, b"\x30\x03garbage").unwrap();
    let out = test(&garbage, &birth_cert);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("garbage.csr"), "{err}");

    // An unknown device would wait for approval; testing it opens no request and records
    // no decision.
    let (_, other_birth) = birth(&server, "SN-2");
    let other_csr = server.work("sn2.csr");
    pem_csr(&p256, "SN-2", &other_csr);
    let out = test(&other_csr, &other_birth);
    let table = stdout(&out);
    assert!(!out.status.success(), "{table}");
    assert!(table.contains("waiting for approval"), "{table}");
    let queue = stdout(&fleetca(&server, &["request", "list", "--all"]));
    assert_eq!(queue.lines().skip(1).count(), 0, "only the header: {queue}");
    // (The birth certificates issued with the admin CLI are decisions too.)
    let log = stdout(&fleetca(&server, &["decision", "list"]));
    assert_eq!(log.lines().skip(1).count(), 2, "under the header: {log}");
    assert!(!log.contains("simpleenroll"), "{log}");
}

#[test]
fn every_example_loads_and_bad_rules_are_refused_with_their_line() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rules");
    let mut names: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        // Each used as the README says: copied unedited into conf.d/.
        let dir = Server::prepare(|_| {});
        include_example(&dir, name);
        // What the examples reference, as an operator would provide it.
        std::fs::write(data_file(&dir, "cmdb.token"), TOKEN).unwrap();
        std::fs::write(
            data_file(&dir, "shipped-devices.csv"),
            "serial,model,batch\n",
        )
        .unwrap();
        assets_db(&data_file(&dir, "assets.db"), &[]);
        let out = check_config(&dir);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let dir = Server::prepare(|config| {
        with_fragment(
            config,
            "[[profiles.operational.rules]]\nname = \"typo\"\nexpression = 'request.key_algorithm ==== \"p256\"'\nmessage = \"x\"\n",
        );
    });
    let text = std::fs::read_to_string(data_file(&dir, "fleetca.toml")).unwrap();
    let line = text.lines().position(|l| l.contains("====")).unwrap() + 1;
    let out = check_config(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("rule 'typo'") && err.contains(&format!("line {line}")),
        "{err}"
    );

    // A profile naming a connector that does not exist is refused too.
    let dir = Server::prepare(|config| {
        with_fragment(
            config,
            "[profiles.operational]\nconnectors = [\"nowhere\"]\n",
        );
    });
    let out = check_config(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("connector 'nowhere' is not configured"),
        "{err}"
    );
}

#[test]
fn the_readme_shows_the_example_files_unchanged() {
    let readme = include_str!("../../../README.md");
    let mut shown = 0;
    for (i, _) in readme.match_indices("<!-- example: ") {
        let rest = &readme[i + "<!-- example: ".len()..];
        let path = &rest[..rest.find(" -->").unwrap()];
        let block = &rest[rest.find("```toml\n").unwrap() + "```toml\n".len()..];
        let block = &block[..block.find("```").unwrap()];
        let file = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(path),
        )
        .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(block, file, "README copy of {path} differs from the file");
        shown += 1;
    }
    let files =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rules"))
            .unwrap()
            .count();
    assert_eq!(shown, files, "every example file is in the README");
}
