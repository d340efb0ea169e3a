//! Test harness: a real `fleetca serve` process on 127.0.0.1:0 with a fresh data
//! directory, and helpers to drive the `openssl` and `curl` command-line tools.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod certmonger;
pub mod cmp;
pub mod scep;
pub mod softhsm;
pub mod strict_est;

pub fn fleetca_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleetca"))
}

/// The `fleetca-agent` executable. It belongs to another package, so Cargo gives no
/// `CARGO_BIN_EXE_` for it: build it once (a no-op when it is up to date) and take it from
/// `target/<profile>/`, next to the test's `deps/` directory.
pub fn agent_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            // Always ask Cargo (a no-op when up to date): a binary left over from an
            // earlier build would test old code.
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "fleetca-agent"]);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            assert!(
                cmd.status().unwrap().success(),
                "cannot build fleetca-agent"
            );
            let bin = profile_dir.join("fleetca-agent");
            assert!(bin.exists(), "{} not found", bin.display());
            bin
        })
        .clone()
}

/// Whether a command-line tool is installed; tests that need it say so and skip when not
/// (CI installs them, see `.ci/run`).
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg(if tool == "openssl" {
            "version"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[macro_export]
macro_rules! require_tools {
    ($($tool:literal),+) => {
        $(if !common::have($tool) {
            if std::env::var_os("CI").is_some() {
                panic!("{} is required in CI (install it in .ci/run)", $tool);
            }
            eprintln!("SKIPPED: {} is not installed", $tool);
            return;
        })+
    };
}

/// A running server. Killed on drop.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub addr: String,
    /// host:port of the plain-HTTP CRL/OCSP listener.
    pub status_addr: String,
    /// host:port of the plain-HTTP Prometheus listener (`GET /metrics`).
    pub metrics_addr: String,
    /// host:port of the admin API (HTTPS), when served (`--admin-listen`).
    pub admin_addr: String,
    /// host:port of the SCEP plain-HTTP listener, when `[scep] http_listen` is set.
    pub scep_addr: String,
    child: std::sync::Mutex<Child>,
    pub stderr_log: PathBuf,
    /// Environment of the server, also given to helpers that run `fleetca` on its data
    /// directory (`SOFTHSM2_CONF` for a PKI in a SoftHSM token).
    pub env: Vec<(String, PathBuf)>,
}

impl Server {
    /// Initialises a data directory (optionally editing its configuration) and starts
    /// `fleetca serve` on a free loopback port.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(edit_config: impl FnOnce(&mut String)) -> Self {
        Self::spawn(Self::prepare(edit_config))
    }

    /// An initialised data directory (in `DIR/data`), not yet served.
    pub fn prepare(edit_config: impl FnOnce(&mut String)) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        run_ok(
            Command::new(fleetca_bin())
                .args(["init", "--organization", "Test Fleet", "--data-dir"])
                .arg(&data),
        );
        let config_path = data.join("fleetca.toml");
        let mut config = std::fs::read_to_string(&config_path).unwrap();
        edit_config(&mut config);
        std::fs::write(&config_path, config).unwrap();
        dir
    }

    /// Serves a prepared directory.
    pub fn spawn(dir: tempfile::TempDir) -> Self {
        Self::spawn_with_env(dir, Vec::new())
    }

    /// Serves a prepared directory with these extra environment variables.
    pub fn spawn_with_env(dir: tempfile::TempDir, env: Vec<(String, PathBuf)>) -> Self {
        Self::spawn_with(dir, env, &[])
    }

    /// Serves `DIR/data` (prepared or not) with extra `serve` arguments (`--init`).
    pub fn spawn_with(dir: tempfile::TempDir, env: Vec<(String, PathBuf)>, extra: &[&str]) -> Self {
        let data = dir.path().join("data");
        let stderr_log = dir.path().join("server.log");
        let mut child = Command::new(fleetca_bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--status-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data)
            .args(extra)
            .env("FLEETCA_LOG_LEVEL", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut status_addr = String::new();
        let mut metrics_addr = String::new();
        let mut admin_addr = String::new();
        let mut scep_addr = String::new();
        let addr = loop {
            assert!(Instant::now() < deadline, "server did not start");
            let line = lines.next().expect("server exited").unwrap();
            if let Some(rest) = line.strip_prefix("fleetca: CRL and OCSP on http://") {
                status_addr = rest.split('/').next().unwrap_or_default().to_string();
            }
            if let Some(rest) = line.strip_prefix("fleetca: metrics on http://") {
                metrics_addr = rest.trim_end_matches("/metrics").to_string();
            }
            if let Some(rest) = line.strip_prefix("fleetca: admin API on https://") {
                admin_addr = rest.trim_end_matches("/api/v1/").to_string();
            }
            if let Some(rest) = line.strip_prefix("fleetca: SCEP on http://") {
                scep_addr = rest.trim_end_matches("/scep").to_string();
            }
            if let Some(rest) = line.strip_prefix("fleetca: EST listening on https://") {
                break rest.trim_end_matches("/.well-known/est/").to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            dir,
            addr,
            status_addr,
            metrics_addr,
            admin_addr,
            scep_addr,
            child: std::sync::Mutex::new(child),
            stderr_log,
            env,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn pki(&self, file: &str) -> PathBuf {
        self.data().join("pki").join(file)
    }

    pub fn root(&self) -> PathBuf {
        self.pki("root-ca.pem")
    }

    pub fn est(&self, path: &str) -> String {
        format!("https://{}/.well-known/est/{path}", self.addr)
    }

    pub fn work(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Adds factory station `name` for serials `SN-.*`; returns the directory holding its
    /// credential (`<name>.pem`, `<name>.key`).
    pub fn add_station(&self, name: &str) -> PathBuf {
        let out_dir = self.work("stations");
        run_ok(
            Command::new(fleetca_bin())
                .args([
                    "factory",
                    "add-station",
                    name,
                    "--serial-pattern",
                    "SN-.*",
                    "--out",
                ])
                .arg(&out_dir)
                .arg("--data-dir")
                .arg(self.data()),
        );
        out_dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Whether the process is still running.
    pub fn alive(&self) -> bool {
        self.child.lock().unwrap().try_wait().unwrap().is_none()
    }

    /// SIGKILL, no graceful shutdown.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL (a crash), then serve the same data directory again (on new ports).
    pub fn kill_and_restart(mut self) -> Self {
        self.kill();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let env = std::mem::take(&mut self.env);
        drop(self);
        Self::spawn_with_env(dir, env)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `fleetca account add NAME --any-serial --password-stdin` on the server's data directory,
/// the password written to its standard input.
pub fn account_add(server: &Server, name: &str, password: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(fleetca_bin())
        .args([
            "account",
            "add",
            name,
            "--any-serial",
            "--password-stdin",
            "--data-dir",
        ])
        .arg(server.data())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `openssl` with arguments, asserting success.
pub fn openssl(args: &[&str]) -> Output {
    run_ok(Command::new("openssl").args(args))
}

/// Generates an EC P-256 key.
pub fn new_key(path: &Path) {
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path.to_str().unwrap(),
    ]);
}

/// Writes a base64 DER CSR for `subj` (openssl `-subj` syntax) signed by `key`.
pub fn new_csr_b64(key: &Path, subj: &str, out: &Path) {
    let der = run_ok(Command::new("openssl").args([
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        subj,
        "-outform",
        "DER",
    ]))
    .stdout;
    std::fs::write(out, base64_lines(&der)).unwrap();
}

pub fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::new();
    for c in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(c).unwrap());
        s.push('\n');
    }
    s
}

/// An HTTP answer from curl.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs curl against the server (trusting its root) and returns status, raw headers and body.
pub fn curl(server: &Server, extra: &[&str], url: &str) -> Answer {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(server.root())
        .arg("-D")
        .arg(headers.path())
        .arg("-o")
        .arg(body.path())
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(url));
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Answer {
        status,
        headers: std::fs::read_to_string(headers.path()).unwrap(),
        body: std::fs::read(body.path()).unwrap(),
    }
}

/// Decodes a base64 certs-only body with `openssl pkcs7 -print_certs` into PEM at `out`.
pub fn certs_only_to_pem(body: &[u8], out: &Path) {
    let der_file = tempfile::NamedTempFile::new().unwrap();
    let b64_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(b64_file.path(), body).unwrap();
    openssl(&[
        "base64",
        "-d",
        "-in",
        b64_file.path().to_str().unwrap(),
        "-out",
        der_file.path().to_str().unwrap(),
    ]);
    openssl(&[
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        der_file.path().to_str().unwrap(),
        "-print_certs",
        "-out",
        out.to_str().unwrap(),
    ]);
}

/// Issues a birth certificate for `serial` with the admin CLI; returns (key, cert) paths.
pub fn birth(server: &Server, serial: &str) -> (PathBuf, PathBuf) {
    let key = server.work(&format!("{serial}-birth.key"));
    let cert = server.work(&format!("{serial}-birth.pem"));
    let csr = server.work(&format!("{serial}-birth.csr"));
    new_key(&key);
    openssl(&[
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        &format!("/CN={serial}/serialNumber={serial}"),
        "-out",
        csr.to_str().unwrap(),
    ]);
    run_ok(
        Command::new(fleetca_bin())
            .args(["device", "birth", "--serial", serial, "--csr"])
            .arg(&csr)
            .arg("--out")
            .arg(&cert)
            .arg("--data-dir")
            .arg(server.data())
            .envs(server.env.iter().map(|(k, v)| (k, v))),
    );
    (key, cert)
}

/// POSTs a base64 CSR file to an EST operation, with a client certificate (cert, key)
/// if given and any extra curl arguments (`-u user:pass`, headers).
pub fn post_csr(
    server: &Server,
    op: &str,
    client: Option<(&Path, &Path)>,
    csr: &Path,
    extra: &[&str],
) -> Answer {
    let data = format!("@{}", csr.display());
    let mut args: Vec<String> = vec![
        "-H".into(),
        "Content-Type: application/pkcs10".into(),
        "--data-binary".into(),
        data,
    ];
    if let Some((cert, key)) = client {
        args.extend([
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(server, &args, &server.est(op))
}

/// Makes a new key and a CSR for `subj`, POSTs it to `op` with the client certificate,
/// expects 200 and returns the new (key, certificate PEM) paths named after `name`.
pub fn enroll(
    server: &Server,
    op: &str,
    client: (&Path, &Path),
    subj: &str,
    name: &str,
) -> (PathBuf, PathBuf) {
    let key = server.work(&format!("{name}.key"));
    let csr = server.work(&format!("{name}.csr.b64"));
    let cert = server.work(&format!("{name}.pem"));
    new_key(&key);
    new_csr_b64(&key, subj, &csr);
    let a = post_csr(server, op, Some(client), &csr, &[]);
    assert_eq!(a.status, 200, "{op}: {}", a.text());
    certs_only_to_pem(&a.body, &cert);
    (key, cert)
}

/// The serial of a PEM certificate, lower-case hex as the inventory shows it.
pub fn serial_of(pem: &Path) -> String {
    let out = openssl(&["x509", "-in", pem.to_str().unwrap(), "-noout", "-serial"]).stdout;
    String::from_utf8(out)
        .unwrap()
        .trim()
        .trim_start_matches("serial=")
        .to_lowercase()
}
