//! `fleetca monitor run-once`, `fleetca report expiring`, `fleetca alerts list`, and the
//! monitor's background tasks in `fleetca serve`.

use std::path::Path;
use std::sync::Arc;

use fleetca_monitor::{ExpiryScan, Metrics, MonitorSettings, Outbox};
use fleetca_pki::{Clock, SystemClock};
use fleetca_store::{MonitoringStore, Store};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::config::Config;
use fleetca_pki::HumanDuration;

pub use crate::output::Format;
use crate::output::{summary, Listing};

fn load(data_dir: &Path) -> anyhow::Result<(MonitorSettings, Arc<dyn Store>)> {
    let (config, store) = crate::admin::load(data_dir)?;
    Ok((settings_of(&config), store))
}

/// The configured monitoring settings (metrics only when the section is absent).
pub fn settings_of(config: &Config) -> MonitorSettings {
    let mut settings = config
        .monitoring
        .clone()
        .unwrap_or_else(MonitorSettings::metrics_only);
    // The longest validity each CA issues: its generations escalate that long before
    // their end (plus the tier's window), before a renewal would get a shortened
    // certificate. Not for the manufacturing CA: birth certificates take what is left of
    // it by design (a 20-year CA issues 20-year birth certificates for its first month
    // only), so it escalates on its own end.
    for profile in config
        .profiles
        .values()
        .filter(|p| p.issuer != "manufacturing")
    {
        let longest = settings
            .ca_issued_validity
            .entry(profile.issuer.clone())
            .or_insert(time::Duration::ZERO);
        if !profile.no_expiry && profile.validity > *longest {
            *longest = profile.validity;
        }
    }
    // Generation 1 of each CA from the files of [ca], for CAs never rolled over.
    for role in crate::ca_cmd::CAS {
        match crate::ca_cmd::first_generation(config, role) {
            Ok(Some(g)) => settings.ca_configured.push(g),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(ca = role.name(), error = %format!("{e:#}"), "CA certificate unreadable; its end is not watched")
            }
        }
    }
    settings
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// `fleetca monitor run-once`: one scan, then one delivery pass.
pub fn run_once(data_dir: &Path) -> anyhow::Result<()> {
    let (settings, store) = load(data_dir)?;
    let settings = Arc::new(settings);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    runtime()?.block_on(async {
        let scan = ExpiryScan::new(
            Arc::clone(&store) as Arc<dyn fleetca_monitor::MonitorBackend>,
            Arc::clone(&clock),
            Arc::clone(&settings),
            None,
        );
        let report = scan.run().await?;
        outln!(
            "scan: {} candidate(s), {} opened, {} notified, {} resolved, {} message(s) queued, {} open",
            report.candidates,
            report.opened,
            report.notified,
            report.resolved,
            report.queued,
            report.open
        );
        let outbox = Outbox::new(store, clock, &settings, None)?;
        let sent = outbox.deliver_due().await?;
        outln!(
            "delivery: {} delivered, {} to retry, {} failed",
            sent.delivered, sent.retrying, sent.failed
        );
        Ok(())
    })
}

/// `fleetca report expiring`: the devices whose current certificate expires within
/// `within` (or expired within the lookback) without a successor, streamed.
pub fn report_expiring(
    data_dir: &Path,
    within: HumanDuration,
    format: Format,
) -> anyhow::Result<()> {
    let (settings, store) = load(data_dir)?;
    let now = OffsetDateTime::now_utc();
    runtime()?.block_on(async {
        let (tx, mut rx) = mpsc::channel(4);
        let horizon = now + within.to_time();
        let since = now - settings.expired_lookback;
        let reader = tokio::spawn(async move { store.expiry_candidates(horizon, since, tx).await });
        match format {
            Format::Table => outln!(
                "{:<24}  {:<42}  {:<20}  {:>8}  TIER",
                "DEVICE",
                "CERTIFICATE",
                "NOT AFTER",
                "DAYS"
            ),
            Format::Csv => {}
            Format::Json => outln!("["),
        }
        let mut first = true;
        let mut csv_out = csv::Writer::from_writer(std::io::stdout());
        if format == Format::Csv {
            csv_out.write_record(["device", "certificate", "not_after", "days_left", "tier"])?;
        }
        while let Some(chunk) = rx.recv().await {
            for c in chunk {
                let days = (c.not_after - now).whole_seconds() as f64 / 86_400.0;
                let tier = settings
                    .tier_for(c.not_after - now, c.not_after - c.not_before)
                    .and_then(|i| settings.tiers.get(i))
                    .map(|t| t.name.as_str())
                    .unwrap_or("-");
                match format {
                    Format::Table => outln!(
                        "{:<24}  {:<42}  {:<20}  {:>8.1}  {tier}",
                        c.device_serial,
                        c.certificate_serial,
                        rfc3339(c.not_after),
                        days
                    ),
                    Format::Csv => csv_out.write_record([
                        c.device_serial.as_str(),
                        c.certificate_serial.as_str(),
                        &rfc3339(c.not_after),
                        &format!("{days:.2}"),
                        tier,
                    ])?,
                    Format::Json => {
                        let row = serde_json::json!({
                            "device": c.device_serial,
                            "certificate": c.certificate_serial,
                            "not_after": rfc3339(c.not_after),
                            "days_left": (days * 100.0).round() / 100.0,
                            "tier": if tier == "-" { None } else { Some(tier) },
                        });
                        outln!("{}{row}", if first { "  " } else { ", " });
                    }
                }
                first = false;
            }
        }
        if format == Format::Json {
            outln!("]");
        }
        csv_out.flush()?;
        let n = reader.await??;
        eprintln!("{n} device(s)");
        Ok(())
    })
}

/// `fleetca alerts list`: open escalations (and, with `all`, resolved ones), their tier,
/// when notified and the delivery state of that notification.
pub fn alerts_list(data_dir: &Path, all: bool, limit: u32, format: Format) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let mut rows = runtime()?.block_on(store.alerts(all, limit.saturating_add(1)))?;
    let cut = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let time = |t: Option<OffsetDateTime>| t.map(rfc3339).into();
    let mut list = Listing::new(&[
        "kind",
        "device",
        "certificate",
        "not_after",
        "tier",
        "opened_at",
        "notified_at",
        "delivery",
        "resolved_at",
        "resolution",
    ]);
    for a in &rows {
        let e = &a.escalation;
        list.push(vec![
            e.kind.as_str().into(),
            e.device_serial.clone().into(),
            Some(e.certificate_serial.clone())
                .filter(|s| !s.is_empty())
                .into(),
            time(e.not_after),
            e.tier.clone().into(),
            rfc3339(e.opened_at).into(),
            time(e.notified_at),
            a.delivery.map(|d| d.as_str()).into(),
            time(e.resolved.as_ref().map(|r| r.0)),
            e.resolved.as_ref().map(|r| r.1.clone()).into(),
        ]);
    }
    list.print(format)?;
    summary(rows.len(), "alert(s)", cut, "raise --limit to see more");
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into())
}

/// The file in the data directory that keeps this node's identity across restarts.
const NODE_ID_FILE: &str = "node-id";

/// This node's name as a lease holder, the same across restarts so that a node coming
/// back after a crash takes its own leases (expiry scan, CRL building) back at once
/// instead of waiting for them to expire: `FLEETCA_NODE_ID` if set, else the identity kept
/// in `DATA/node-id` (host name and a random suffix, made at the first start). A copy of
/// the data directory on another host makes its own (the host name is compared), so
/// nodes that share a database never share an identity. If the file cannot be written,
/// an identity for this process only (with its id) is used, and said so.
pub fn node_id(data_dir: &Path) -> String {
    if let Some(id) = std::env::var("FLEETCA_NODE_ID")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        return id;
    }
    let host = hostname();
    let path = data_dir.join(NODE_ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut lines = text.lines();
        if let (Some(h), Some(id)) = (lines.next(), lines.next()) {
            if h == host && !id.trim().is_empty() {
                return id.trim().to_string();
            }
        }
    }
    let id = format!("{host}-{:08x}", rand::random::<u32>());
    match crate::files::write_atomic(&path, format!("{host}\n{id}\n").as_bytes(), 0o644, false) {
        Ok(()) => id,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "cannot keep the node identity; after a crash this node waits for its leases to expire");
            format!("{id}-{}", std::process::id())
        }
    }
}

/// Runs [`background`] with the settings in `settings`, restarting it when a configuration
/// reload (SIGHUP) sends new ones: the running one finishes its current scan or delivery,
/// hands its lease over and stops; the new one starts at once (same node identity, so it
/// takes the lease straight back). Ends when `stop` turns true.
pub async fn supervise(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    holder: String,
    mut settings: tokio::sync::watch::Receiver<Arc<MonitorSettings>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let current = Arc::clone(&settings.borrow_and_update());
        metrics.declare(&current);
        let (mut stop_rx, mut change_rx) = (stop.clone(), settings.clone());
        let stop_or_change = async move {
            tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => {}
                _ = change_rx.changed() => {}
            }
        };
        if current.enabled {
            background(
                Arc::clone(&store),
                Arc::clone(&clock),
                current,
                Arc::clone(&metrics),
                holder.clone(),
                stop_or_change,
            )
            .await;
        } else {
            metrics.set_scan_overdue(false);
            stop_or_change.await;
        }
        if *stop.borrow() {
            return;
        }
        if settings.has_changed().is_err() {
            // The sender is gone: no reload will come; run with what we have.
            return;
        }
        tracing::info!("monitoring restarted with the reloaded settings");
    }
}

/// Background tasks of `fleetca serve`: the expiry scan and outbox delivery, each run
/// only while this node holds its lease (one node runs each with a shared database).
pub async fn background(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Arc<MonitorSettings>,
    metrics: Arc<Metrics>,
    holder: String,
    stop: impl std::future::Future<Output = ()>,
) {
    let scan = ExpiryScan::new(
        Arc::clone(&store) as Arc<dyn fleetca_monitor::MonitorBackend>,
        Arc::clone(&clock),
        Arc::clone(&settings),
        Some(Arc::clone(&metrics)),
    );
    let outbox = match Outbox::new(
        Arc::clone(&store) as Arc<dyn MonitoringStore>,
        Arc::clone(&clock),
        &settings,
        Some(Arc::clone(&metrics)),
    ) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "monitoring: cannot build the channels; monitoring stopped");
            return;
        }
    };
    let lease = |interval: std::time::Duration| {
        time::Duration::try_from(interval).unwrap_or(time::Duration::HOUR) * 3
    };
    tokio::pin!(stop);
    let mut scans = tokio::time::interval(settings.scan_interval);
    let mut deliveries = tokio::time::interval(settings.deliver_interval);
    let mut held = false;
    // Since when this node should have scanned without a success (it holds the lease, or
    // cannot reach the database to know who does).
    let mut due_since: Option<std::time::Instant> = None;
    let overdue_after = settings.scan_interval * 2;
    let mut overdue_reported = false;
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = scans.tick() => {
                let now = clock.now();
                let taken = store
                    .acquire_lease(EXPIRY_SCAN_LEASE, &holder, now, now + lease(settings.scan_interval))
                    .await;
                if let Ok(t) = &taken {
                    if *t != held {
                        held = *t;
                        tracing::info!(%holder, held, "expiry scan lease {}", if held { "taken: this node scans" } else { "lost" });
                    }
                }
                let succeeded = match taken {
                    Ok(true) => match scan.run().await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::error!(error = %e, "expiry scan failed");
                            false
                        }
                    },
                    Ok(false) => {
                        // Another node scans; keep the gauges current anyway.
                        let _ = metrics.refresh_inventory(&*store, now).await;
                        true
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "expiry scan: lease failed");
                        false
                    }
                };
                if succeeded {
                    due_since = None;
                    if overdue_reported {
                        tracing::info!("expiry scan: running again");
                    }
                    overdue_reported = false;
                } else {
                    let since = *due_since.get_or_insert_with(std::time::Instant::now);
                    let overdue = since.elapsed() >= overdue_after;
                    if overdue {
                        tracing::warn!(
                            failing_for_seconds = since.elapsed().as_secs(),
                            scan_interval_seconds = settings.scan_interval.as_secs(),
                            "expiry scan overdue: no successful scan for more than twice the scan interval; expiring certificates are not being escalated"
                        );
                    }
                    overdue_reported = overdue;
                }
                metrics.set_scan_overdue(overdue_reported);
            }
            _ = deliveries.tick() => {
                if let Err(e) = outbox.deliver_due().await {
                    tracing::error!(error = %e, "notification delivery failed");
                }
            }
        }
    }
    if held {
        // Clean shutdown: hand the scan over at once instead of after the lease expires.
        let now = clock.now();
        let _ = store
            .acquire_lease(EXPIRY_SCAN_LEASE, &holder, now, now)
            .await;
    }
}

/// The lease the node running the expiry scan holds (for three scan intervals, renewed at
/// every scan: a node that dies is replaced after at most four intervals).
const EXPIRY_SCAN_LEASE: &str = "expiry-scan";
