//! The expiry scan: streams candidates from the store (expiring certificates, devices on
//! their birth certificate, devices whose requests keep being refused), classifies them
//! into tiers, diffs them against the open escalations, and commits the changes together
//! with the digests they cause (the outbox) in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use fleetca_pki::Clock;
use fleetca_store::{
    CertificateQuery, CertificateStatus, DeviceStatus, EscalationChange, EscalationKind,
    EscalationRecord, NewNotification, ScanCommit, StoreError,
};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::config::MonitorSettings;
use crate::digest::{Digest, DigestEntry, Event, Refusals, Shortlist};
use crate::metrics::Metrics;
use crate::MonitorError;

pub use fleetca_store::MonitorBackend;

/// The scan's horizon when a tier is relative to the lifetime: every current certificate
/// is a candidate. 9999-12-31T23:59:59Z, the notAfter of certificates without a
/// well-defined expiry (RFC 5280 §4.1.2.5), which thus stay out (the bound is exclusive).
pub const UNBOUNDED: OffsetDateTime = match OffsetDateTime::from_unix_timestamp(253_402_300_799) {
    Ok(t) => t,
    Err(_) => OffsetDateTime::UNIX_EPOCH,
};

/// What one scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Candidate rows read.
    pub candidates: u64,
    /// Escalations opened.
    pub opened: usize,
    /// Escalations moved up a tier or re-notified.
    pub notified: usize,
    /// Escalations resolved.
    pub resolved: usize,
    /// Messages queued.
    pub queued: usize,
    /// Open escalations after the scan.
    pub open: usize,
}

/// Runs expiry scans.
pub struct ExpiryScan {
    store: Arc<dyn MonitorBackend>,
    clock: Arc<dyn Clock>,
    settings: Arc<MonitorSettings>,
    metrics: Option<Arc<Metrics>>,
}

/// An open escalation's identity: its kind and `device serial NUL certificate serial` in
/// one boxed string (neither serial can hold a NUL). A scan holds one per open escalation,
/// hundreds of thousands in a fleet that stopped renewing, so it is kept small: 24 bytes
/// and one allocation without spare capacity.
type Key = (EscalationKind, Box<str>);

fn key(kind: EscalationKind, device_serial: &str, certificate_serial: &str) -> Key {
    let mut joined = String::with_capacity(device_serial.len() + 1 + certificate_serial.len());
    joined.push_str(device_serial);
    joined.push('\0');
    joined.push_str(certificate_serial);
    (kind, joined.into_boxed_str())
}

/// The device and certificate serials of a [`Key`].
fn serials(joined: &str) -> (&str, &str) {
    joined.split_once('\0').unwrap_or((joined, ""))
}

/// What the scan needs of an open escalation besides its key, packed (40 bytes): times
/// as Unix seconds, `i64::MIN` for none; the tier as its index, `u16::MAX` for a tier no
/// longer configured.
struct OpenEscalation {
    id: i64,
    not_after: i64,
    opened_at: i64,
    notified_at: i64,
    tier: u16,
}

const NONE_TIME: i64 = i64::MIN;

fn packed(t: Option<OffsetDateTime>) -> i64 {
    t.map_or(NONE_TIME, OffsetDateTime::unix_timestamp)
}

fn unpacked(t: i64) -> Option<OffsetDateTime> {
    (t != NONE_TIME)
        .then(|| OffsetDateTime::from_unix_timestamp(t).ok())
        .flatten()
}

impl OpenEscalation {
    fn new(e: &EscalationRecord, tier: Option<usize>) -> Self {
        Self {
            id: e.id,
            not_after: packed(e.not_after),
            opened_at: e.opened_at.unix_timestamp(),
            notified_at: packed(e.notified_at),
            tier: tier.and_then(|t| u16::try_from(t).ok()).unwrap_or(u16::MAX),
        }
    }

    fn tier(&self) -> Option<usize> {
        (self.tier != u16::MAX).then_some(usize::from(self.tier))
    }

    fn not_after(&self) -> Option<OffsetDateTime> {
        unpacked(self.not_after)
    }

    fn opened_at(&self) -> OffsetDateTime {
        unpacked(self.opened_at).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn notified_at(&self) -> Option<OffsetDateTime> {
        unpacked(self.notified_at)
    }
}

/// Per tier: (firing entries, resolved entries), each the count and the most urgent few
/// a digest shows (never the whole list: a digest lists `digest_max_devices`).
type ByTier = BTreeMap<usize, (Shortlist, Shortlist)>;

/// What one scan accumulates before its commit.
#[derive(Default)]
struct Pass {
    /// Open escalations not (yet) seen in this scan.
    open: HashMap<Key, OpenEscalation>,
    changes: Vec<EscalationChange>,
    by_tier: ByTier,
    /// Open escalations per tier after the scan (for "open" in digests and metrics).
    open_per_tier: HashMap<usize, u64>,
    report: ScanReport,
}

/// One streamed candidate, classified: its digest entry, the certificate expiry to
/// record, and its tier.
type Classified = (DigestEntry, Option<OffsetDateTime>, usize);

impl ExpiryScan {
    /// A scanner over `store`.
    pub fn new(
        store: Arc<dyn MonitorBackend>,
        clock: Arc<dyn Clock>,
        settings: Arc<MonitorSettings>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            store,
            clock,
            settings,
            metrics,
        }
    }

    /// One scan.
    pub async fn run(&self) -> Result<ScanReport, MonitorError> {
        let started = std::time::Instant::now();
        let now = self.clock.now();
        let s = &self.settings;
        let mut pass = Pass::default();
        self.load_open(&mut pass).await?;

        if !s.tiers.is_empty() {
            let horizon = s.horizon().map_or(UNBOUNDED, |h| now + h);
            let since = now - s.expired_lookback;
            self.stream(
                &mut pass,
                now,
                move |store, tx| async move { store.expiry_candidates(horizon, since, tx).await },
                |c| {
                    let tier = s.tier_for(c.not_after - now, c.not_after - c.not_before)?;
                    let entry = DigestEntry {
                        kind: EscalationKind::Expiry,
                        device_serial: c.device_serial,
                        certificate_serial: c.certificate_serial,
                        at: c.not_after,
                        refusals: None,
                        resolution: None,
                    };
                    Some((entry, Some(c.not_after), tier))
                },
            )
            .await?;
        }
        if !s.tiers.is_empty() {
            self.classify_cas(&mut pass, now).await?;
        }
        if let Some((after, tier_name)) = &s.birth_only {
            if let Some(tier) = s.tier_index(tier_name) {
                let before = now - *after;
                self.stream(
                    &mut pass,
                    now,
                    move |store, tx| async move { store.birth_only_devices(before, tx).await },
                    |d| {
                        let entry = DigestEntry {
                            kind: EscalationKind::BirthOnly,
                            device_serial: d.device_serial,
                            certificate_serial: String::new(),
                            at: d.since,
                            refusals: None,
                            resolution: None,
                        };
                        Some((entry, None, tier))
                    },
                )
                .await?;
            }
        }
        if let Some(f) = &s.failing_renewals {
            if let Some(tier) = s.tier_index(&f.tier) {
                let (since, threshold) = (now - f.window, f.threshold);
                self.stream(
                    &mut pass,
                    now,
                    move |store, tx| async move {
                        store.failing_devices(since, threshold, tx).await
                    },
                    |d| {
                        let entry = DigestEntry {
                            kind: EscalationKind::FailingRenewals,
                            device_serial: d.device_serial,
                            certificate_serial: String::new(),
                            at: d.last_refused_at,
                            refusals: Some(Refusals {
                                count: d.refusals,
                                action: d.last_action,
                                error: d.last_error,
                            }),
                            resolution: None,
                        };
                        Some((entry, None, tier))
                    },
                )
                .await?;
            }
        }
        let Pass {
            open,
            mut changes,
            mut by_tier,
            open_per_tier,
            mut report,
        } = pass;

        // Whatever is still in `open` was not seen: resolved.
        for ((kind, joined), e) in open {
            let (device, certificate) = serials(&joined);
            let resolution = self.resolution(kind, device, certificate, &e, now).await?;
            changes.push(EscalationChange::Resolve {
                id: e.id,
                resolution: resolution.clone(),
            });
            report.resolved += 1;
            if let Some(tier) = e.tier() {
                by_tier
                    .entry(tier)
                    .or_insert_with(|| Shortlist::pair(s.digest_max_devices))
                    .1
                    .push(DigestEntry {
                        kind,
                        device_serial: device.into(),
                        certificate_serial: certificate.into(),
                        at: e.not_after().unwrap_or_else(|| e.opened_at()),
                        refusals: None,
                        resolution: Some(resolution),
                    });
            }
        }

        let mut notifications = Vec::new();
        for (tier_index, (firing, resolved)) in by_tier {
            let Some(tier) = s.tiers.get(tier_index) else {
                continue;
            };
            let open_here = open_per_tier.get(&tier_index).copied().unwrap_or(0);
            for (event, list) in [(Event::Firing, firing), (Event::Resolved, resolved)] {
                let (entries, count) = list.into_sorted();
                if count == 0 {
                    continue;
                }
                let digest = Digest {
                    event,
                    tier: &tier.name,
                    entries: &entries,
                    count,
                    open: open_here,
                    scan_time: now,
                    max_devices: s.digest_max_devices,
                };
                for channel_name in &tier.channels {
                    let Some(channel) = s.channels.get(channel_name) else {
                        continue;
                    };
                    notifications.push(NewNotification {
                        channel: channel_name.clone(),
                        tier: tier.name.clone(),
                        event: event.as_str().into(),
                        payload: digest.payload(channel_name, channel),
                    });
                }
            }
        }
        report.queued = notifications.len();
        report.open = usize::try_from(open_per_tier.values().sum::<u64>()).unwrap_or(usize::MAX);
        if !changes.is_empty() || !notifications.is_empty() {
            self.store
                .commit_scan(ScanCommit {
                    at: now,
                    changes,
                    notifications,
                })
                .await?;
        }
        let elapsed = started.elapsed();
        tracing::info!(
            candidates = report.candidates,
            opened = report.opened,
            notified = report.notified,
            resolved = report.resolved,
            queued = report.queued,
            open = report.open,
            elapsed_ms = elapsed.as_millis() as u64,
            "expiry scan"
        );
        if let Some(m) = &self.metrics {
            // The gauges first, then the timestamp: a scrape that sees this scan's
            // timestamp sees the inventory as this scan left it.
            let refreshed = m.refresh_inventory(self.store.as_ref(), now).await;
            m.scan_finished(elapsed, now);
            refreshed?;
        }
        Ok(report)
    }

    /// The issuing generation of each CA, by the time left before the certificates it
    /// issues must be cut short (its end minus the longest validity it issues), in the
    /// tiers: a rollover is due long before any device gets a shortened certificate.
    async fn classify_cas(&self, pass: &mut Pass, now: OffsetDateTime) -> Result<(), MonitorError> {
        let mut generations = self.store.ca_generations().await?;
        for configured in &self.settings.ca_configured {
            if !generations.iter().any(|g| g.ca == configured.ca) {
                generations.push(configured.clone());
            }
        }
        generations.sort_by(|a, b| a.ca.cmp(&b.ca).then(a.generation.cmp(&b.generation)));
        let mut cas: Vec<&str> = generations.iter().map(|g| g.ca.as_str()).collect();
        cas.dedup();
        let candidates: Vec<(DigestEntry, Option<OffsetDateTime>, usize)> = cas
            .into_iter()
            .filter_map(|ca| {
                let active = generations
                    .iter()
                    .filter(|g| g.ca == ca && g.activate_at <= now && now < g.not_after)
                    .max_by_key(|g| g.generation)?;
                let issued = self
                    .settings
                    .ca_issued_validity
                    .get(ca)
                    .copied()
                    .unwrap_or(time::Duration::ZERO);
                let lifetime = active.not_after - active.not_before;
                let left = active.not_after - now - issued;
                let tier = self.settings.tier_for(left, lifetime)?;
                let serial = fleetca_pki::CertificateInfo::from_der(&active.certificate_der)
                    .map(|i| i.serial.to_hex())
                    .unwrap_or_default();
                Some((
                    DigestEntry {
                        kind: EscalationKind::CaExpiry,
                        device_serial: format!("ca:{ca}-{}", active.generation),
                        certificate_serial: serial,
                        at: active.not_after,
                        refusals: None,
                        resolution: None,
                    },
                    Some(active.not_after),
                    tier,
                ))
            })
            .collect();
        for (entry, not_after, tier) in candidates {
            pass.report.candidates += 1;
            self.visit(pass, entry, not_after, tier, now);
        }
        Ok(())
    }

    /// Runs one streamed store query on its own task and visits every row `classify`
    /// puts in a tier; memory holds a few chunks, never the whole result.
    async fn stream<T, Q, F>(
        &self,
        pass: &mut Pass,
        now: OffsetDateTime,
        query: Q,
        mut classify: impl FnMut(T) -> Option<Classified>,
    ) -> Result<(), MonitorError>
    where
        T: Send + 'static,
        Q: FnOnce(Arc<dyn MonitorBackend>, mpsc::Sender<Vec<T>>) -> F,
        F: Future<Output = Result<u64, StoreError>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel(4);
        let reader = tokio::spawn(query(Arc::clone(&self.store), tx));
        while let Some(chunk) = rx.recv().await {
            for row in chunk {
                if let Some((entry, not_after, tier)) = classify(row) {
                    self.visit(pass, entry, not_after, tier, now);
                }
            }
        }
        pass.report.candidates += reader
            .await
            .map_err(|e| MonitorError::Config(format!("scan task: {e}")))??;
        Ok(())
    }

    fn visit(
        &self,
        pass: &mut Pass,
        entry: DigestEntry,
        not_after: Option<OffsetDateTime>,
        tier: usize,
        now: OffsetDateTime,
    ) {
        let s = &self.settings;
        let Pass {
            open,
            changes,
            by_tier,
            open_per_tier,
            report,
        } = pass;
        let key = key(entry.kind, &entry.device_serial, &entry.certificate_serial);
        let max = s.digest_max_devices;
        match open.remove(&key) {
            None => {
                changes.push(EscalationChange::Open {
                    kind: entry.kind,
                    device_serial: entry.device_serial.clone(),
                    certificate_serial: entry.certificate_serial.clone(),
                    tier: s
                        .tiers
                        .get(tier)
                        .map(|t| t.name.clone())
                        .unwrap_or_default(),
                    not_after,
                });
                report.opened += 1;
                *open_per_tier.entry(tier).or_default() += 1;
                by_tier
                    .entry(tier)
                    .or_insert_with(|| Shortlist::pair(max))
                    .0
                    .push(entry);
            }
            Some(e) => {
                // Tiers only go up: a tier that was notified is never notified again
                // (unless its re-notify interval passed).
                let current = e.tier();
                let (target, notify) = match current {
                    Some(cur) if cur >= tier => {
                        let due = s
                            .tiers
                            .get(cur)
                            .and_then(|t| t.renotify)
                            .is_some_and(|r| e.notified_at().is_none_or(|at| at + r <= now));
                        (cur, due)
                    }
                    _ => (tier, true),
                };
                *open_per_tier.entry(target).or_default() += 1;
                if notify {
                    changes.push(EscalationChange::Notify {
                        id: e.id,
                        tier: s
                            .tiers
                            .get(target)
                            .map(|t| t.name.clone())
                            .unwrap_or_default(),
                    });
                    report.notified += 1;
                    by_tier
                        .entry(target)
                        .or_insert_with(|| Shortlist::pair(max))
                        .0
                        .push(entry);
                }
            }
        }
    }

    /// Reads the open escalations into `pass.open`, streamed: only their keys and what
    /// the scan compares stay in memory.
    async fn load_open(&self, pass: &mut Pass) -> Result<(), MonitorError> {
        let s = &self.settings;
        let (tx, mut rx) = mpsc::channel(4);
        let store = Arc::clone(&self.store);
        let reader = tokio::spawn(async move { store.stream_open_escalations(tx).await });
        while let Some(chunk) = rx.recv().await {
            for e in chunk {
                let tier = s.tier_index(&e.tier);
                pass.open.insert(
                    key(e.kind, &e.device_serial, &e.certificate_serial),
                    OpenEscalation::new(&e, tier),
                );
            }
        }
        reader
            .await
            .map_err(|e| MonitorError::Config(format!("scan task: {e}")))??;
        pass.open.shrink_to_fit();
        Ok(())
    }

    /// Why an escalation no longer applies.
    async fn resolution(
        &self,
        kind: EscalationKind,
        device: &str,
        certificate: &str,
        e: &OpenEscalation,
        now: OffsetDateTime,
    ) -> Result<String, MonitorError> {
        let device_status = self.store.device(device).await?.map(|d| d.status);
        if device_status == Some(DeviceStatus::Decommissioned) {
            return Ok("decommissioned".into());
        }
        if device_status == Some(DeviceStatus::Suspended) {
            return Ok("suspended".into());
        }
        if kind == EscalationKind::CaExpiry {
            return Ok("rolled over, or no longer the issuing generation".into());
        }
        if kind == EscalationKind::BirthOnly {
            return Ok(if device_status == Some(DeviceStatus::Active) {
                "enrolled".into()
            } else {
                "no longer on birth certificate".into()
            });
        }
        if kind == EscalationKind::FailingRenewals {
            // Open, it had no certificate after its refusals; one issued since ends it.
            let issued = self
                .store
                .certificates(&CertificateQuery {
                    device_serial: Some(device.to_string()),
                    ..CertificateQuery::default()
                })
                .await?;
            return Ok(if issued.iter().any(|c| c.issued_at >= e.opened_at()) {
                "renewed".into()
            } else {
                "no recent refusals".into()
            });
        }
        let Some(cert) = self.store.certificate(certificate).await? else {
            return Ok("certificate no longer in the inventory".into());
        };
        if cert.replaced_by.is_some() {
            return Ok("renewed".into());
        }
        if cert.status != CertificateStatus::Valid {
            return Ok("revoked".into());
        }
        if cert.not_after < now - self.settings.expired_lookback {
            return Ok("expired; no longer reported".into());
        }
        if self
            .settings
            .tier_for(cert.not_after - now, cert.not_after - cert.not_before)
            .is_none()
        {
            return Ok("no longer within any tier".into());
        }
        Ok("renewed".into())
    }
}
