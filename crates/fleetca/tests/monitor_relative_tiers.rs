//! Issue 15 item 9, end to end with a real `fleetca serve`, devices enrolled over EST with
//! `curl`, `fleetca monitor run-once` as a separate process and the monitor tests' real
//! webhook receiver on loopback:
//! - a tier relative to the certificate's lifetime (`before = "25%"`) stays quiet while a
//!   short-lived certificate is healthy and fires once its remaining life passes the
//!   threshold (a fixed tier such as the default `14d` holds such a certificate from its
//!   first second: every healthy renewal would open and resolve an escalation);
//! - every metric is exported from start-up, at 0, before anything happened.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
#[path = "../../monitor/tests/receivers/mod.rs"]
mod receivers;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use receivers::WebhookReceiver;

/// Operational certificates of 48 s, not backdated: 25% of the lifetime is left after 36 s,
/// 5% after 45.6 s.
const VALIDITY_SECS: u64 = 48;

fn edit(config: &mut String, from: &str, to: &str) {
    assert!(
        config.contains(from),
        "the default configuration has {from}"
    );
    *config = config.replacen(from, to, 1);
}

/// Relative tiers (25% and 5% of the lifetime; the middle tier stays fixed but narrow),
/// the webhook as the notice tier's channel, and no scan or delivery by `serve` itself
/// after its start (the scans below are `monitor run-once`).
fn configure(config: &mut String, hook_url: &str) {
    edit(
        config,
        "validity = \"90d\"",
        &format!("validity = \"{VALIDITY_SECS}s\""),
    );
    edit(config, "backdate = \"5m\"", "backdate = \"0s\"");
    edit(config, "scan_interval = \"15m\"", "scan_interval = \"1h\"");
    edit(
        config,
        "deliver_interval = \"30s\"",
        "deliver_interval = \"1h\"",
    );
    edit(
        config,
        "name = \"notice\"\nbefore = \"14d\"\nchannels = []",
        "name = \"notice\"\nbefore = \"25%\"\nchannels = [\"pager\"]",
    );
    edit(
        config,
        "name = \"warning\"\nbefore = \"3d\"",
        "name = \"warning\"\nbefore = \"1s\"",
    );
    edit(
        config,
        "name = \"critical\"\nbefore = \"1d\"\nchannels = []\n",
        &format!(
            "name = \"critical\"\nbefore = \"5%\"\nchannels = []\n\n\
             [monitoring.channels.pager]\ntype = \"webhook\"\nurl = \"{hook_url}\"\ntimeout = \"5s\"\n"
        ),
    );
}

fn run_once(server: &Server) -> String {
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["monitor", "run-once", "--data-dir"])
            .arg(server.data()),
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

#[test]
fn a_relative_tier_stays_quiet_while_healthy_and_fires_past_its_share_of_the_lifetime() {
    require_tools!("openssl", "curl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hooks = rt.block_on(WebhookReceiver::start());
    let server = Server::start_with(|c| configure(c, &hooks.url()));

    let (bkey, bcert) = birth(&server, "SN-R1");
    let before_enroll = Instant::now();
    enroll(
        &server,
        "simpleenroll",
        (&bcert, &bkey),
        "/CN=SN-R1/serialNumber=SN-R1",
        "SN-R1",
    );
    let enrolled = Instant::now();
    // notBefore is the issuance second, so at most a second before `before_enroll`.
    assert!(
        enrolled - before_enroll < Duration::from_secs(5),
        "enrollment took too long for the timing below"
    );

    // Fresh, and at about half of its life: in no tier (a fixed 14d tier would hold it).
    for at in [
        enrolled,
        enrolled + Duration::from_secs(VALIDITY_SECS / 2 - 4),
    ] {
        sleep_until(at);
        let out = run_once(&server);
        assert!(
            out.contains("0 opened") && out.contains("0 message(s) queued"),
            "{out}"
        );
    }
    assert!(hooks.received().is_empty(), "nothing sent while healthy");

    // Past 75% of the lifetime (36 s) and short of 95% (45.6 s): notice fires.
    sleep_until(enrolled + Duration::from_secs(VALIDITY_SECS * 3 / 4 + 1));
    let out = run_once(&server);
    assert!(
        out.contains("1 opened") && out.contains("1 delivered"),
        "{out}"
    );
    let got = hooks.received();
    assert_eq!(got.len(), 1, "one digest");
    let body = got[0].json();
    assert_eq!(body["event"], "firing");
    assert_eq!(body["tier"], "notice");
    assert_eq!(body["devices"][0]["device"], "SN-R1");
}

/// The value of one sample line (`name{labels}`) in a metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_metric_is_exported_from_start_up() {
    require_tools!("openssl", "curl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hooks = rt.block_on(WebhookReceiver::start());
    let server = Server::start_with(|c| configure(c, &hooks.url()));
    // Scraped as soon as the server says it listens: before any request, scan result or
    // delivery could have created a series.
    let out = run_ok(Command::new("curl").args([
        "-sS",
        "--max-time",
        "10",
        &format!("http://{}/metrics", server.metrics_addr),
    ]));
    let text = String::from_utf8(out.stdout).unwrap();
    for series in [
        "fleetca_est_requests_total{endpoint=\"simpleenroll\",status=\"200\"}",
        "fleetca_est_requests_total{endpoint=\"simplereenroll\",status=\"200\"}",
        "fleetca_est_request_duration_seconds_count{endpoint=\"simplereenroll\"}",
        "fleetca_est_password_attempts_total{result=\"failure\"}",
        "fleetca_connections_refused_total{listener=\"est\",reason=\"source_rate\"}",
        "fleetca_connections_refused_total{listener=\"metrics\",reason=\"max_connections\"}",
        "fleetca_notification_deliveries_total{channel=\"pager\",result=\"delivered\"}",
        "fleetca_notification_deliveries_total{channel=\"pager\",result=\"failed\"}",
        "fleetca_certificates{kind=\"operational\",status=\"valid\"}",
        "fleetca_certificates{kind=\"operational\",status=\"revoked\"}",
        "fleetca_certificates_expiring{within_days=\"1\"}",
        "fleetca_certificates_expiring{within_days=\"30\"}",
        "fleetca_escalations_open{kind=\"expiry\",tier=\"notice\"}",
        "fleetca_escalations_open{kind=\"failing-renewals\",tier=\"critical\"}",
        "fleetca_outbox_messages{state=\"pending\",channel=\"pager\"}",
        "fleetca_outbox_messages{state=\"failed\",channel=\"pager\"}",
        "fleetca_devices_birth_only",
        "fleetca_expiry_scan_overdue",
    ] {
        assert_eq!(
            sample(&text, series),
            Some(0.0),
            "{series} at 0 in:\n{text}"
        );
    }
    for family in [
        "fleetca_expiry_scan_duration_seconds",
        "fleetca_expiry_scan_last_timestamp_seconds",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{family} "))),
            "{family} in:\n{text}"
        );
    }
}

/// A share of the lifetime outside (0%, 100%) is refused at load, naming the tier, and
/// the same file with a valid share passes.
#[test]
fn a_percentage_outside_the_lifetime_is_refused_naming_the_tier() {
    for (before, refused) in [("120%", true), ("0%", true), ("25%", false)] {
        let dir = Server::prepare(|c| {
            edit(
                c,
                "name = \"warning\"\nbefore = \"3d\"",
                &format!("name = \"warning\"\nbefore = \"{before}\""),
            );
            // Mixed with the fixed notice (14d) before it and critical (1d) after it.
        });
        let out = run(Command::new(fleetca_bin())
            .args(["serve", "--check-config", "--data-dir"])
            .arg(dir.path().join("data")));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(!out.status.success(), refused, "{before}: {stderr}");
        if refused {
            assert!(
                stderr.contains("monitoring.tiers 'warning'.before")
                    && stderr.contains("greater than 0% and less than 100%"),
                "{before}: {stderr}"
            );
        }
    }
}
