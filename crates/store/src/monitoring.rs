//! What the expiry monitor needs from the inventory: candidate rows (streamed, never
//! loaded whole), the open escalations, a transactional commit of one scan's changes with
//! the notifications they cause (the outbox), and the delivery bookkeeping of that outbox.
//!
//! The store decides nothing: which certificates count as "expiring", which tier they are
//! in and what a notification says are the monitor's business; the store only runs the
//! queries it is given parameters for and keeps the rows durable.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::StoreError;

/// A valid operational certificate that expires (or expired) within the scanned window,
/// that has no successor, that is its device's newest valid operational certificate, and
/// whose device is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryCandidate {
    /// Device serial number.
    pub device_serial: String,
    /// Certificate serial (lower-case hex).
    pub certificate_serial: String,
    /// Its start of validity (with `not_after`, its lifetime: tiers relative to the
    /// lifetime need it).
    pub not_before: OffsetDateTime,
    /// Its expiry.
    pub not_after: OffsetDateTime,
}

/// A device that has only its birth certificate (never enrolled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirthOnlyDevice {
    /// Device serial number.
    pub device_serial: String,
    /// When the device was first recorded (manufactured or first seen).
    pub since: OffsetDateTime,
}

/// A device whose recent requests keep being refused: at least the asked number of
/// refusals (audit events of actor `device:<serial>`, outcome `refused`) within the window,
/// all after the newest certificate issued to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingDevice {
    /// Device serial number.
    pub device_serial: String,
    /// Refusals counted (within the window, after the newest issuance).
    pub refusals: u64,
    /// The first of them.
    pub first_refused_at: OffsetDateTime,
    /// The last of them.
    pub last_refused_at: OffsetDateTime,
    /// The operation of the last refusal (`simplereenroll`, ...).
    pub last_action: String,
    /// Why the last one was refused (the error text recorded in the audit trail).
    pub last_error: String,
}

/// What an escalation is about.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EscalationKind {
    /// The device's current certificate nears (or passed) expiry without a successor.
    Expiry,
    /// The device never enrolled: it still has only its birth certificate.
    BirthOnly,
    /// The device's recent enrollment or renewal requests keep being refused.
    FailingRenewals,
    /// An issuing CA generation nears the point where the certificates it issues must
    /// be cut short (its end minus the longest validity it issues): time to roll it over.
    /// `device_serial` names the CA generation (`ca:operational-2`).
    CaExpiry,
}

impl EscalationKind {
    /// Stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expiry => "expiry",
            Self::BirthOnly => "birth-only",
            Self::FailingRenewals => "failing-renewals",
            Self::CaExpiry => "ca-expiry",
        }
    }
}

impl std::str::FromStr for EscalationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "expiry" => Ok(Self::Expiry),
            "ca-expiry" => Ok(Self::CaExpiry),
            "birth-only" => Ok(Self::BirthOnly),
            "failing-renewals" => Ok(Self::FailingRenewals),
            other => Err(format!("unknown escalation kind '{other}'")),
        }
    }
}

/// One escalation: a (kind, device, certificate) that needs attention, its current tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationRecord {
    /// Row id.
    pub id: i64,
    /// What it is about.
    pub kind: EscalationKind,
    /// Device serial number.
    pub device_serial: String,
    /// Certificate serial (empty for [`EscalationKind::BirthOnly`] and
    /// [`EscalationKind::FailingRenewals`]).
    pub certificate_serial: String,
    /// Current tier name.
    pub tier: String,
    /// Expiry of the certificate (expiry escalations).
    pub not_after: Option<OffsetDateTime>,
    /// When it was opened.
    pub opened_at: OffsetDateTime,
    /// When its current tier was last put in a notification.
    pub notified_at: Option<OffsetDateTime>,
    /// The scan that last notified it.
    pub notified_scan: Option<i64>,
    /// When it was resolved, and why.
    pub resolved: Option<(OffsetDateTime, String)>,
}

/// One change a scan makes to the escalations.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscalationChange {
    /// A new escalation, notified in this scan.
    Open {
        /// What it is about.
        kind: EscalationKind,
        /// Device serial number.
        device_serial: String,
        /// Certificate serial (empty for birth-only).
        certificate_serial: String,
        /// Tier.
        tier: String,
        /// Certificate expiry.
        not_after: Option<OffsetDateTime>,
    },
    /// Moved to a higher tier (or re-notified in its tier), notified in this scan.
    Notify {
        /// Escalation id.
        id: i64,
        /// Tier.
        tier: String,
    },
    /// Resolved (renewed, decommissioned, ...).
    Resolve {
        /// Escalation id.
        id: i64,
        /// Why.
        resolution: String,
    },
}

/// A message for one channel, queued in the same transaction as the scan that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// Channel name (from the configuration).
    pub channel: String,
    /// Tier name.
    pub tier: String,
    /// `firing` or `resolved`.
    pub event: String,
    /// The rendered message (channel-specific, opaque to the store).
    pub payload: String,
}

/// Everything one scan changes, committed at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCommit {
    /// When the scan ran.
    pub at: OffsetDateTime,
    /// Escalation changes.
    pub changes: Vec<EscalationChange>,
    /// Notifications to deliver (first attempt due at `at`).
    pub notifications: Vec<NewNotification>,
}

/// A queued notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Row id (also the delivery id receivers may deduplicate on).
    pub id: i64,
    /// The scan that queued it.
    pub scan_id: i64,
    /// Channel name.
    pub channel: String,
    /// Tier name.
    pub tier: String,
    /// `firing` or `resolved`.
    pub event: String,
    /// Rendered message.
    pub payload: String,
    /// When it was queued.
    pub created_at: OffsetDateTime,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// What became of a delivery attempt.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Accepted by the receiver.
    Delivered,
    /// Failed; try again at the given time.
    Retry {
        /// When.
        at: OffsetDateTime,
        /// What went wrong.
        error: String,
    },
    /// Failed for good (too old).
    Failed {
        /// What went wrong last.
        error: String,
    },
}

/// Delivery state of an outbox message (and of an escalation's last notification).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// Accepted by the receiver.
    Delivered,
    /// Given up.
    Failed,
}

impl DeliveryState {
    /// Stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(format!("unknown delivery state '{other}'")),
        }
    }
}

/// An escalation with the worst delivery state of the messages that notified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    /// The escalation.
    pub escalation: EscalationRecord,
    /// `None` when no message was queued for it (no channel on its tier).
    pub delivery: Option<DeliveryState>,
}

/// Counts for the inventory gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventorySummary {
    /// (kind, status, count) over all certificates.
    pub certificates: Vec<(String, String, u64)>,
    /// For each requested horizon (seconds): valid certificates with `now <= not_after <
    /// now + horizon`.
    pub expiring: Vec<(i64, u64)>,
    /// Devices that never enrolled (status manufactured).
    pub birth_only_devices: u64,
    /// (state, channel, count) over the outbox.
    pub outbox: Vec<(String, String, u64)>,
    /// (kind, tier, count) over open escalations.
    pub escalations: Vec<(String, String, u64)>,
}

/// What the expiry monitor needs from the store (a supertrait of [`crate::Store`], so an
/// `Arc<dyn Store>` upcasts to it).
pub trait MonitorBackend:
    MonitoringStore + crate::InventoryReader + crate::CaGenerationStore
{
}
impl<T: MonitoringStore + crate::InventoryReader + crate::CaGenerationStore + ?Sized> MonitorBackend
    for T
{
}

/// Named leases, so that one node of several runs each background job (expiry scan, CRL
/// publication). A holder renews its lease well before `until`; when it dies, the lease
/// expires and another node takes it at its next attempt. Times come from the nodes'
/// clocks, which must agree to well within a lease's length (NTP).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes or renews the named lease for `holder` until `until` if it is free, expired
    /// or already held by `holder`. Background jobs run only while they hold theirs.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError>;
}

/// Storage for the expiry monitor.
#[async_trait]
pub trait MonitoringStore: LeaseStore {
    /// Streams, in chunks, every [`ExpiryCandidate`] with `expired_since <= not_after <
    /// horizon`. Returns the number of rows sent. Stops early (without error) when the
    /// receiver is dropped.
    async fn expiry_candidates(
        &self,
        horizon: OffsetDateTime,
        expired_since: OffsetDateTime,
        out: mpsc::Sender<Vec<ExpiryCandidate>>,
    ) -> Result<u64, StoreError>;
    /// Streams, in chunks, devices still on their birth certificate recorded before
    /// `recorded_before`.
    async fn birth_only_devices(
        &self,
        recorded_before: OffsetDateTime,
        out: mpsc::Sender<Vec<BirthOnlyDevice>>,
    ) -> Result<u64, StoreError>;
    /// Streams, in chunks, the [`FailingDevice`]s: devices with at least `threshold`
    /// refused requests at or after `since`, counting only refusals after the newest
    /// certificate issued to the device (a success ends a streak). Decommissioned and
    /// suspended devices are left out: they are refused on purpose.
    async fn failing_devices(
        &self,
        since: OffsetDateTime,
        threshold: u32,
        out: mpsc::Sender<Vec<FailingDevice>>,
    ) -> Result<u64, StoreError>;
    /// Every open escalation.
    async fn open_escalations(&self) -> Result<Vec<EscalationRecord>, StoreError>;
    /// Streams every open escalation in chunks (the expiry scan: memory holds a few
    /// chunks, never the whole result).
    async fn stream_open_escalations(
        &self,
        out: mpsc::Sender<Vec<EscalationRecord>>,
    ) -> Result<u64, StoreError>;
    /// Escalations for reports, open first, then the most recently resolved, with the
    /// delivery state of their last notification.
    async fn alerts(
        &self,
        include_resolved: bool,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, StoreError>;
    /// Commits one scan: escalation changes and queued notifications in one transaction.
    /// Returns the scan id.
    async fn commit_scan(&self, scan: ScanCommit) -> Result<i64, StoreError>;
    /// Claims up to `limit` pending messages due at `now` that no one else holds, leasing
    /// them until `lease_until` (so one node sends each; a crashed sender's lease expires).
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    /// Records the outcome of an attempt and releases the lease.
    async fn record_delivery(
        &self,
        id: i64,
        outcome: DeliveryOutcome,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Counts for the metrics gauges.
    async fn inventory_summary(
        &self,
        now: OffsetDateTime,
        horizons: &[i64],
    ) -> Result<InventorySummary, StoreError>;
}

/// Backend-generic tests of [`MonitoringStore`], instantiated per backend.
#[cfg(test)]
pub(crate) mod conformance {
    use time::Duration;

    use super::*;
    use crate::conformance::certificate;
    use crate::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    async fn candidates<S: MonitoringStore>(store: &S, horizon: i64) -> Vec<ExpiryCandidate> {
        let (tx, mut rx) = mpsc::channel(4);
        let (n, rows) = tokio::join!(store.expiry_candidates(at(horizon), at(-1000), tx), async {
            let mut all = Vec::new();
            while let Some(chunk) = rx.recv().await {
                all.extend(chunk);
            }
            all
        });
        assert_eq!(n.unwrap() as usize, rows.len());
        let mut rows = rows;
        rows.sort_by(|a, b| a.device_serial.cmp(&b.device_serial));
        rows
    }

    pub(crate) async fn expiry_candidates_skip_renewed_revoked_and_superseded<S>(store: S)
    where
        S: MonitoringStore + CertificateLedger + RevocationStore,
    {
        let op = CertificateKind::Operational;
        for (serial, device, not_after) in [
            ("a1", "SN-A", 100), // expiring, no successor: reported
            ("b1", "SN-B", 100), // renewed by b2 (link)
            ("c1", "SN-C", 100), // revoked
            ("d1", "SN-D", 100), // older than d2 (no link): superseded
            ("d2", "SN-D", 200),
            ("e1", "SN-E", 5000), // beyond the horizon
            ("f1", "SN-F", 100),  // device decommissioned
        ] {
            store
                .record_issuance(certificate(
                    &format!("0{device}"),
                    device,
                    CertificateKind::Birth,
                    9000,
                ))
                .await
                .ok();
            store
                .record_issuance(certificate(serial, device, op, not_after))
                .await
                .unwrap();
        }
        let mut b2 = certificate("b2", "SN-B", op, 4000);
        b2.replaces = Some("b1".into());
        store.record_issuance(b2).await.unwrap();
        store.revoke("c1", "keyCompromise", at(1)).await.unwrap();
        store
            .change_lifecycle(
                "SN-F",
                LifecycleChange::Decommission {
                    reason: "cessationOfOperation".into(),
                },
                at(1),
            )
            .await
            .unwrap();
        let rows = candidates(&store, 1000).await;
        let found: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.device_serial.as_str(), r.certificate_serial.as_str()))
            .collect();
        assert_eq!(found, vec![("SN-A", "a1"), ("SN-D", "d2")]);
        assert_eq!(rows[0].not_after, at(100));

        // Birth-only devices: none of these enrolled? All did except none; add one.
        store
            .record_issuance(certificate("g0", "SN-G", CertificateKind::Birth, 9000))
            .await
            .unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let (n, got) = tokio::join!(store.birth_only_devices(at(10), tx), async {
            let mut all = Vec::new();
            while let Some(c) = rx.recv().await {
                all.extend(c);
            }
            all
        });
        assert_eq!(n.unwrap(), 1);
        assert_eq!(got[0].device_serial, "SN-G");
        assert_eq!(got[0].since, at(0));
    }

    /// Tiers relative to the lifetime need both ends of the validity: a candidate carries
    /// its notBefore as recorded, not the issuance time nor a constant.
    pub(crate) async fn expiry_candidates_carry_the_lifetime<S>(store: S)
    where
        S: MonitoringStore + CertificateLedger,
    {
        let op = CertificateKind::Operational;
        for (serial, device, not_before, not_after) in [
            ("h1", "SN-H", -3600, 400), // an hour-long certificate (and a bit)
            ("i1", "SN-I", 300, 360),   // a one-minute certificate, valid from the future
        ] {
            store
                .record_issuance(certificate(
                    &format!("0{device}"),
                    device,
                    CertificateKind::Birth,
                    9000,
                ))
                .await
                .unwrap();
            let mut c = certificate(serial, device, op, not_after);
            c.not_before = at(not_before);
            store.record_issuance(c).await.unwrap();
        }
        let rows = candidates(&store, 1000).await;
        let got: Vec<(&str, OffsetDateTime, OffsetDateTime)> = rows
            .iter()
            .map(|r| (r.certificate_serial.as_str(), r.not_before, r.not_after))
            .collect();
        assert_eq!(
            got,
            vec![("h1", at(-3600), at(400)), ("i1", at(300), at(360))]
        );
    }

    pub(crate) async fn scans_commit_escalations_and_outbox_atomically<S>(store: S)
    where
        S: MonitoringStore,
    {
        let scan = store
            .commit_scan(ScanCommit {
                at: at(0),
                changes: vec![EscalationChange::Open {
                    kind: EscalationKind::Expiry,
                    device_serial: "SN-1".into(),
                    certificate_serial: "aa".into(),
                    tier: "notice".into(),
                    not_after: Some(at(100)),
                }],
                notifications: vec![
                    NewNotification {
                        channel: "mail".into(),
                        tier: "notice".into(),
                        event: "firing".into(),
                        payload: "{}".into(),
                    },
                    NewNotification {
                        channel: "hook".into(),
                        tier: "notice".into(),
                        event: "firing".into(),
                        payload: "{}".into(),
                    },
                ],
            })
            .await
            .unwrap();
        let open = store.open_escalations().await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].tier, "notice");
        assert_eq!(open[0].notified_scan, Some(scan));
        assert_eq!(open[0].notified_at, Some(at(0)));
        // The streamed listing (the expiry scan's) gives the same records.
        let (tx, mut rx) = mpsc::channel(4);
        assert_eq!(store.stream_open_escalations(tx).await.unwrap(), 1);
        let mut streamed = Vec::new();
        while let Some(chunk) = rx.recv().await {
            streamed.extend(chunk);
        }
        assert_eq!(streamed, open);

        // A second Open of the same (kind, device, certificate) is a conflict, and nothing
        // of that scan is kept.
        let dup = store
            .commit_scan(ScanCommit {
                at: at(1),
                changes: vec![EscalationChange::Open {
                    kind: EscalationKind::Expiry,
                    device_serial: "SN-1".into(),
                    certificate_serial: "aa".into(),
                    tier: "warning".into(),
                    not_after: Some(at(100)),
                }],
                notifications: vec![NewNotification {
                    channel: "mail".into(),
                    tier: "warning".into(),
                    event: "firing".into(),
                    payload: "{}".into(),
                }],
            })
            .await;
        assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

        // Claims: both messages once; a second claimer gets nothing while leased.
        let claimed = store.claim_due(at(0), at(60), 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(store.claim_due(at(1), at(61), 10).await.unwrap().is_empty());
        let alerts = store.alerts(false, 10).await.unwrap();
        assert_eq!(alerts[0].delivery, Some(DeliveryState::Pending));

        store
            .record_delivery(claimed[0].id, DeliveryOutcome::Delivered, at(2))
            .await
            .unwrap();
        store
            .record_delivery(
                claimed[1].id,
                DeliveryOutcome::Retry {
                    at: at(30),
                    error: "connection refused".into(),
                },
                at(2),
            )
            .await
            .unwrap();
        assert!(store
            .claim_due(at(29), at(89), 10)
            .await
            .unwrap()
            .is_empty());
        let again = store.claim_due(at(30), at(90), 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].channel, claimed[1].channel);
        store
            .record_delivery(
                again[0].id,
                DeliveryOutcome::Failed {
                    error: "too old".into(),
                },
                at(31),
            )
            .await
            .unwrap();
        assert!(store
            .claim_due(at(10_000), at(10_060), 10)
            .await
            .unwrap()
            .is_empty());
        let alerts = store.alerts(false, 10).await.unwrap();
        assert_eq!(alerts[0].delivery, Some(DeliveryState::Failed));

        // Resolution.
        let id = open[0].id;
        store
            .commit_scan(ScanCommit {
                at: at(40),
                changes: vec![EscalationChange::Resolve {
                    id,
                    resolution: "renewed".into(),
                }],
                notifications: vec![],
            })
            .await
            .unwrap();
        assert!(store.open_escalations().await.unwrap().is_empty());
        let all = store.alerts(true, 10).await.unwrap();
        assert_eq!(
            all[0].escalation.resolved,
            Some((at(40), "renewed".to_string()))
        );
        let summary = store.inventory_summary(at(0), &[86_400]).await.unwrap();
        assert!(summary
            .outbox
            .contains(&("failed".to_string(), "hook".to_string(), 1)));
    }

    /// The gauges' summary counts certificates by kind and stored status, and devices that
    /// only have a birth certificate, as the inventory holds them (read from the counts the
    /// schema keeps, which must agree with the rows).
    pub(crate) async fn inventory_summary_counts_as_the_rows_say<S>(store: S)
    where
        S: MonitoringStore + CertificateLedger + RevocationStore,
    {
        for (serial, device, kind, not_after) in [
            ("b1", "SN-1", CertificateKind::Birth, 9000),
            ("b2", "SN-2", CertificateKind::Birth, 9000),
            ("o1", "SN-1", CertificateKind::Operational, 100),
            ("o2", "SN-1", CertificateKind::Operational, 200_000),
            ("o3", "SN-3", CertificateKind::Operational, 300_000),
        ] {
            store
                .record_issuance(certificate(serial, device, kind, not_after))
                .await
                .unwrap();
        }
        store.revoke("o3", "keyCompromise", at(10)).await.unwrap();
        let summary = store.inventory_summary(at(50), &[86_400]).await.unwrap();
        let mut certificates = summary.certificates.clone();
        certificates.sort();
        assert_eq!(
            certificates,
            vec![
                ("birth".to_string(), "valid".to_string(), 2),
                ("operational".to_string(), "revoked".to_string(), 1),
                ("operational".to_string(), "valid".to_string(), 2),
            ]
        );
        assert_eq!(summary.expiring, vec![(86_400, 3)], "b1, b2 and o1");
        assert_eq!(summary.birth_only_devices, 1, "SN-2 never enrolled");
    }

    pub(crate) async fn failing_devices_count_refusals_after_the_newest_issuance<S>(store: S)
    where
        S: MonitoringStore + CertificateLedger + RevocationStore + AuditLog,
    {
        let refuse = |actor: &str, secs: i64, detail: &str| AuditEvent {
            at: at(secs),
            actor: actor.into(),
            action: "simplereenroll".into(),
            subject: actor.trim_start_matches("device:").into(),
            outcome: "refused".into(),
            detail: detail.into(),
        };
        let issued_at = |serial: &str, device: &str, secs: i64| {
            let mut c = certificate(serial, device, CertificateKind::Operational, 9000);
            c.issued_at = at(secs);
            c
        };
        for (serial, device, secs) in [
            ("a1", "SN-A", 0), // three refusals after its certificate: reported
            ("b1", "SN-B", 0), // two refusals: below the threshold
            ("c1", "SN-C", 0), // three refusals, then renewed (c2)
            ("c2", "SN-C", 40),
            ("d1", "SN-D", 0), // two refusals, renewed, then three more: reported (3)
            ("d2", "SN-D", 25),
            ("f1", "SN-F", 0),  // decommissioned
            ("g1", "SN-G", 60), // refusals in the second of its issuance: not counted
        ] {
            store
                .record_issuance(issued_at(serial, device, secs))
                .await
                .unwrap();
        }
        let mut events = Vec::new();
        for secs in [10, 20, 30] {
            events.push(refuse("device:SN-A", secs, &format!("refused at {secs}")));
            events.push(refuse("device:SN-C", secs, "x"));
            events.push(refuse("device:SN-F", secs, "x"));
            events.push(refuse("device:SN-U", secs, "unknown device")); // not in inventory
            events.push(refuse("station:line-1", secs, "x")); // not a device
            events.push(refuse("device:SN-E", secs - 5000, "x")); // before the window
            events.push(refuse("device:SN-G", 60, "x"));
        }
        for secs in [10, 20, 30, 40, 50] {
            events.push(refuse("device:SN-D", secs, "x"));
        }
        events.push(refuse("device:SN-B", 10, "x"));
        events.push(refuse("device:SN-B", 20, "x"));
        let mut granted = refuse("device:SN-B", 30, "");
        granted.outcome = "granted".into();
        events.push(granted);
        events.sort_by_key(|e| e.at);
        for e in events {
            store.append(e).await.unwrap();
        }
        store
            .change_lifecycle(
                "SN-F",
                LifecycleChange::Decommission {
                    reason: "cessationOfOperation".into(),
                },
                at(1),
            )
            .await
            .unwrap();

        let (tx, mut rx) = mpsc::channel(4);
        let (n, mut got) = tokio::join!(store.failing_devices(at(-1000), 3, tx), async {
            let mut all = Vec::new();
            while let Some(c) = rx.recv().await {
                all.extend(c);
            }
            all
        });
        assert_eq!(n.unwrap() as usize, got.len());
        got.sort_by(|a, b| a.device_serial.cmp(&b.device_serial));
        let found: Vec<(&str, u64)> = got
            .iter()
            .map(|f| (f.device_serial.as_str(), f.refusals))
            .collect();
        assert_eq!(found, vec![("SN-A", 3), ("SN-D", 3), ("SN-U", 3)]);
        assert_eq!(got[0].first_refused_at, at(10));
        assert_eq!(got[0].last_refused_at, at(30));
        assert_eq!(got[0].last_error, "refused at 30");
        assert_eq!(got[0].last_action, "simplereenroll");
        assert_eq!(got[1].first_refused_at, at(30));

        // A higher threshold, and a window that starts later.
        let (tx, mut rx) = mpsc::channel(4);
        let (_, got) = tokio::join!(store.failing_devices(at(15), 2, tx), async {
            let mut all = Vec::new();
            while let Some(c) = rx.recv().await {
                all.extend(c);
            }
            all
        });
        let mut devices: Vec<&str> = got.iter().map(|f| f.device_serial.as_str()).collect();
        devices.sort_unstable();
        assert_eq!(devices, ["SN-A", "SN-D", "SN-U"]);
        assert!(got.iter().all(|f| f.first_refused_at >= at(20)));
    }

    pub(crate) async fn leases_have_one_holder<S>(store: S)
    where
        S: MonitoringStore,
    {
        let ttl = Duration::seconds(60);
        assert!(store
            .acquire_lease("scan", "a", at(0), at(0) + ttl)
            .await
            .unwrap());
        assert!(!store
            .acquire_lease("scan", "b", at(10), at(10) + ttl)
            .await
            .unwrap());
        assert!(store
            .acquire_lease("scan", "a", at(20), at(20) + ttl)
            .await
            .unwrap());
        assert!(store
            .acquire_lease("scan", "b", at(81), at(81) + ttl)
            .await
            .unwrap());
    }
}
