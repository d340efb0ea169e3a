//! The device agent against the real server: short-lived certificates renewed again and
//! again, an outage longer than the retry interval and the certificate lifetime, a 403 from
//! the rules, and the `fleetca-agent` binary (exit codes, `status`, SIGTERM, SIGKILL at
//! random moments).
//!
//! Library-level tests drive `fleetca_agent::Agent` in-process (the same code the binary
//! runs), which keeps them deterministic to orchestrate. Binary-level tests run the
//! `fleetca-agent` executable: it belongs to another package, so Cargo gives no
//! `CARGO_BIN_EXE_` for it; the tests run `cargo build -p fleetca-agent` once (a no-op
//! when it is up to date) and take it from `target/<profile>/`, next to this test's
//! `deps/` directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetca_agent::status::StatusRecord;
use fleetca_agent::{Agent, Config, IdentityStore, OnceResult};
use fleetca_pki::{rcgen, CertificateInfo, KeyAlgorithm, SystemClock};

use common::{agent_bin, fleetca_bin, run_ok, Server};

/// Operational certificates of `validity`, not backdated. A device renewing seconds-long
/// certificates asks for hundreds a day: the default per-device rate limit (sized for
/// 90-day certificates) is raised to match, the point of these tests being the agent.
fn short_lived(config: &mut String, validity: &str) {
    *config = config
        .replacen(
            "validity = \"90d\"",
            &format!("validity = \"{validity}\""),
            1,
        )
        .replacen("backdate = \"5m\"", "backdate = \"0s\"", 1)
        .replacen(
            "rate_limit = { max = 10, per = \"1d\" }",
            "rate_limit = { max = 100000, per = \"1d\" }",
            1,
        );
}

/// A device: a birth key and certificate issued by the server's CLI, and a directory for
/// the agent's files.
struct Device {
    dir: PathBuf,
}

impl Device {
    fn new(server: &Server, serial: &str) -> Self {
        let dir = server.work(serial);
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyAlgorithm::P256.generate().unwrap();
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(rcgen::DnType::CommonName, serial);
        subject.push(rcgen::DnType::from_oid(&[2, 5, 4, 5]), serial);
        let csr = key.certificate_request(subject, Vec::new(), &[]).unwrap();
        std::fs::write(dir.join("birth.csr"), csr).unwrap();
        std::fs::write(dir.join("birth.key"), key.to_pkcs8_pem()).unwrap();
        run_ok(
            Command::new(fleetca_bin())
                .args(["device", "birth", "--serial", serial, "--csr"])
                .arg(dir.join("birth.csr"))
                .arg("--out")
                .arg(dir.join("birth.pem"))
                .arg("--data-dir")
                .arg(server.data()),
        );
        Self { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The agent configuration for the server at `addr`, with `extra` TOML appended to
    /// the [renewal] table and `hooks` as the [hooks] table.
    fn config_text(&self, addr: &str, root: &Path, renewal: &str, hooks: &str) -> String {
        let p = |f: &str| self.path(f).display().to_string();
        format!(
            r#"[server]
url = "https://{addr}/.well-known/est"
trust_anchor = "{root}"
timeout = "10s"

[identity]
birth_key = "{bk}"
birth_certificate = "{bc}"
key = "{k}"
certificate = "{c}"

[renewal]
check_interval = "5s"
retry_initial = "1s"
retry_max = "4s"
{renewal}

[hooks]
{hooks}
"#,
            root = root.display(),
            bk = p("birth.key"),
            bc = p("birth.pem"),
            k = p("state/device.key"),
            c = p("state/device.pem"),
        )
    }

    fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("agent.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn store(&self) -> IdentityStore {
        IdentityStore::new(self.path("state/device.key"), self.path("state/device.pem"))
    }

    fn status(&self) -> StatusRecord {
        StatusRecord::load(&self.path("state/device.pem.status.json"))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs the agent daemon in-process until `done` returns true or `limit` passes.
fn run_agent_until(config: Config, limit: Duration, mut done: impl FnMut() -> bool + Send) {
    runtime().block_on(async move {
        let mut agent = Agent::new(config, Arc::new(SystemClock)).unwrap();
        let deadline = Instant::now() + limit;
        let stop = async move {
            while !done() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        agent.run(stop).await.unwrap();
    });
}

/// A loopback TCP relay that counts connections, so that tests can count the agent's
/// requests and move the server behind a fixed address.
struct Relay {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<String>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = Self {
            addr,
            upstream: Arc::new(Mutex::new(Some(upstream.to_string()))),
            connections: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (upstream, connections, stop) = (
            Arc::clone(&relay.upstream),
            Arc::clone(&relay.connections),
            Arc::clone(&relay.stop),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let target = upstream.lock().unwrap().clone();
                let Some(server) = target.and_then(|t| TcpStream::connect(t).ok()) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        relay
    }

    fn point_to(&self, upstream: Option<&str>) {
        *self.upstream.lock().unwrap() = upstream.map(str::to_string);
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_secs(60)));
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// `fleetca serve` on an existing data directory (a restart), on a free loopback port.
fn serve_again(data: &Path) -> (Child, String) {
    let mut child = Command::new(fleetca_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("FLEETCA_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        assert!(Instant::now() < deadline, "server did not start");
        let line = lines.next().expect("server exited").unwrap();
        if let Some(rest) = line.strip_prefix("fleetca: EST listening on https://") {
            break rest.trim_end_matches("/.well-known/est/").to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn read_chain(path: &Path) -> CertificateInfo {
    let pem = std::fs::read(path).unwrap();
    let der = rustls_pemfile_first(&pem);
    CertificateInfo::from_der(&der).unwrap()
}

fn rustls_pemfile_first(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[test]
fn the_agent_enrolls_then_renews_three_times_each_with_a_new_key_and_runs_the_hook() {
    let server = Server::start_with(|c| short_lived(c, "12s"));
    let device = Device::new(&server, "agent-renew-0001");
    let hooks = device.path("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = format!(
        "command = [\"sh\", \"-c\", \"cp \\\"$FLEETCA_AGENT_CERTIFICATE\\\" {}/$FLEETCA_AGENT_SERIAL.pem\"]\ntimeout = \"10s\"",
        hooks.display()
    );
    let text = device.config_text(&server.addr, &server.root(), "", &hook);
    let config = Config::parse(&text).unwrap();
    let count = || std::fs::read_dir(&hooks).map(|d| d.count()).unwrap_or(0);
    // First enrollment, then a renewal every ~8 s (2/3 of 12 s, minus jitter).
    run_agent_until(config, Duration::from_secs(90), || count() >= 4);

    let mut certs: Vec<CertificateInfo> = std::fs::read_dir(&hooks)
        .unwrap()
        .map(|e| read_chain(&e.unwrap().path()))
        .collect();
    assert!(certs.len() >= 4, "the hook ran {} times", certs.len());
    certs.sort_by_key(|c| c.not_before);
    let keys: std::collections::BTreeSet<&Vec<u8>> = certs.iter().map(|c| &c.spki_der).collect();
    assert_eq!(keys.len(), certs.len(), "every certificate has its own key");
    for pair in certs.windows(2) {
        // Each renewal arrived while its predecessor was still valid.
        assert!(pair[1].not_before < pair[0].not_after, "{pair:?}");
        assert_eq!(pair[1].subject, pair[0].subject);
    }
    assert_eq!(certs[0].device_serial(), Some("agent-renew-0001"));
    // The active pair on disk is the newest certificate and its key; the key is 0600.
    let active = device.store().load().unwrap().unwrap();
    assert_eq!(active.info.spki_der, certs.last().unwrap().spki_der);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(device.path("state/device.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let status = device.status();
    assert_eq!(status.last_ok, Some(true), "{status:?}");
    assert_eq!(status.last_operation.as_deref(), Some("simplereenroll"));
    // The server's inventory links each renewal to its predecessor.
    let list = run_ok(
        Command::new(fleetca_bin())
            .args(["cert", "list", "--device", "agent-renew-0001", "--data-dir"])
            .arg(server.data()),
    );
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines().filter(|l| l.contains("operational")).count() >= 4,
        "{list}"
    );
}

#[test]
fn an_outage_longer_than_the_retry_interval_and_the_lifetime_recovers_without_a_storm() {
    let server = Server::start_with(|c| short_lived(c, "16s"));
    let device = Device::new(&server, "agent-outage-0001");
    let relay = Relay::start(&server.addr);
    let text = device.config_text(&relay.addr.to_string(), &server.root(), "", "");
    let config = Config::parse(&text).unwrap();
    let data = server.data();
    let store = device.store();
    let first_serial = Arc::new(Mutex::new(None));
    let mut phase = 0;
    let mut outage_started = Instant::now();
    let mut during_outage = 0;
    let mut restarted: Option<Child> = None;
    let (relay_ref, server_ref) = (&relay, &server);
    let serial_ref = Arc::clone(&first_serial);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            run_agent_until(config, Duration::from_secs(120), || {
                let current = store
                    .load()
                    .ok()
                    .flatten()
                    .map(|c| c.info.serial.to_string());
                match phase {
                    // Enrolled: stop the server (SIGKILL) for 40 s, longer than the retry
                    // cap (4 s) and than the certificate lifetime (16 s).
                    0 if current.is_some() => {
                        *serial_ref.lock().unwrap() = current;
                        server_ref.kill();
                        outage_started = Instant::now();
                        relay_ref.point_to(None);
                        phase = 1;
                    }
                    1 if outage_started.elapsed() >= Duration::from_secs(40) => {
                        during_outage = relay_ref.connections();
                        let (child, addr) = serve_again(&data);
                        relay_ref.point_to(Some(&addr));
                        restarted = Some(child);
                        phase = 2;
                    }
                    2 => {
                        let first = serial_ref.lock().unwrap().clone();
                        if current.is_some() && current != first {
                            return true;
                        }
                    }
                    _ => {}
                }
                false
            });
        });
    });
    if let Some(mut child) = restarted {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(phase, 2, "the outage phases did not complete");
    let after = device
        .store()
        .load()
        .unwrap()
        .expect("a certificate after the outage");
    assert_ne!(
        Some(after.info.serial.to_string()),
        first_serial.lock().unwrap().clone(),
        "the agent recovered with a new certificate"
    );
    // The old certificate expired during the outage: the agent fell back to the birth
    // certificate.
    let status = device.status();
    assert_eq!(
        status.last_operation.as_deref(),
        Some("simpleenroll"),
        "{status:?}"
    );
    assert_eq!(status.last_ok, Some(true));
    // 40 s of outage with back-off capped at 4 s: about 10-15 attempts, never a storm.
    assert!(
        during_outage <= 20,
        "{during_outage} connections during the outage"
    );
    let total = relay.connections();
    assert!(
        total - during_outage <= 3,
        "{} connections to recover",
        total - during_outage
    );
}

#[test]
fn a_403_from_the_rules_is_reported_and_not_hammered_even_across_restarts() {
    // The operational profile allows only P-384 keys; the agent makes P-256 keys.
    let server = Server::start_with(|c| {
        *c = c.replacen(
            "allowed_keys = [\"p256\", \"p384\", \"ed25519\", \"rsa2048\", \"rsa3072\", \"rsa4096\"]",
            "allowed_keys = [\"p384\"]",
            1,
        );
    });
    let device = Device::new(&server, "agent-denied-0001");
    let relay = Relay::start(&server.addr);
    let text = device.config_text(&relay.addr.to_string(), &server.root(), "", "");
    let rt = runtime();
    let once = || {
        rt.block_on(async {
            let config = Config::parse(&text).unwrap();
            let mut agent = Agent::new(config, Arc::new(SystemClock)).unwrap();
            agent.once().await.unwrap()
        })
    };
    let first = once();
    match &first {
        OnceResult::Denied(reason) => {
            assert!(reason.contains("key-algorithm"), "{reason}");
            assert!(reason.contains("403"), "{reason}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    assert_eq!(first.exit_code(), 3);
    assert_eq!(relay.connections(), 1);
    let status = device.status();
    assert_eq!(status.waiting_for.as_deref(), Some("denied"), "{status:?}");
    // A restart (cron running `once` again) remembers the refusal: no new request.
    for _ in 0..3 {
        assert!(matches!(once(), OnceResult::Denied(_)));
    }
    assert_eq!(relay.connections(), 1, "the refusal was not hammered");
    assert!(device.store().load().unwrap().is_none());

    // With a P-384 agent the same device enrolls.
    let p384 = text.replace("[identity]\n", "[identity]\nkey_algorithm = \"p384\"\n");
    std::fs::remove_file(device.path("state/device.pem.status.json")).unwrap();
    let result = rt.block_on(async {
        let mut agent = Agent::new(Config::parse(&p384).unwrap(), Arc::new(SystemClock)).unwrap();
        agent.once().await.unwrap()
    });
    assert_eq!(result, OnceResult::Renewed);
}

#[test]
fn a_request_waiting_for_approval_is_polled_unchanged_after_a_restart() {
    // Every operational enrollment waits for an operator; the device is told to come back
    // in 20 minutes (longer than `once` waits), as a cron-driven agent would be.
    let server = Server::start_with(|c| {
        *c = c.replacen(
            "# manual_approval = \"device.cmdb == null\"",
            "manual_approval = \"true\"\napproval_retry_after = \"20m\"",
            1,
        );
    });
    let device = Device::new(&server, "agent-approval-0001");
    let text = device.config_text(&server.addr, &server.root(), "", "");
    let rt = runtime();
    let once = || {
        rt.block_on(async {
            let mut agent =
                Agent::new(Config::parse(&text).unwrap(), Arc::new(SystemClock)).unwrap();
            agent.once().await.unwrap()
        })
    };
    let fleetca = |args: &[&str]| {
        let out = run_ok(
            Command::new(fleetca_bin())
                .args(args)
                .arg("--data-dir")
                .arg(server.data()),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    assert_eq!(once(), OnceResult::Pending);
    let pending = device.path("state/device.key.pending");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pending).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the pending request holds the new key");
    }
    // A restarted agent polls with the same request: still one request in the queue.
    assert_eq!(once(), OnceResult::Pending);
    let queue = fleetca(&["request", "list"]);
    let lines: Vec<&str> = queue.lines().skip(1).collect(); // under the header
    assert_eq!(lines.len(), 1, "{queue}");
    assert!(lines[0].contains("polls 2"), "{queue}");
    let id = lines[0].split_whitespace().next().unwrap();

    fleetca(&["request", "approve", id]);
    assert_eq!(once(), OnceResult::Renewed);
    assert!(!pending.exists(), "answered: the pending request is gone");
    let installed = device.store().load().unwrap().unwrap();
    assert_eq!(installed.info.device_serial(), Some("agent-approval-0001"));
    let all = fleetca(&["request", "list", "--all"]);
    assert!(
        all.lines().skip(1).count() == 1 && all.contains("issued"),
        "one request, issued: {all}"
    );
}

// ---- the binary ----------------------------------------------------------------------

fn agent_cmd(config: &Path, command: &str) -> Command {
    let mut cmd = Command::new(agent_bin());
    cmd.arg("--config").arg(config).arg(command);
    cmd
}

#[test]
fn the_binary_once_status_and_exit_codes() {
    let server = Server::start_with(|c| short_lived(c, "1h"));
    let device = Device::new(&server, "agent-cli-0001");
    let config = device.write_config(&device.config_text(&server.addr, &server.root(), "", ""));

    let out = agent_cmd(&config, "once").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("renewed"));
    let out = agent_cmd(&config, "once").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing due"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = agent_cmd(&config, "status").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Pretty JSON, one field a line (this crate does not depend on serde_json).
    let json = String::from_utf8(out.stdout).unwrap();
    for field in [
        "\"state\": \"valid\"",
        "\"device\": \"agent-cli-0001\"",
        "\"ok\": true",
        "\"operation\": \"simpleenroll\"",
        "\"waiting_for\": \"not-due\"",
        "\"renewal_point\": \"20",
        "\"expires_in_seconds\": ",
    ] {
        assert!(json.contains(field), "{field} missing from {json}");
    }

    // Configuration errors: exit 2, with the offending key named.
    let bad = device.path("bad.toml");
    std::fs::write(&bad, "[server]\nurl = \"https://x\"\nsurl = 1\n").unwrap();
    let out = agent_cmd(&bad, "once").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("surl"));

    // The server unreachable while a renewal is due: exit 1 (nothing is due here, so
    // use a fresh device directory).
    let down = Device::new(&server, "agent-cli-0002");
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = down.write_config(&down.config_text(&closed.to_string(), &server.root(), "", ""));
    let out = agent_cmd(&config, "once").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_binary_stops_cleanly_on_sigterm_and_survives_sigkill_at_random_moments() {
    let server = Server::start_with(|c| short_lived(c, "4s"));
    let device = Device::new(&server, "agent-kill-0001");
    let config = device.write_config(&device.config_text(&server.addr, &server.root(), "", ""));
    let log = device.path("agent.log");

    // SIGKILL at random moments while the agent renews every ~2.5 s; after each kill the
    // identity on disk, once repaired, is a matching pair.
    let mut kills = 0;
    let started = Instant::now();
    while kills < 8 && started.elapsed() < Duration::from_secs(90) {
        let mut child = agent_cmd(&config, "run")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let millis = 500 + u64::from(rand_u16() % 3000);
        std::thread::sleep(Duration::from_millis(millis));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let store = device.store();
        store.repair().unwrap();
        if let Some(id) = store.load().unwrap() {
            assert_eq!(id.info.device_serial(), Some("agent-kill-0001"));
        }
    }
    assert!(
        device.store().load().unwrap().is_some(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // SIGTERM: the daemon finishes its step and exits 0.
    let mut child = agent_cmd(&config, "run")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("stopping"), "{text}");
    assert!(device.store().load().unwrap().is_some());
}

/// A small random number without another dependency.
fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (nanos ^ (nanos >> 16)) as u16
}

// ---- the fleet simulator ---------------------------------------------------------------

#[test]
fn bench_fleet_renews_every_device_and_none_expires() {
    let server = Server::start_with(|c| short_lived(c, "9s"));
    let url = format!("https://{}/.well-known/est", server.addr);
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["bench", "fleet", "--url", &url, "--ca"])
            .arg(server.root())
            .arg("--data-dir")
            .arg(server.data())
            .args(["--devices", "20", "--lifetime", "9s", "--duration", "20s"]),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("enrollments: 20 "), "{report}");
    assert!(report.contains("failed attempts: 0 "), "{report}");
    assert!(
        report.contains("expired certificates: 0 device(s)")
            && report.contains("20 of 20 devices valid at the end"),
        "{report}"
    );
    // 20 s at a renewal every ~6 s: at least two renewals per device.
    let renewals: u64 = report
        .split("renewals: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(renewals >= 40, "{report}");

    // A --lifetime that is not the profile's validity is refused with the fix.
    let out = common::run(
        Command::new(fleetca_bin())
            .args(["bench", "fleet", "--url", &url, "--ca"])
            .arg(server.root())
            .arg("--data-dir")
            .arg(server.data())
            .args(["--devices", "1", "--lifetime", "60s", "--duration", "1s"]),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("set validity = \"1m\""));
}

/// `bench fleet --storm` (issue 21): every device starts with an operational certificate
/// due at one instant, renews once and stops; all of them renew, none expires, and the
/// inventory holds each device's renewal as the successor of its minted certificate.
#[test]
fn bench_fleet_storm_renews_every_device_once() {
    let server = Server::start_with(|c| {
        short_lived(c, "36s");
        *c = c.replacen(
            "max_connections_per_source = 64",
            "max_connections_per_source = 0",
            1,
        );
    });
    let url = format!("https://{}/.well-known/est", server.addr);
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["bench", "fleet", "--url", &url, "--ca"])
            .arg(server.root())
            .arg("--data-dir")
            .arg(server.data())
            .args(["--devices", "30", "--lifetime", "36s", "--duration", "30s"])
            .args(["--jitter", "0", "--storm", "--serial-prefix", "storm-"]),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("storm: 30 of 30 devices renewed"),
        "{report}"
    );
    assert!(report.contains("enrollments: 0 "), "{report}");
    assert!(
        report.contains("expired certificates: 0 device(s)")
            && report.contains("30 of 30 devices valid at the end"),
        "{report}"
    );
    let list = run_ok(
        Command::new(fleetca_bin())
            .args(["cert", "list", "--limit", "1000", "--data-dir"])
            .arg(server.data()),
    );
    let list = String::from_utf8_lossy(&list.stdout);
    let operational: Vec<&str> = list
        .lines()
        .filter(|l| l.contains("storm-") && l.contains("operational"))
        .collect();
    assert_eq!(operational.len(), 60, "{list}");
    let renewals = operational.iter().filter(|l| !l.ends_with(" -")).count();
    assert_eq!(renewals, 30, "{list}");
}

/// Issue 15 item 1: `renew_before` longer than the certificate lifetime made every new
/// certificate due at once, and one `once` renewed in a loop until the inventory held
/// tens of thousands of certificates. Now the renewal point is computed from the
/// certificate received and never earlier than a share of its lifetime (renew_at is used
/// instead, with a warning); `once` renews at most once; `status` says the same.
#[test]
fn renew_before_beyond_the_lifetime_renews_once_and_the_inventory_stays_bounded() {
    // The default limits stay as `init` writes them.
    let server =
        Server::start_with(|c| *c = c.replacen("validity = \"90d\"", "validity = \"1h\"", 1));
    let device = Device::new(&server, "agent-loop-0001");
    let config = device.write_config(&device.config_text(
        &server.addr,
        &server.root(),
        "renew_before = \"2h\"\njitter = 0.5",
        "",
    ));
    let run_once = || {
        let mut child = agent_cmd(&config, "once")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("`once` did not return within 60 s (renewing in a loop?)");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, text) = run_once();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("renewed"), "{text}");
    assert!(text.contains("renew_before is not shorter"), "{text}");
    let (code, text) = run_once();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("nothing due"), "{text}");

    // `status` agrees: not due, clamped.
    let out = agent_cmd(&config, "status").output().unwrap();
    let json = String::from_utf8(out.stdout).unwrap();
    for field in [
        "\"renewal_due\": false",
        "\"renewal_before_clamped\": true",
        "\"waiting_for\": \"not-due\"",
    ] {
        assert!(json.contains(field), "{field} missing from {json}");
    }

    // The daemon does not renew either.
    let log = device.path("agent.log");
    let mut child = agent_cmd(&config, "run")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    child.wait().unwrap();

    let list = run_ok(
        Command::new(fleetca_bin())
            .args(["cert", "list", "--device", "agent-loop-0001", "--data-dir"])
            .arg(server.data()),
    );
    let list = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        list.lines().filter(|l| l.contains("operational")).count(),
        1,
        "{list}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

/// Issue 15 item 5: a device refused once stayed locked out for `denied_retry` (6 h) after
/// the operator fixed the cause. Now the first wait is `denied_initial` (minutes),
/// `decision list` says when the device was last refused, and `fleetca-agent once --now`
/// asks at once. The operator's fix here is a rule removed and reloaded with SIGHUP.
#[test]
fn a_refused_device_retries_at_once_with_now_after_the_operator_fixes_the_cause() {
    let rule = "[[profiles.operational.rules]]\nname = \"not-yet\"\nexpression = 'device.serial != \"agent-resume-0001\"'\nmessage = \"not in service yet\"\n\n# Birth certificates (IDevID)";
    let server = Server::start_with(|c| *c = c.replace("# Birth certificates (IDevID)", rule));
    let device = Device::new(&server, "agent-resume-0001");
    let config = device.write_config(&device.config_text(&server.addr, &server.root(), "", ""));
    let out = agent_cmd(&config, "once").output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("not-yet"), "{text}");
    // The first refusal waits minutes, not hours.
    let status = device.status();
    assert_eq!(status.waiting_for.as_deref(), Some("denied"), "{status:?}");
    let next = time::OffsetDateTime::parse(
        status.next_check.as_deref().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let wait = next - time::OffsetDateTime::now_utc();
    assert!(wait <= time::Duration::minutes(6), "waits {wait}");
    // `decision list` says when the device was last refused, and how its agent retries.
    let list = run_ok(
        Command::new(fleetca_bin())
            .args([
                "decision",
                "list",
                "--device",
                "agent-resume-0001",
                "--data-dir",
            ])
            .arg(server.data()),
    );
    let notes = String::from_utf8_lossy(&list.stderr);
    assert!(
        notes.contains("agent-resume-0001: last refused") && notes.contains("once --now"),
        "{notes}"
    );

    // The operator removes the rule and reloads.
    let path = server.data().join("fleetca.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(rule, "# Birth certificates (IDevID)")).unwrap();
    run_ok(Command::new("kill").args(["-HUP", &server.pid().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.log().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without --now the agent keeps its wait (it does not hammer the server)...
    let out = agent_cmd(&config, "once").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not asking again before"));
    // ...with --now it asks, and is issued.
    let mut cmd = agent_cmd(&config, "once");
    cmd.arg("--now");
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("renewed"), "{text}");
    assert!(device.store().load().unwrap().is_some());
}

/// Issue 15 item 1, the daemon's last line of defence: a device whose clock runs ahead by
/// more than the renewal point sees every new certificate as due at once. The daemon used
/// to renew in a loop; it now stops after two renewals in a short window, says why, and
/// leaves a bounded number of certificates in the inventory.
#[test]
fn a_daemon_that_renews_twice_in_a_short_window_stops_and_reports() {
    let server =
        Server::start_with(|c| *c = c.replacen("validity = \"90d\"", "validity = \"1h\"", 1));
    let device = Device::new(&server, "agent-clock-0001");
    let text = device.config_text(&server.addr, &server.root(), "", "");
    let config = Config::parse(&text).unwrap();
    // 50 minutes ahead: past the renewal point (2/3 of 65 min, less jitter) of every
    // certificate the server issues now, and before its expiry.
    let ahead = fleetca_pki::ManualClock::new(
        time::OffsetDateTime::now_utc() + time::Duration::minutes(50),
    );
    let result = runtime().block_on(async move {
        let mut agent = Agent::new(config, Arc::new(ahead)).unwrap();
        tokio::time::timeout(
            Duration::from_secs(60),
            agent.run(std::future::pending::<()>()),
        )
        .await
    });
    let err = result
        .expect("the daemon kept running (renewing in a loop?)")
        .expect_err("the daemon stopped without an error");
    assert!(
        matches!(err, fleetca_agent::AgentError::RenewalLoop(_)),
        "{err}"
    );
    assert!(err.to_string().contains("renewed twice within"), "{err}");
    assert_eq!(
        device.status().waiting_for.as_deref(),
        Some("stopped-renewal-loop")
    );
    // One enrollment and two renewals, no more.
    let list = run_ok(
        Command::new(fleetca_bin())
            .args(["cert", "list", "--device", "agent-clock-0001", "--data-dir"])
            .arg(server.data()),
    );
    let list = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        list.lines().filter(|l| l.contains("operational")).count(),
        3,
        "{list}"
    );
}

/// Issue 18: a root rollover meets the agent's trust roll-over. `/cacerts` carries the new
/// root with its link certificate from the moment the rollover is recorded; the agent,
/// which trusts only the old root, adds the new one (verified through the link) and renews
/// onto the operational CA generation certified by the new root.
#[test]
fn the_agent_learns_the_new_root_of_a_root_rollover_and_renews_under_it() {
    let server = Server::start_with(|c| short_lived(c, "12s"));
    let device = Device::new(&server, "agent-root-0001");
    let anchors = device.path("anchors.pem");
    std::fs::copy(server.root(), &anchors).unwrap();
    run_ok(
        Command::new(fleetca_bin())
            .args([
                "ca",
                "rollover",
                "root",
                "--activate-at",
                "3s",
                "--data-dir",
            ])
            .arg(server.data()),
    );
    let text = device.config_text(&server.addr, &anchors, "", "");
    let config = Config::parse(&text).unwrap();
    let anchor_count = || {
        std::fs::read_to_string(&anchors)
            .map(|t| t.matches("BEGIN CERTIFICATE").count())
            .unwrap_or(0)
    };
    let store = device.store();
    let under_new_root = || {
        store.load().ok().flatten().is_some_and(|c| {
            c.info
                .issuer
                .iter()
                .any(|a| a.value.ends_with("Operational CA G2"))
        })
    };
    run_agent_until(config, Duration::from_secs(60), || {
        anchor_count() == 2 && under_new_root()
    });
    assert_eq!(anchor_count(), 2, "the agent did not add the new root");
    assert!(
        under_new_root(),
        "the agent never renewed under the new root"
    );
    let anchors_text = std::fs::read_to_string(&anchors).unwrap();
    assert!(
        anchors_text.contains(&std::fs::read_to_string(server.pki("root-ca-g2.pem")).unwrap()),
        "the added anchor is not the new root"
    );
    // The device's chain verifies against the old anchor through the NewWithOld link
    // certificate, and against the new root directly.
    let link_file = std::fs::read_to_string(server.pki("root-ca-g2-link.pem")).unwrap();
    let new_with_old = link_file
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    let untrusted = device.path("untrusted.pem");
    std::fs::write(
        &untrusted,
        format!(
            "{}{new_with_old}",
            std::fs::read_to_string(server.pki("operational-ca-g2.pem")).unwrap()
        ),
    )
    .unwrap();
    let cert = device.path("state/device.pem");
    for (anchor, untrusted) in [
        (server.root(), untrusted.clone()),
        (
            server.pki("root-ca-g2.pem"),
            server.pki("operational-ca-g2.pem"),
        ),
    ] {
        let out = run_ok(Command::new("openssl").args([
            "verify",
            "-CAfile",
            anchor.to_str().unwrap(),
            "-untrusted",
            untrusted.to_str().unwrap(),
            cert.to_str().unwrap(),
        ]));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": OK"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Issue 18: a fleet keeps renewing through an operational CA rollover and then a root
/// rollover, with no failed renewal and no device ever without a valid certificate; one
/// certificate lifetime after the root rollover every device holds a certificate of the
/// operational CA's third generation (under the new root).
#[test]
fn bench_fleet_renews_through_an_operational_and_a_root_rollover() {
    let server = Server::start_with(|c| short_lived(c, "9s"));
    let url = format!("https://{}/.well-known/est", server.addr);
    let bench = Command::new(fleetca_bin())
        .args(["bench", "fleet", "--url", &url, "--ca"])
        .arg(server.root())
        .arg("--data-dir")
        .arg(server.data())
        .args(["--devices", "20", "--lifetime", "9s", "--duration", "30s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rollover = |ca: &str| {
        run_ok(
            Command::new(fleetca_bin())
                .args(["ca", "rollover", ca, "--data-dir"])
                .arg(server.data()),
        )
    };
    std::thread::sleep(Duration::from_secs(4));
    rollover("operational");
    std::thread::sleep(Duration::from_secs(6));
    rollover("root");
    let out = bench.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("enrollments: 20 "), "{report}");
    assert!(report.contains("failed attempts: 0 "), "{report}");
    assert!(
        report.contains("expired certificates: 0 device(s)")
            && report.contains("20 of 20 devices valid at the end"),
        "{report}"
    );
    // The newest certificate of every device comes from generation 3 (the root rollover
    // re-certified generation 2 as 3 under the new root).
    let list = run_ok(
        Command::new(fleetca_bin())
            .args([
                "cert",
                "list",
                "--limit",
                "100000",
                "--format",
                "json",
                "--data-dir",
            ])
            .arg(server.data()),
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    let newest: Vec<&str> = rows
        .iter()
        .filter(|r| r["kind"] == "operational" && r["renewed_by"].is_null())
        .map(|r| r["serial"].as_str().unwrap())
        .collect();
    assert_eq!(newest.len(), 20, "{rows:?}");
    for serial in newest {
        let show = run_ok(
            Command::new(fleetca_bin())
                .args(["cert", "show", serial, "--data-dir"])
                .arg(server.data()),
        );
        let show = String::from_utf8_lossy(&show.stdout);
        assert!(show.contains("Operational CA G3"), "{show}");
    }
}
