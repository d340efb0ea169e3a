//! certmonger, an independent SCEP client: its daemon on a private socket (no D-Bus),
//! with its state in a temporary directory, driven with `getcert`; its helper
//! `scep-submit` for GetCACaps and GetCACert.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The helper certmonger runs for SCEP CAs.
pub const SCEP_SUBMIT: &str = "/usr/lib/certmonger/scep-submit";

pub struct Certmonger {
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Certmonger {
    /// Starts the daemon; it stops when dropped.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["requests", "cas", "config", "local", "tmp", "keys"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let socket = dir.path().join("sock");
        let mut cmd = Command::new("certmonger");
        cmd.args(["-n", "-L", "-d", "2", "-P"]).arg(&socket);
        let mut child = Self::with_env(dir.path(), &mut cmd)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if Instant::now() >= deadline {
                // Not left running behind the failed test.
                let _ = child.kill();
                let _ = child.wait();
                panic!("certmonger did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { dir, child }
    }

    fn variables(dir: &Path) -> Vec<(String, String)> {
        let path = |p: &str| dir.join(p).display().to_string();
        vec![
            ("CERTMONGER_REQUESTS_DIR".into(), path("requests")),
            ("CERTMONGER_CAS_DIR".into(), path("cas")),
            ("CERTMONGER_CONFIG_DIR".into(), path("config")),
            ("CERTMONGER_LOCAL_CA_DIR".into(), path("local")),
            ("CERTMONGER_TMPDIR".into(), path("tmp")),
            // Its own lock: another daemon (another test, the system's) holds the default.
            ("CERTMONGER_SYSTEM_LOCK_FILE".into(), path("lock")),
            (
                "CERTMONGER_PVT_ADDRESS".into(),
                format!("unix:path={}", path("sock")),
            ),
        ]
    }

    fn with_env<'a>(dir: &Path, cmd: &'a mut Command) -> &'a mut Command {
        cmd.envs(Self::variables(dir))
    }

    /// The environment that points `getcert` at this daemon.
    pub fn environment(&self) -> Vec<(String, String)> {
        Self::variables(self.dir.path())
    }

    /// `getcert ARGS` against this daemon.
    pub fn getcert(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("getcert");
        cmd.args(args);
        let out = Self::with_env(self.dir.path(), &mut cmd).output().unwrap();
        assert!(
            out.status.success(),
            "getcert {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A file under the daemon's key directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join("keys").join(name)
    }

    /// `getcert list -f CERT`.
    pub fn list(&self, cert: &Path) -> String {
        let out = self.getcert(&["list", "-f", cert.to_str().unwrap()]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the request tracking `cert` reaches one of `states`; returns the listing.
    pub fn wait_for(&self, cert: &Path, states: &[&str]) -> String {
        let lines: Vec<String> = states.iter().map(|s| format!("status: {s}\n")).collect();
        self.wait_for_text(cert, &lines.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Waits until the listing of the request tracking `cert` contains one of `texts`.
    pub fn wait_for_text(&self, cert: &Path, texts: &[&str]) -> String {
        let states = texts;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let listing = self.list(cert);
            if texts.iter().any(|t| listing.contains(t)) {
                return listing;
            }
            assert!(
                Instant::now() < deadline,
                "request for {} never reached {states:?}:\n{listing}\n{}",
                cert.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A pkiMessage the daemon made for the request tracking `cert` (DER): `scep_req`
    /// (its PKCSReq) or `scep_gic` (its GetCertInitial), from its request file.
    pub fn message(&self, cert: &Path, field: &str) -> Vec<u8> {
        use base64::Engine;
        let location = format!("cert_storage_location={}", cert.display());
        for entry in std::fs::read_dir(self.dir.path().join("requests")).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            if !text.lines().any(|l| l == location) {
                continue;
            }
            let start = format!("{field}=");
            let mut lines = text.lines().skip_while(|l| !l.starts_with(&start));
            let mut b64 = String::new();
            if lines.next().is_some() {
                // Continuation lines start with a space; the armor lines are skipped.
                for l in lines.take_while(|l| l.starts_with(' ')) {
                    let l = l.trim();
                    if !l.starts_with("-----") {
                        b64.push_str(l);
                    }
                }
            }
            return base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_else(|e| panic!("{field} of {}: {e}", cert.display()));
        }
        panic!("no certmonger request for {}", cert.display())
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Certmonger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
