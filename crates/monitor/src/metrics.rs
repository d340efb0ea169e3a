//! Prometheus metrics (`prometheus-client`, no global registry): inventory gauges
//! refreshed by every scan, EST request counters and latency histograms (through the
//! front end's [`RequestObserver`] seam), notification deliveries, and `GET /metrics`.

use std::sync::Arc;
use std::time::Duration;

use fleetca_est::RequestObserver;
use fleetca_store::{CertificateKind, CertificateStatus, EscalationKind, MonitoringStore};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use time::OffsetDateTime;

use crate::MonitorError;

type Labels = Vec<(String, String)>;

/// Horizons of `fleetca_certificates_expiring`, in days.
pub const EXPIRING_DAYS: [i64; 3] = [1, 7, 30];

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// EST endpoints (`fleetca_est_requests`, `fleetca_est_request_duration_seconds`).
const ENDPOINTS: [&str; 5] = [
    "cacerts",
    "csrattrs",
    "simpleenroll",
    "simplereenroll",
    "serverkeygen",
];
/// Listeners whose refused connections are counted.
const LISTENERS: [&str; 3] = ["est", "status", "metrics"];
const REFUSALS: [fleetca_listener::Refusal; 4] = [
    fleetca_listener::Refusal::MaxConnections,
    fleetca_listener::Refusal::SourceConnections,
    fleetca_listener::Refusal::SourceRate,
    fleetca_listener::Refusal::FirstByteTimeout,
];
const PASSWORD_RESULTS: [&str; 4] = ["success", "failure", "held_account", "held_source"];
const DELIVERY_RESULTS: [&str; 3] = ["delivered", "retry", "failed"];
const OUTBOX_STATES: [&str; 3] = ["pending", "delivered", "failed"];
const KINDS: [CertificateKind; 2] = [CertificateKind::Birth, CertificateKind::Operational];
const STATUSES: [CertificateStatus; 3] = [
    CertificateStatus::Valid,
    CertificateStatus::Revoked,
    CertificateStatus::OnHold,
];
const ESCALATIONS: [EscalationKind; 4] = [
    EscalationKind::Expiry,
    EscalationKind::BirthOnly,
    EscalationKind::FailingRenewals,
    EscalationKind::CaExpiry,
];

fn certificate_labels() -> Vec<Labels> {
    KINDS
        .iter()
        .flat_map(|k| {
            STATUSES
                .iter()
                .map(move |s| labels(&[("kind", k.as_str()), ("status", s.as_str())]))
        })
        .collect()
}

fn escalation_labels(tiers: &[String]) -> Vec<Labels> {
    ESCALATIONS
        .iter()
        .flat_map(|k| {
            tiers
                .iter()
                .map(move |t| labels(&[("kind", k.as_str()), ("tier", t)]))
        })
        .collect()
}

fn outbox_labels(channels: &[String]) -> Vec<Labels> {
    OUTBOX_STATES
        .iter()
        .flat_map(|s| {
            channels
                .iter()
                .map(move |c| labels(&[("state", s), ("channel", c)]))
        })
        .collect()
}

/// Label values known from the configuration (tiers, channels): their series are
/// exported, at 0, before anything happened.
#[derive(Debug, Default)]
struct Declared {
    tiers: Vec<String>,
    channels: Vec<String>,
}

/// Every metric fleetca exports. Every series whose labels are known in advance is
/// present (at 0) from start-up, so that rates and alerts on them work before the first
/// event instead of seeing no data.
pub struct Metrics {
    registry: Registry,
    certificates: Family<Labels, Gauge>,
    expiring: Family<Labels, Gauge>,
    birth_only: Gauge,
    escalations: Family<Labels, Gauge>,
    outbox: Family<Labels, Gauge>,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    deliveries: Family<Labels, Counter>,
    connections_refused: Family<Labels, Counter>,
    password_attempts: Family<Labels, Counter>,
    /// A certificate was issued on this node since the gauges were last refreshed.
    inventory_changed: std::sync::atomic::AtomicBool,
    scan_seconds: Gauge<f64, AtomicU64>,
    last_scan: Gauge,
    scan_overdue: Gauge,
    declared: std::sync::Mutex<Declared>,
    /// Label sets of the certificate, escalation and outbox gauges as last refreshed.
    published: std::sync::Mutex<[Vec<Labels>; 3]>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered, and every series whose labels do
    /// not depend on the configuration present at 0 (see [`Metrics::declare`] for the
    /// others).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let certificates = Family::<Labels, Gauge>::default();
        registry.register(
            "fleetca_certificates",
            "Certificates in the inventory by kind and status",
            certificates.clone(),
        );
        let expiring = Family::<Labels, Gauge>::default();
        registry.register(
            "fleetca_certificates_expiring",
            "Valid certificates expiring within the given number of days (not yet expired)",
            expiring.clone(),
        );
        let birth_only = Gauge::default();
        registry.register(
            "fleetca_devices_birth_only",
            "Devices with only a birth certificate (never enrolled)",
            birth_only.clone(),
        );
        let escalations = Family::<Labels, Gauge>::default();
        registry.register(
            "fleetca_escalations_open",
            "Open escalations by kind and tier",
            escalations.clone(),
        );
        let outbox = Family::<Labels, Gauge>::default();
        registry.register(
            "fleetca_outbox_messages",
            "Notifications in the outbox by state and channel",
            outbox.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "fleetca_est_requests",
            "EST requests answered, by endpoint and HTTP status",
            requests.clone(),
        );
        let latency: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "fleetca_est_request_duration_seconds",
            "EST request latency by endpoint",
            latency.clone(),
        );
        let deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "fleetca_notification_deliveries",
            "Notification delivery attempts by channel and result (delivered, retry, failed)",
            deliveries.clone(),
        );
        let connections_refused = Family::<Labels, Counter>::default();
        registry.register(
            "fleetca_connections_refused",
            "Connections closed unserved, by listener (est, status, metrics) and reason (max_connections, source_connections, source_rate, first_byte_timeout)",
            connections_refused.clone(),
        );
        let password_attempts = Family::<Labels, Counter>::default();
        registry.register(
            "fleetca_est_password_attempts",
            "EST HTTP Basic logins by result (success, failure, held_account, held_source: refused during a back-off)",
            password_attempts.clone(),
        );
        let scan_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "fleetca_expiry_scan_duration_seconds",
            "Duration of the last expiry scan",
            scan_seconds.clone(),
        );
        let last_scan = Gauge::default();
        registry.register(
            "fleetca_expiry_scan_last_timestamp_seconds",
            "When the last successful expiry scan on this node finished (unix time; 0: none since start)",
            last_scan.clone(),
        );
        let scan_overdue = Gauge::default();
        registry.register(
            "fleetca_expiry_scan_overdue",
            "1 while this node should scan (it holds the scan lease, or cannot reach the database to know) and no scan succeeded for more than twice the scan interval",
            scan_overdue.clone(),
        );
        let metrics = Self {
            registry,
            certificates,
            expiring,
            birth_only,
            escalations,
            outbox,
            requests,
            latency,
            deliveries,
            connections_refused,
            password_attempts,
            inventory_changed: std::sync::atomic::AtomicBool::new(false),
            scan_seconds,
            last_scan,
            scan_overdue,
            declared: std::sync::Mutex::new(Declared::default()),
            published: std::sync::Mutex::new(Default::default()),
        };
        for endpoint in ENDPOINTS {
            drop(
                metrics
                    .requests
                    .get_or_create(&labels(&[("endpoint", endpoint), ("status", "200")])),
            );
            drop(
                metrics
                    .latency
                    .get_or_create(&labels(&[("endpoint", endpoint)])),
            );
        }
        for listener in LISTENERS {
            for reason in REFUSALS {
                drop(metrics.connections_refused.get_or_create(&labels(&[
                    ("listener", listener),
                    ("reason", reason.as_str()),
                ])));
            }
        }
        for result in PASSWORD_RESULTS {
            drop(
                metrics
                    .password_attempts
                    .get_or_create(&labels(&[("result", result)])),
            );
        }
        metrics.zero_inventory();
        metrics
    }

    /// Exports (at 0) the series of the configured tiers and channels; called at start-up
    /// and when a reload brings new monitoring settings.
    pub fn declare(&self, settings: &crate::MonitorSettings) {
        {
            let mut declared = self.declared.lock().unwrap_or_else(|e| e.into_inner());
            declared.tiers = settings.tiers.iter().map(|t| t.name.clone()).collect();
            declared.channels = settings.channels.keys().cloned().collect();
            for channel in &declared.channels {
                for result in DELIVERY_RESULTS {
                    drop(
                        self.deliveries
                            .get_or_create(&labels(&[("channel", channel), ("result", result)])),
                    );
                }
            }
        }
        self.zero_inventory();
    }

    /// Creates (at 0, leaving values already set) every inventory series with known labels.
    fn zero_inventory(&self) {
        let (tiers, channels) = self.declared_labels();
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        for (family, known, slot) in [
            (&self.certificates, certificate_labels(), 0),
            (&self.escalations, escalation_labels(&tiers), 1),
            (&self.outbox, outbox_labels(&channels), 2),
        ] {
            for l in known {
                drop(family.get_or_create(&l));
                // Remembered, so that the next refresh removes it if it is no longer known.
                if let Some(p) = published.get_mut(slot) {
                    if !p.contains(&l) {
                        p.push(l);
                    }
                }
            }
        }
        for days in EXPIRING_DAYS {
            drop(
                self.expiring
                    .get_or_create(&labels(&[("within_days", &days.to_string())])),
            );
        }
    }

    /// The configured tier and channel names.
    fn declared_labels(&self) -> (Vec<String>, Vec<String>) {
        let declared = self.declared.lock().unwrap_or_else(|e| e.into_inner());
        (declared.tiers.clone(), declared.channels.clone())
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Counts a delivery attempt.
    pub fn delivery(&self, channel: &str, result: &str) {
        self.deliveries
            .get_or_create(&labels(&[("channel", channel), ("result", result)]))
            .inc();
    }

    pub(crate) fn scan_finished(&self, elapsed: Duration, at: OffsetDateTime) {
        self.scan_seconds.set(elapsed.as_secs_f64());
        self.last_scan.set(at.unix_timestamp());
    }

    /// When the last successful expiry scan on this node finished (unix time), if any.
    pub fn last_scan_timestamp(&self) -> Option<i64> {
        Some(self.last_scan.get()).filter(|t| *t > 0)
    }

    /// Marks the expiry scan as overdue (or not) on this node.
    pub fn set_scan_overdue(&self, overdue: bool) {
        self.scan_overdue.set(i64::from(overdue));
    }

    /// Whether this node issued a certificate since the last call (the inventory gauges
    /// are then behind); clears the mark.
    pub fn take_inventory_change(&self) -> bool {
        self.inventory_changed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Re-reads the inventory counts into the gauges.
    pub async fn refresh_inventory(
        &self,
        store: &dyn MonitoringStore,
        now: OffsetDateTime,
    ) -> Result<(), MonitorError> {
        let horizons: Vec<i64> = EXPIRING_DAYS.iter().map(|d| d * 86_400).collect();
        let s = store.inventory_summary(now, &horizons).await?;
        // Every series is set in place (none is missing in between for a scrape to
        // see): the known ones to 0 unless counted, then the counts; afterwards, series
        // no longer known nor counted (a tier or channel removed by a reload) go.
        let zeros = |known: Vec<Labels>| -> Vec<(Labels, u64)> {
            known.into_iter().map(|l| (l, 0)).collect()
        };
        let (tiers, channels) = self.declared_labels();
        let pairs = |rows: &[(String, String, u64)], a: &str, b: &str| -> Vec<(Labels, u64)> {
            rows.iter()
                .map(|(x, y, n)| (labels(&[(a, x), (b, y)]), *n))
                .collect()
        };
        let mut previous = self.published.lock().unwrap_or_else(|e| e.into_inner());
        for (family, known, counted, slot) in [
            (
                &self.certificates,
                certificate_labels(),
                pairs(&s.certificates, "kind", "status"),
                0,
            ),
            (
                &self.escalations,
                escalation_labels(&tiers),
                pairs(&s.escalations, "kind", "tier"),
                1,
            ),
            (
                &self.outbox,
                outbox_labels(&channels),
                pairs(&s.outbox, "state", "channel"),
                2,
            ),
        ] {
            let mut values: std::collections::BTreeMap<Labels, u64> =
                zeros(known).into_iter().collect();
            values.extend(counted);
            for (l, n) in &values {
                family.get_or_create(l).set(gauge_value(*n));
            }
            if let Some(before) = previous.get_mut(slot) {
                for stale in before.iter().filter(|l| !values.contains_key(*l)) {
                    family.remove(stale);
                }
                *before = values.into_keys().collect();
            }
        }
        drop(previous);
        for (h, n) in &s.expiring {
            let days = (h / 86_400).to_string();
            self.expiring
                .get_or_create(&labels(&[("within_days", &days)]))
                .set(gauge_value(*n));
        }
        self.birth_only.set(gauge_value(s.birth_only_devices));
        Ok(())
    }
}

impl RequestObserver for Metrics {
    fn password_attempt(&self, result: &'static str) {
        self.password_attempts
            .get_or_create(&labels(&[("result", result)]))
            .inc();
    }

    fn request_finished(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        // CMP answers every message with 200 (refusals are CMP error messages), and a SCEP
        // PKIOperation whatever its pkiStatus: either may have issued, so the gauges are
        // recounted (at most every 2 s; a spare recount at worst).
        if status == 200
            && matches!(
                endpoint,
                "simpleenroll" | "simplereenroll" | "serverkeygen" | "cmp" | "scep-pkioperation"
            )
        {
            self.inventory_changed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let status = status.to_string();
        self.requests
            .get_or_create(&labels(&[("endpoint", endpoint), ("status", &status)]))
            .inc();
        self.latency
            .get_or_create(&labels(&[("endpoint", endpoint)]))
            .observe(elapsed.as_secs_f64());
    }
}

impl fleetca_listener::RefusalObserver for Metrics {
    fn connection_refused(&self, listener: &'static str, reason: fleetca_listener::Refusal) {
        self.connections_refused
            .get_or_create(&labels(&[
                ("listener", listener),
                ("reason", reason.as_str()),
            ]))
            .inc();
    }
}

/// The metrics listener's admitted connections, as axum takes them.
struct MetricsListener(fleetca_listener::AdmittedListener);

impl axum::serve::Listener for MetricsListener {
    type Io = fleetca_listener::AdmittedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept_stream().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Serves `GET /metrics` on `listener` (admitted: connection caps and accept rate) until
/// `stop` completes.
pub async fn serve(
    listener: fleetca_listener::AdmittedListener,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), MonitorError> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    axum::serve(MetricsListener(listener), app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| MonitorError::Listener(e.to_string()))
}
