//! Monitoring end to end: a real `fleetca serve`, devices enrolled over EST with `curl`,
//! `fleetca monitor run-once` as a separate process, and the real SMTP sink and webhook
//! receiver of the monitor's own tests on loopback. Operational certificates live ten
//! minutes, so every device is in the `critical` tier (1 day) as soon as it enrolls;
//! renewals go through the label `long` (90 days), outside every tier.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
#[path = "../../monitor/tests/receivers/mod.rs"]
mod receivers;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use receivers::{Hook, SmtpSink, WebhookReceiver};

const HMAC_KEY: &str = "e2e-hmac-key";

fn configure(config: &mut String, smtp_port: u16, hook_url: &str, hmac_file: &str) {
    let edits: [(&str, String); 7] = [
        // Operational certificates of ten minutes, not backdated: in the critical tier
        // (1d) from the start.
        ("validity = \"90d\"", "validity = \"10m\"".into()),
        ("backdate = \"5m\"", "backdate = \"0s\"".into()),
        // Renewals under /.well-known/est/long/ get 90 days: outside every tier.
        (
            "# sensors = \"operational\"",
            "long = \"long\"".into(),
        ),
        (
            "[profiles.birth]",
            "[profiles.long]\nissuer = \"operational\"\nvalidity = \"90d\"\nrenew_from = [\"operational\"]\nkey_usage = [\"digitalSignature\"]\nextended_key_usage = [\"clientAuth\"]\nallowed_keys = [\"p256\"]\nsubject = [{ attribute = \"CN\", value = \"{serial}\" }, { attribute = \"serialNumber\", value = \"{serial}\" }]\n\n[profiles.birth]".into(),
        ),
        // serve neither scans (after its start) nor delivers during the test: the
        // notifications below come from `monitor run-once`.
        ("scan_interval = \"15m\"", "scan_interval = \"1h\"".into()),
        ("deliver_interval = \"30s\"", "deliver_interval = \"1h\"".into()),
        (
            "name = \"critical\"\nbefore = \"1d\"\nchannels = []\n",
            format!(
                "name = \"critical\"\nbefore = \"1d\"\nchannels = [\"ops-mail\", \"pager\"]\n\n\
                 [monitoring.failing_renewals]\nthreshold = 3\nwindow = \"1h\"\ntier = \"warning\"\n\n\
                 [monitoring.channels.ops-mail]\ntype = \"smtp\"\nserver = \"127.0.0.1\"\n\
                 port = {smtp_port}\nsecurity = \"none\"\nfrom = \"fleetca <fleetca@example.com>\"\n\
                 to = [\"iot-ops@example.com\"]\ntimeout = \"5s\"\n\n\
                 [monitoring.channels.pager]\ntype = \"webhook\"\nurl = \"{hook_url}\"\n\
                 secret_file = \"{hmac_file}\"\ntimeout = \"5s\"\n"
            ),
        ),
    ];
    for (from, to) in edits {
        assert!(
            config.contains(from),
            "the default configuration has {from}"
        );
        *config = config.replacen(from, &to, 1);
    }
    // The warning tier pages too (failing renewals escalate into it).
    let warning = "name = \"warning\"\nbefore = \"3d\"\nchannels = []";
    assert!(config.contains(warning));
    *config = config.replacen(
        warning,
        "name = \"warning\"\nbefore = \"3d\"\nchannels = [\"pager\"]",
        1,
    );
}

fn fleetca(server: &Server, args: &[&str]) -> String {
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(args)
            .arg("--data-dir")
            .arg(server.data()),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `fleetca monitor run-once`; returns its summary.
fn run_once(server: &Server) -> String {
    fleetca(server, &["monitor", "run-once"])
}

fn devices_of(hook: &Hook) -> Vec<String> {
    hook.json()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap().to_string())
        .collect()
}

/// `GET /metrics` as text.
fn metrics(server: &Server) -> String {
    let out = run_ok(Command::new("curl").args([
        "-sS",
        "--max-time",
        "10",
        &format!("http://{}/metrics", server.metrics_addr),
    ]));
    String::from_utf8(out.stdout).unwrap()
}

/// The value of one sample line (`name{labels}`) in a metrics text.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits (at most a second) until the wall clock is in a later second than `t`: the
/// inventory records times to the second, and a refusal in the second of an issuance
/// does not count against the device.
fn next_second_after(t: SystemTime) {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let deadline = Instant::now() + Duration::from_millis(1500);
    while secs(SystemTime::now()) <= secs(t) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn expiry_renewal_and_failing_renewals_reach_mail_webhook_and_metrics() {
    require_tools!("openssl", "curl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sink = rt.block_on(SmtpSink::start());
    let hooks = rt.block_on(WebhookReceiver::start());
    let hmac_dir = tempfile::tempdir().unwrap();
    let hmac_file = hmac_dir.path().join("hmac.key");
    std::fs::write(&hmac_file, format!("{HMAC_KEY}\n")).unwrap();
    let smtp_port = sink.addr.unwrap().port();
    let mut server =
        Server::start_with(|c| configure(c, smtp_port, &hooks.url(), hmac_file.to_str().unwrap()));
    assert!(!server.metrics_addr.is_empty(), "metrics address printed");

    // Three devices: birth certificate, then a ten-minute operational certificate.
    let mut op = BTreeMap::new();
    for serial in ["SN-M1", "SN-M2", "SN-M3"] {
        let (bkey, bcert) = birth(&server, serial);
        let subj = format!("/CN={serial}/serialNumber={serial}");
        op.insert(
            serial,
            enroll(&server, "simpleenroll", (&bcert, &bkey), &subj, serial),
        );
    }
    let enrolled = SystemTime::now();

    // First scan: one digest per channel of the critical tier, listing all three.
    let out = run_once(&server);
    assert!(out.contains("3 opened"), "{out}");
    assert!(out.contains("2 delivered"), "{out}");
    let mails = sink.received();
    assert_eq!(mails.len(), 1, "one e-mail digest");
    let (rcpt, data) = &mails[0];
    assert_eq!(rcpt.len(), 1);
    assert!(
        data.contains("3 devices need attention at tier critical"),
        "{data}"
    );
    for serial in ["SN-M1", "SN-M2", "SN-M3"] {
        assert!(data.contains(serial), "{data}");
    }
    let got = hooks.received();
    assert_eq!(got.len(), 1, "one webhook digest");
    assert_eq!(got[0].json()["event"], "firing");
    assert_eq!(got[0].json()["tier"], "critical");
    assert_eq!(got[0].json()["count"], 3);
    let mut listed = devices_of(&got[0]);
    listed.sort();
    assert_eq!(listed, ["SN-M1", "SN-M2", "SN-M3"]);
    assert_eq!(
        got[0].header("x-fleetca-signature").unwrap(),
        fleetca_monitor::signature(HMAC_KEY.as_bytes(), got[0].body.as_bytes())
    );

    // Nothing changed: nothing is sent again.
    let out = run_once(&server);
    assert!(
        out.contains("0 opened") && out.contains("0 message(s) queued"),
        "{out}"
    );

    // SN-M1 renews (90 days, under the label `long`): a resolved message for it only.
    let (key1, cert1) = &op["SN-M1"];
    let (_, renewed) = enroll(
        &server,
        "long/simplereenroll",
        (cert1, key1),
        "/CN=SN-M1/serialNumber=SN-M1",
        "SN-M1-renewed",
    );
    let out = run_once(&server);
    assert!(
        out.contains("0 opened") && out.contains("1 resolved"),
        "{out}"
    );
    let mails = sink.received();
    assert_eq!(mails.len(), 2);
    assert!(
        mails[1].1.contains("1 device resolved from tier critical"),
        "{}",
        mails[1].1
    );
    assert!(mails[1].1.contains("SN-M1") && mails[1].1.contains("renewed"));
    assert!(!mails[1].1.contains("SN-M2") && !mails[1].1.contains("SN-M3"));
    let got = hooks.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].json()["event"], "resolved");
    assert_eq!(devices_of(&got[1]), ["SN-M1"]);
    assert_eq!(got[1].json()["devices"][0]["resolution"], "renewed");

    // SN-M3 asks three times to renew for another device's name: refused (403) each
    // time and audited; a success is not.
    next_second_after(enrolled);
    let (key3, cert3) = &op["SN-M3"];
    let csr = server.work("SN-M3-wrong.csr.b64");
    let wrong_key = server.work("SN-M3-wrong.key");
    new_key(&wrong_key);
    new_csr_b64(&wrong_key, "/CN=SN-M9/serialNumber=SN-M9", &csr);
    for _ in 0..3 {
        let a = post_csr(&server, "simplereenroll", Some((cert3, key3)), &csr, &[]);
        assert_eq!(a.status, 403, "{}", a.text());
    }
    let audit = fleetca(&server, &["audit", "list", "--actor", "device:SN-M3"]);
    let refused = audit
        .lines()
        .filter(|l| l.contains("device:SN-M3") && l.contains(" refused "))
        .count();
    assert_eq!(refused, 3, "{audit}");
    assert!(audit.contains("simplereenroll"), "{audit}");
    let audit = fleetca(&server, &["audit", "list", "--actor", "device:SN-M1"]);
    assert!(
        !audit.contains("SN-M1"),
        "successes are not audited: {audit}"
    );

    let out = run_once(&server);
    assert!(out.contains("1 opened"), "{out}");
    assert_eq!(sink.received().len(), 2, "the warning tier does not e-mail");
    let got = hooks.received();
    assert_eq!(got.len(), 3);
    let failing = got[2].json();
    assert_eq!(failing["tier"], "warning");
    assert_eq!(failing["event"], "firing");
    let device = &failing["devices"][0];
    assert_eq!(device["device"], "SN-M3");
    assert_eq!(device["kind"], "failing-renewals");
    assert_eq!(device["refusals"], 3);
    assert_eq!(device["last_action"], "simplereenroll");
    assert!(
        device["last_error"].as_str().unwrap().contains("SN-M9"),
        "{device}"
    );
    let alerts = fleetca(&server, &["alerts", "list"]);
    assert!(alerts.contains("failing-renewals"), "{alerts}");

    // The server's request counters saw the refusals.
    let text = metrics(&server);
    assert_eq!(
        sample(
            &text,
            "fleetca_est_requests_total{endpoint=\"simplereenroll\",status=\"403\"}"
        ),
        Some(3),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "fleetca_est_requests_total{endpoint=\"simpleenroll\",status=\"200\"}"
        ),
        Some(3),
        "{text}"
    );

    // Inventory gauges refresh with a scan in serve (at its start, then every
    // scan_interval): restart it and compare /metrics with `fleetca cert list`. The
    // series exist at 0 from the start, so wait for the scan's timestamp, which is
    // published after the gauges it refreshed.
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    server.kill();
    let server = Server::spawn(dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = metrics(&server);
        if sample(&text, "fleetca_expiry_scan_last_timestamp_seconds").unwrap_or(0) > 0 {
            break text;
        }
        assert!(Instant::now() < deadline, "no inventory gauges:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let list = fleetca(&server, &["cert", "list"]);
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in list.lines().skip(1) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        *counts
            .entry((cols[2].to_string(), cols[3].to_string()))
            .or_default() += 1;
    }
    assert_eq!(counts.values().sum::<u64>(), 7, "{list}"); // 3 birth, 4 operational
    for ((kind, status), n) in &counts {
        let series = format!("fleetca_certificates{{kind=\"{kind}\",status=\"{status}\"}}");
        assert_eq!(sample(&text, &series), Some(*n), "{series}\n{text}");
    }
    let expiring = fleetca(&server, &["cert", "list", "--expiring-within", "1d"]);
    let expiring = expiring.lines().skip(1).count() as u64;
    assert_eq!(expiring, 3, "the three ten-minute certificates");
    assert_eq!(
        sample(&text, "fleetca_certificates_expiring{within_days=\"1\"}"),
        Some(expiring),
        "{text}"
    );
    for (series, n) in [
        (
            "fleetca_escalations_open{kind=\"expiry\",tier=\"critical\"}",
            2,
        ),
        (
            "fleetca_escalations_open{kind=\"failing-renewals\",tier=\"warning\"}",
            1,
        ),
        ("fleetca_devices_birth_only", 0),
        (
            "fleetca_outbox_messages{state=\"delivered\",channel=\"pager\"}",
            3,
        ),
        (
            "fleetca_outbox_messages{state=\"delivered\",channel=\"ops-mail\"}",
            2,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(n), "{series}\n{text}");
    }
    assert!(serial_of(&renewed) != serial_of(cert1));
    // The restarted server found nothing new to send.
    assert_eq!((sink.received().len(), hooks.received().len()), (2, 3));
    drop(rt);
}
