//! Smoke tests of the benchmark tools against real processes on loopback: `fleetca bench
//! enroll` (every simulated device enrolls and re-enrolls, and the inventory holds what the
//! bench minted and the server issued) and `fleetca bench cmdb` (the HTTP CMDB the
//! inventory connector is benchmarked against). Speed is measured by running the benches,
//! never asserted here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn bench_enroll_enrolls_and_reenrolls_every_device() {
    let server = common::Server::start();
    let url = format!("https://{}/.well-known/est", server.addr);
    let out = common::run_ok(
        Command::new(common::fleetca_bin())
            .args(["bench", "enroll", "--url", &url, "--ca"])
            .arg(server.root())
            .arg("--data-dir")
            .arg(server.data())
            .args(["--devices", "20", "--concurrency", "4"]),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("requests: 40 ok, 0 failed"),
        "unexpected report:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("errors: none"), "{report}");

    let list = common::run_ok(
        Command::new(common::fleetca_bin())
            .args(["cert", "list", "--limit", "100000", "--data-dir"])
            .arg(server.data()),
    );
    let list = String::from_utf8_lossy(&list.stdout);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .filter(|cols: &Vec<&str>| cols.get(1).is_some_and(|d| d.starts_with("bench-")))
        .collect();
    let kind = |k: &str| rows.iter().filter(|cols| cols[2] == k).count();
    assert_eq!(kind("birth"), 20, "{list}");
    assert_eq!(kind("operational"), 40, "{list}");
    let devices: std::collections::BTreeSet<&str> = rows.iter().map(|cols| cols[1]).collect();
    assert_eq!(devices.len(), 20, "{list}");
    // Each device's first operational certificate was renewed by the second.
    let renewed = rows
        .iter()
        .filter(|cols| cols[2] == "operational" && cols.last() != Some(&"-"))
        .count();
    assert_eq!(renewed, 20, "{list}");
}

/// `--keep-alive N`: every device re-enrolls N times over one connection, each a full
/// issuance recorded in the inventory.
#[test]
fn bench_enroll_keep_alive_reenrolls_over_one_connection() {
    let server = common::Server::start_with(|c| {
        *c = c
            .replacen(
                "max_active_certificates = 3",
                "max_active_certificates = 100",
                1,
            )
            .replacen(
                "rate_limit = { max = 10, per = \"1d\" }",
                "rate_limit = { max = 100, per = \"1d\" }",
                1,
            );
    });
    let url = format!("https://{}/.well-known/est", server.addr);
    let out = common::run_ok(
        Command::new(common::fleetca_bin())
            .args(["bench", "enroll", "--url", &url, "--ca"])
            .arg(server.root())
            .arg("--data-dir")
            .arg(server.data())
            .args(["--devices", "5", "--concurrency", "2", "--keep-alive", "3"])
            .args(["--serial-prefix", "ka-"]),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("requests: 15 ok, 0 failed")
            && report.contains("3 per keep-alive connection"),
        "unexpected report:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = common::run_ok(
        Command::new(common::fleetca_bin())
            .args(["cert", "list", "--limit", "1000", "--data-dir"])
            .arg(server.data()),
    );
    let list = String::from_utf8_lossy(&list.stdout);
    let operational = list
        .lines()
        .filter(|l| l.contains("ka-") && l.contains("operational"))
        .count();
    // One simpleenroll (warm-up) and three renewals per device.
    assert_eq!(operational, 20, "{list}");
}

/// A running `fleetca bench cmdb` on a free loopback port. Killed on drop.
struct BenchCmdb {
    child: Child,
    /// host:port
    addr: String,
    stderr_log: PathBuf,
}

impl BenchCmdb {
    fn start(dir: &Path, unknown_prefix: &str) -> Self {
        let stderr_log = dir.join("cmdb.log");
        let mut child = Command::new(common::fleetca_bin())
            .args(["bench", "cmdb", "--listen", "127.0.0.1:0"])
            .args(["--unknown-prefix", unknown_prefix, "--report-every", "50ms"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("bench cmdb exited").unwrap();
        let addr = first
            .strip_prefix("cmdb: listening on http://")
            .and_then(|rest| rest.strip_suffix("/devices/{serial}"))
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            addr,
            stderr_log,
        }
    }

    /// The connector configuration that looks devices up here.
    fn connector(&self, cache_ttl: &str) -> String {
        format!(
            "[connectors.cmdb]\nkind = \"http\"\nurl = \"http://{}/devices/{{serial}}\"\ncache_ttl = \"{cache_ttl}\"\n",
            self.addr
        )
    }

    /// SIGTERM, then the last line it printed (the final counts).
    fn stop(mut self) -> String {
        common::run_ok(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "bench cmdb ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(&self.stderr_log).unwrap();
        log.lines().last().unwrap_or_default().to_string()
    }
}

impl Drop for BenchCmdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn bench_cmdb_answers_known_and_unknown_devices_through_the_connector() {
    let dir = tempfile::tempdir().unwrap();
    let cmdb = BenchCmdb::start(dir.path(), "GONE-");
    // The real HTTP connector is the client, as in `fleetca serve`.
    let config: std::collections::BTreeMap<String, fleetca_connectors::ConnectorConfig> =
        toml::from_str::<toml::Table>(&cmdb.connector("0s"))
            .unwrap()
            .remove("connectors")
            .unwrap()
            .try_into()
            .unwrap();
    let connector = config["cmdb"].build("cmdb", dir.path()).unwrap();
    let lookup = |serial: &'static str| {
        let directory = std::sync::Arc::clone(&connector.directory);
        async move { directory.lookup(serial).await.unwrap() }
    };

    let known = lookup("SN-0001").await.expect("SN-0001 is known");
    assert_eq!(known["serial"], "SN-0001");
    assert_eq!(known["status"], "active");
    // The connector percent-encodes the serial; the CMDB decodes it.
    let odd = lookup("SN 2/ü").await.expect("known");
    assert_eq!(odd["serial"], "SN 2/ü");
    assert_eq!(lookup("GONE-0001").await, None);

    // A path that is not a device: 404 too, counted apart.
    let mut other = 0;
    if common::have("curl") {
        let out = common::run_ok(
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("http://{}/elsewhere", cmdb.addr)),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
        other = 1;
    }
    assert_eq!(
        cmdb.stop(),
        format!(
            "cmdb: {} requests (2 known, 1 unknown, {other} other), at most 1 at once",
            3 + other
        )
    );
}

#[test]
fn bench_enroll_with_the_cmdb_connector_looks_each_device_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let cmdb = BenchCmdb::start(dir.path(), "GONE-");
    let connector = cmdb.connector("60s");
    let server = common::Server::start_with(|config| {
        *config = config.replacen(
            "[profiles.operational]\n",
            "[profiles.operational]\nconnectors = [\"cmdb\"]\n",
            1,
        );
        config.push_str(&connector);
    });
    let url = format!("https://{}/.well-known/est", server.addr);
    let bench = |prefix: &str, warm_up: bool| {
        let mut cmd = Command::new(common::fleetca_bin());
        cmd.args(["bench", "enroll", "--url", &url, "--ca"])
            .arg(server.root())
            .arg("--data-dir")
            .arg(server.data())
            .args([
                "--devices",
                "6",
                "--concurrency",
                "3",
                "--serial-prefix",
                prefix,
            ]);
        if warm_up {
            cmd.arg("--warm-up");
        }
        common::run(&mut cmd)
    };

    // Known devices: enrolled in the warm-up (one lookup each), re-enrolled timed with the
    // answers cached.
    let out = bench("bench-known-", true);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("warm-up: 6 simpleenroll ok, 0 failed"),
        "{report}"
    );
    assert!(report.contains("requests: 6 ok, 0 failed"), "{report}");
    assert!(report.contains("timed: simplereenroll only"), "{report}");

    // Unknown devices are refused by the inventory rule; their re-enrollment is skipped.
    let out = bench("GONE-", false);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("requests: 0 ok, 6 failed"), "{report}");
    assert!(report.contains("6 skipped"), "{report}");
    assert!(report.contains("HTTP 403"), "{report}");

    let counts = cmdb.stop();
    assert!(
        counts.starts_with("cmdb: 12 requests (6 known, 6 unknown, 0 other)"),
        "{counts}\n{}",
        server.log()
    );
}
