//! The monitor against a real SQLite inventory, a real SMTP sink and a real webhook
//! receiver on loopback; a manual clock moves devices through the tiers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)] // test code

mod receivers;

use std::path::Path;
use std::sync::Arc;

use fleetca_monitor::{ExpiryScan, Metrics, MonitorSettings, Outbox, RawMonitoring};
use fleetca_pki::{Clock, ManualClock};
use fleetca_store::{
    CertificateKind, CertificateLedger, LifecycleChange, NewCertificate, RevocationStore,
    SqliteStore,
};
use receivers::{SmtpSink, WebhookReceiver};
use time::{Duration, OffsetDateTime};

const T0: i64 = 1_900_000_000;

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(T0).unwrap()
}

fn cert(
    serial: &str,
    device: &str,
    kind: CertificateKind,
    not_after: OffsetDateTime,
) -> NewCertificate {
    NewCertificate {
        serial: serial.to_ascii_lowercase(),
        device_serial: device.into(),
        issuer: "operational".into(),
        profile: "operational".into(),
        kind,
        not_before: t0() - Duration::days(80),
        not_after,
        spki_sha256: "ab".repeat(32),
        der: vec![0x30, 0x00],
        replaces: None,
        authenticated_by: None,
        limits: Default::default(),
        binding: Default::default(),
        issued_at: t0() - Duration::days(80),
        birth: None,
        decision: None,
        cmp_transaction: None,
    }
}

async fn device(store: &SqliteStore, serial: &str, expires_in: Duration) {
    store
        .record_issuance(cert(
            &format!("b-{serial}"),
            serial,
            CertificateKind::Birth,
            t0() + Duration::days(7000),
        ))
        .await
        .unwrap();
    store
        .record_issuance(cert(
            &format!("o-{serial}"),
            serial,
            CertificateKind::Operational,
            t0() + expires_in,
        ))
        .await
        .unwrap();
}

fn settings(dir: &Path, smtp: Option<&SmtpSink>, hook_url: &str) -> MonitorSettings {
    std::fs::write(dir.join("hmac.key"), "s3cret-hmac-key\n").unwrap();
    let smtp_port = smtp.and_then(|s| s.addr).map(|a| a.port()).unwrap_or(1);
    let text = format!(
        r#"
        digest_max_devices = 2
        [retry]
        initial = "30s"
        max_backoff = "10m"
        max_age = "1h"
        [[tiers]]
        name = "notice"
        before = "14d"
        channels = ["mail", "tickets"]
        [[tiers]]
        name = "warning"
        before = "3d"
        channels = ["tickets"]
        [[tiers]]
        name = "critical"
        before = "1d"
        channels = ["tickets"]
        [channels.mail]
        type = "smtp"
        server = "127.0.0.1"
        port = {smtp_port}
        security = "none"
        from = "fleetca <fleetca@example.com>"
        to = ["ops@example.com", "oncall@example.com"]
        timeout = "5s"
        [channels.tickets]
        type = "webhook"
        url = "{hook_url}"
        secret_file = "hmac.key"
        headers = {{ "X-Team" = "iot" }}
        timeout = "5s"
        "#
    );
    let raw: RawMonitoring = toml::from_str(&text).unwrap();
    raw.validate(dir).unwrap()
}

struct Rig {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    clock: Arc<ManualClock>,
    scan: ExpiryScan,
    outbox: Outbox,
    metrics: Arc<Metrics>,
}

fn rig(dir: tempfile::TempDir, settings: MonitorSettings) -> Rig {
    let store = SqliteStore::open(&dir.path().join("fleetca.db")).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let metrics = Arc::new(Metrics::new());
    let settings = Arc::new(settings);
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let scan = ExpiryScan::new(
        Arc::new(store.clone()),
        Arc::clone(&dyn_clock),
        Arc::clone(&settings),
        Some(Arc::clone(&metrics)),
    );
    let outbox = Outbox::new(
        Arc::new(store.clone()),
        dyn_clock,
        &settings,
        Some(Arc::clone(&metrics)),
    )
    .unwrap();
    Rig {
        _dir: dir,
        store,
        clock,
        scan,
        outbox,
        metrics,
    }
}

fn devices_of(hook: &receivers::Hook) -> Vec<String> {
    hook.json()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_move_up_the_tiers_and_each_digest_arrives_once() {
    let sink = SmtpSink::start().await;
    let hooks = WebhookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), Some(&sink), &hooks.url());
    let r = rig(dir, s);
    device(&r.store, "SN-1", Duration::days(10)).await;
    device(&r.store, "SN-2", Duration::days(10) + Duration::hours(1)).await;
    device(&r.store, "SN-3", Duration::days(2)).await;
    device(&r.store, "SN-4", Duration::days(60)).await;
    device(&r.store, "SN-5", Duration::days(9)).await;
    // SN-5 renewed before the first scan: never reported.
    let mut renewal = cert(
        "o2-SN-5",
        "SN-5",
        CertificateKind::Operational,
        t0() + Duration::days(90),
    );
    renewal.replaces = Some("o-sn-5".into());
    r.store.record_issuance(renewal).await.unwrap();

    let first = r.scan.run().await.unwrap();
    assert_eq!((first.opened, first.queued), (3, 3), "{first:?}");
    let sent = r.outbox.deliver_due().await.unwrap();
    assert_eq!(sent.delivered, 3);
    let mails = sink.received();
    assert_eq!(mails.len(), 1, "one notice digest by e-mail");
    let (rcpt, data) = &mails[0];
    assert_eq!(rcpt.len(), 2);
    assert!(
        data.contains("2 devices need attention at tier notice"),
        "{data}"
    );
    assert!(
        data.contains("SN-1") && data.contains("SN-2") && !data.contains("SN-3"),
        "{data}"
    );
    let got = hooks.received();
    assert_eq!(
        got.len(),
        2,
        "notice and warning digests to the ticket webhook"
    );
    let by_tier = |tier: &str, event: &str| {
        hooks
            .received()
            .into_iter()
            .filter(|h| h.json()["tier"] == tier && h.json()["event"] == event)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        devices_of(&by_tier("notice", "firing")[0]),
        ["SN-1", "SN-2"]
    );
    let warning = &by_tier("warning", "firing")[0];
    assert_eq!(devices_of(warning), ["SN-3"]);
    assert_eq!(warning.header("x-team"), Some("iot"));
    assert_eq!(
        warning.header("x-fleetca-signature").unwrap(),
        fleetca_monitor::signature(b"s3cret-hmac-key", warning.body.as_bytes())
    );

    // Scanning again changes nothing and sends nothing.
    r.clock.advance(Duration::hours(1));
    let again = r.scan.run().await.unwrap();
    assert_eq!(
        (again.opened, again.notified, again.queued),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!(r.outbox.deliver_due().await.unwrap().delivered, 0);

    // SN-1 renews; eight days later SN-2 is at warning, SN-3 expired (critical).
    let mut renewal = cert(
        "o2-SN-1",
        "SN-1",
        CertificateKind::Operational,
        t0() + Duration::days(100),
    );
    renewal.replaces = Some("o-sn-1".into());
    r.store.record_issuance(renewal).await.unwrap();
    r.clock.advance(Duration::days(8));
    let later = r.scan.run().await.unwrap();
    assert_eq!((later.notified, later.resolved), (2, 1), "{later:?}");
    r.outbox.deliver_due().await.unwrap();
    let mails = sink.received();
    assert_eq!(mails.len(), 2);
    assert!(
        mails[1].1.contains("1 device resolved from tier notice"),
        "{}",
        mails[1].1
    );
    assert!(
        mails[1].1.contains("SN-1") && mails[1].1.contains("renewed"),
        "{}",
        mails[1].1
    );
    let resolved = &by_tier("notice", "resolved")[0];
    assert_eq!(resolved.json()["devices"][0]["resolution"], "renewed");
    assert_eq!(devices_of(&by_tier("warning", "firing")[1]), ["SN-2"]);
    assert_eq!(devices_of(&by_tier("critical", "firing")[0]), ["SN-3"]);
    assert_eq!(hooks.received().len(), 5);

    // Decommissioning resolves too.
    r.store
        .change_lifecycle(
            "SN-3",
            LifecycleChange::Decommission {
                reason: "cessationOfOperation".into(),
            },
            r.clock.now(),
        )
        .await
        .unwrap();
    r.scan.run().await.unwrap();
    r.outbox.deliver_due().await.unwrap();
    let resolved = &by_tier("critical", "resolved")[0];
    assert_eq!(
        resolved.json()["devices"][0]["resolution"],
        "decommissioned"
    );

    // Metrics match the inventory.
    // (Gauges refresh with every scan; refresh once more after the last delivery.)
    r.metrics
        .refresh_inventory(&r.store, r.clock.now())
        .await
        .unwrap();
    let text = r.metrics.render();
    for line in [
        "fleetca_certificates{kind=\"operational\",status=\"valid\"} 7",
        "fleetca_certificates{kind=\"birth\",status=\"revoked\"} 1",
        "fleetca_certificates{kind=\"birth\",status=\"valid\"} 4",
        "fleetca_escalations_open{kind=\"expiry\",tier=\"warning\"} 1",
        "fleetca_notification_deliveries_total{channel=\"tickets\",result=\"delivered\"} 6",
        "fleetca_notification_deliveries_total{channel=\"mail\",result=\"delivered\"} 2",
        "fleetca_outbox_messages{state=\"delivered\",channel=\"tickets\"} 6",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_everything_once_it_is_back_and_nothing_twice_after_a_restart()
{
    let mut hooks = WebhookReceiver::down().await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), None, &hooks.url());
    let r = rig(dir, s.clone());
    for i in 0..5 {
        device(&r.store, &format!("SN-{i}"), Duration::days(10)).await;
    }
    device(&r.store, "SN-W", Duration::days(2)).await;
    r.scan.run().await.unwrap();
    // mail (nothing listens on port 1) and tickets both fail and back off.
    let down = r.outbox.deliver_due().await.unwrap();
    assert_eq!((down.delivered, down.retrying), (0, 3), "{down:?}");
    assert_eq!(
        r.outbox.deliver_due().await.unwrap().retrying,
        0,
        "not due before the back-off"
    );

    hooks.up().await;
    r.clock.advance(Duration::seconds(30));
    let back = r.outbox.deliver_due().await.unwrap();
    assert_eq!((back.delivered, back.retrying), (2, 1), "{back:?}");
    let got = hooks.received();
    assert_eq!(got.len(), 2);
    let notice = got.iter().find(|h| h.json()["tier"] == "notice").unwrap();
    // Digest: five devices, the first two listed.
    assert_eq!(notice.json()["count"], 5);
    assert_eq!(notice.json()["more"], 3);
    assert_eq!(devices_of(notice).len(), 2);

    // "Restart": a new store handle and outbox on the same database.
    let path = r.store.path().to_path_buf();
    let clock = Arc::clone(&r.clock);
    let dir = r._dir;
    drop((r.scan, r.outbox, r.store));
    let store = SqliteStore::open(&path).unwrap();
    let metrics = Arc::new(Metrics::new());
    let outbox = Outbox::new(
        Arc::new(store.clone()),
        clock.clone(),
        &s,
        Some(Arc::clone(&metrics)),
    )
    .unwrap();
    let scan = ExpiryScan::new(
        Arc::new(store.clone()),
        clock.clone(),
        Arc::new(s),
        Some(Arc::clone(&metrics)),
    );
    assert_eq!(scan.run().await.unwrap().queued, 0);
    clock.advance(Duration::minutes(2));
    assert_eq!(outbox.deliver_due().await.unwrap().delivered, 0);
    assert_eq!(hooks.received().len(), 2, "nothing twice");

    // The e-mail server never comes up: after max_age the message is failed and counted.
    clock.advance(Duration::hours(1));
    let gave_up = outbox.deliver_due().await.unwrap();
    assert_eq!(gave_up.failed, 1, "{gave_up:?}");
    let text = metrics.render();
    assert!(
        text.contains(
            "fleetca_notification_deliveries_total{channel=\"mail\",result=\"failed\"} 1"
        ),
        "{text}"
    );
    let alerts = fleetca_store::MonitoringStore::alerts(&store, false, 10)
        .await
        .unwrap();
    assert_eq!(alerts.len(), 6);
    let notice = alerts
        .iter()
        .find(|a| a.escalation.tier == "notice")
        .unwrap();
    assert_eq!(notice.delivery, Some(fleetca_store::DeliveryState::Failed));
    let warning = alerts
        .iter()
        .find(|a| a.escalation.tier == "warning")
        .unwrap();
    assert_eq!(
        warning.delivery,
        Some(fleetca_store::DeliveryState::Delivered)
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_still_on_their_birth_certificate_escalate() {
    let hooks = WebhookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), None, &hooks.url());
    s.birth_only = Some((Duration::days(30), "warning".into()));
    let r = rig(dir, s);
    // Recorded 80 days before t0 (issued_at): on its birth certificate for too long.
    r.store
        .record_issuance(cert(
            "b-SN-9",
            "SN-9",
            CertificateKind::Birth,
            t0() + Duration::days(7000),
        ))
        .await
        .unwrap();
    r.scan.run().await.unwrap();
    r.outbox.deliver_due().await.unwrap();
    let got = hooks.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["devices"][0]["kind"], "birth-only");
    // It enrolls: resolved.
    device(&r.store, "SN-9x", Duration::days(90)).await;
    r.store
        .record_issuance(cert(
            "o-SN-9",
            "SN-9",
            CertificateKind::Operational,
            t0() + Duration::days(90),
        ))
        .await
        .unwrap();
    r.scan.run().await.unwrap();
    r.outbox.deliver_due().await.unwrap();
    let got = hooks.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].json()["devices"][0]["resolution"], "enrolled");
    assert!(r.metrics.render().contains("fleetca_devices_birth_only 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_whose_renewals_keep_being_refused_escalate_until_they_renew() {
    use fleetca_store::{AuditEvent, AuditLog};
    let hooks = WebhookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), None, &hooks.url());
    s.failing_renewals = Some(fleetca_monitor::FailingRenewals {
        threshold: 3,
        window: Duration::days(1),
        tier: "critical".into(),
    });
    let r = rig(dir, s);
    // Three devices far from expiry; SN-R and SN-Q are refused three times in the last
    // hours, SN-P twice.
    for (device, refusals) in [("SN-R", 3), ("SN-Q", 3), ("SN-P", 2)] {
        device_of(&r.store, device).await;
        for i in 0..refusals {
            r.store
                .append(AuditEvent {
                    at: t0() - Duration::hours(3) + Duration::minutes(i),
                    actor: format!("device:{device}"),
                    action: "simplereenroll".into(),
                    subject: device.into(),
                    outcome: "refused".into(),
                    detail: format!("forbidden by rule subject: \"{device}\" attempt {i}"),
                })
                .await
                .unwrap();
        }
    }
    let first = r.scan.run().await.unwrap();
    assert_eq!((first.opened, first.queued), (2, 1), "{first:?}");
    r.outbox.deliver_due().await.unwrap();
    let got = hooks.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["tier"], "critical");
    assert_eq!(devices_of(&got[0]), ["SN-Q", "SN-R"]);
    let q = &got[0].json()["devices"][0];
    assert_eq!(q["kind"], "failing-renewals");
    assert_eq!(q["refusals"], 3);
    assert_eq!(q["last_action"], "simplereenroll");
    assert_eq!(
        q["last_error"],
        "forbidden by rule subject: \"SN-Q\" attempt 2"
    );
    assert!(r
        .metrics
        .render()
        .contains("fleetca_escalations_open{kind=\"failing-renewals\",tier=\"critical\"} 2"));

    // Nothing new on the next scan.
    r.clock.advance(Duration::minutes(10));
    assert_eq!(r.scan.run().await.unwrap().queued, 0);

    // SN-R renews; a day later SN-Q's refusals have left the window.
    let mut renewal = cert(
        "o2-SN-R",
        "SN-R",
        CertificateKind::Operational,
        t0() + Duration::days(90),
    );
    renewal.issued_at = r.clock.now();
    renewal.replaces = Some("o-sn-r".into());
    r.store.record_issuance(renewal).await.unwrap();
    let later = r.scan.run().await.unwrap();
    assert_eq!(later.resolved, 1, "{later:?}");
    r.clock.advance(Duration::days(1));
    assert_eq!(r.scan.run().await.unwrap().resolved, 1);
    r.outbox.deliver_due().await.unwrap();
    let resolved: Vec<_> = hooks
        .received()
        .into_iter()
        .filter(|h| h.json()["event"] == "resolved")
        .map(|h| h.json()["devices"][0].clone())
        .collect();
    assert_eq!(resolved.len(), 2);
    assert_eq!(resolved[0]["device"], "SN-R");
    assert_eq!(resolved[0]["resolution"], "renewed");
    assert_eq!(resolved[1]["device"], "SN-Q");
    assert_eq!(resolved[1]["resolution"], "no recent refusals");
}

/// A device with birth and operational certificates issued long ago, expiring far away.
async fn device_of(store: &SqliteStore, serial: &str) {
    device(store, serial, Duration::days(60)).await;
}

/// Issue 15 item 9: a device with day-long certificates that renews healthily at two
/// thirds of each lifetime, scanned every hour for three days. Fixed tiers (14d / 3d /
/// 1d) hold every such certificate from its first second, so each renewal opens and
/// resolves an escalation; tiers relative to the lifetime (25% / 15% / 5%) stay quiet,
/// and fire once the device stops renewing and passes 75% of its certificate's life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_tiers_stay_quiet_through_healthy_renewals_of_short_certificates() {
    async fn three_days(windows: [&str; 3]) -> (usize, usize, Rig) {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[[tiers]]\nname = \"notice\"\nbefore = \"{}\"\n\
             [[tiers]]\nname = \"warning\"\nbefore = \"{}\"\n\
             [[tiers]]\nname = \"critical\"\nbefore = \"{}\"\n",
            windows[0], windows[1], windows[2]
        );
        let raw: RawMonitoring = toml::from_str(&text).unwrap();
        let r = rig(dir, raw.validate(Path::new("/nonexistent")).unwrap());
        let day = Duration::days(1);
        let issue = |n: u32, from: OffsetDateTime| {
            let mut c = cert(
                &format!("d{n}"),
                "SN-D",
                CertificateKind::Operational,
                from + day,
            );
            c.not_before = from;
            c.issued_at = from;
            c.replaces = n.checked_sub(1).map(|p| format!("d{p}"));
            c
        };
        r.store
            .record_issuance(cert(
                "b-sn-d",
                "SN-D",
                CertificateKind::Birth,
                t0() + Duration::days(7000),
            ))
            .await
            .unwrap();
        r.store.record_issuance(issue(0, t0())).await.unwrap();
        let (mut opened, mut resolved) = (0, 0);
        for hour in 1..=72u32 {
            r.clock.advance(Duration::hours(1));
            // Renews at 16 h of each 24 h certificate (two thirds), the agent's default.
            if hour % 16 == 0 {
                r.store
                    .record_issuance(issue(hour / 16, r.clock.now()))
                    .await
                    .unwrap();
            }
            let report = r.scan.run().await.unwrap();
            opened += report.opened;
            resolved += report.resolved;
        }
        (opened, resolved, r)
    }

    let (opened, resolved, _) = three_days(["14d", "3d", "1d"]).await;
    assert!(
        opened >= 4 && resolved >= 4,
        "fixed tiers open and resolve on every renewal: {opened} opened, {resolved} resolved"
    );

    let (opened, resolved, r) = three_days(["25%", "15%", "5%"]).await;
    assert_eq!((opened, resolved), (0, 0), "healthy renewals raise nothing");
    // The device stops renewing: its last certificate (issued at hour 64) is at 58%
    // (hour 78, 14 h of 24 used) and in no tier; past 75% (hour 83) it is in `notice`.
    r.clock.advance(Duration::hours(6));
    assert_eq!(r.scan.run().await.unwrap().opened, 0);
    r.clock.advance(Duration::hours(5));
    let late = r.scan.run().await.unwrap();
    assert_eq!((late.opened, late.open), (1, 1), "{late:?}");
    let text = r.metrics.render();
    assert!(
        text.contains("fleetca_escalations_open{kind=\"expiry\",tier=\"notice\"} 1"),
        "{text}"
    );
}

/// Series of configured tiers exist at 0 before any escalation; after a reload that
/// renames a tier, the next refresh drops the old tier's series and keeps the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_series_follow_the_configured_tiers() {
    let tiers = |name: &str| {
        let raw: RawMonitoring =
            toml::from_str(&format!("[[tiers]]\nname = \"{name}\"\nbefore = \"20%\"\n")).unwrap();
        raw.validate(Path::new("/nonexistent")).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let r = rig(dir, tiers("old"));
    let old = "fleetca_escalations_open{kind=\"expiry\",tier=\"old\"} 0";
    let new = "fleetca_escalations_open{kind=\"expiry\",tier=\"new\"} 0";
    assert!(!r.metrics.render().contains(old), "not declared yet");
    r.metrics.declare(&tiers("old"));
    assert!(r.metrics.render().contains(old));
    r.metrics.refresh_inventory(&r.store, t0()).await.unwrap();
    assert!(r.metrics.render().contains(old));
    r.metrics.declare(&tiers("new"));
    r.metrics.refresh_inventory(&r.store, t0()).await.unwrap();
    let text = r.metrics.render();
    assert!(
        text.contains(new) && !text.contains("tier=\"old\""),
        "{text}"
    );
}
