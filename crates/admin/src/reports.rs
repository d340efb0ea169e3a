//! Reading what surrounds the fleet: stations, enrollment accounts, alerts, the expiring
//! report, the audit trail and the fleet statistics.

use std::collections::BTreeMap;
use std::sync::Arc;

use fleetca_store::{
    AlertFilter, AuditFilter, CertificateFilter, CertificateKind, CertificateStatus, Store,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};

use crate::cursor::{self, Key, Listing, Page};
use crate::reads::{certificate_page, duration};
use crate::views::{AccountView, AlertView, AuditView, StationView};
use crate::{rfc3339, Actor, AdminError, Permission};

/// Every factory station with its quota use.
pub async fn list_stations(
    store: &dyn Store,
    actor: &Actor,
) -> Result<Vec<StationView>, AdminError> {
    actor.require(Permission::ReadFleet)?;
    Ok(store
        .stations()
        .await?
        .into_iter()
        .map(StationView::from)
        .collect())
}

/// Every enrollment account.
pub async fn list_accounts(
    store: &dyn Store,
    actor: &Actor,
) -> Result<Vec<AccountView>, AdminError> {
    actor.require(Permission::Administer)?;
    Ok(store
        .accounts()
        .await?
        .into_iter()
        .map(AccountView::from)
        .collect())
}

/// `GET /alerts` filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertListQuery {
    /// `open` (default), `resolved` or `all`.
    pub state: Option<String>,
    /// `expiry`, `birth-only` or `failing-renewals`.
    pub kind: Option<String>,
    /// Tier name.
    pub tier: Option<String>,
    /// Device serial number.
    pub device: Option<String>,
    /// Page size (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Escalations, newest first.
pub async fn list_alerts(
    store: &dyn Store,
    actor: &Actor,
    q: AlertListQuery,
) -> Result<Page<AlertView>, AdminError> {
    actor.require(Permission::ReadFleet)?;
    let limit = cursor::limit(q.limit)?;
    let open = match q.state.as_deref() {
        None | Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some("all") => None,
        Some(other) => {
            return Err(AdminError::field(
                "state",
                format!("state: '{other}' is not open, resolved or all"),
            ))
        }
    };
    if let Some(k) = &q.kind {
        k.parse::<fleetca_store::EscalationKind>()
            .map_err(|e| AdminError::field("kind", format!("kind: {e}")))?;
    }
    let mut filter = AlertFilter {
        open,
        kind: q.kind,
        tier: q.tier,
        device_serial: q.device,
        before: None,
        limit: limit + 1,
    };
    let filters = format!("{filter:?}");
    if let Some(c) = &q.cursor {
        match cursor::decode(Listing::Alerts, &filters, c)? {
            Key::Id(id) => filter.before = Some(id),
            _ => return Err(AdminError::field("cursor", "invalid cursor: malformed key")),
        }
    }
    let rows = store.alert_page(&filter).await?;
    Ok(cursor::page(
        rows,
        limit,
        Listing::Alerts,
        &filters,
        |a| Key::Id(a.escalation.id),
        |a| Some(AlertView::from(a)),
    ))
}

/// The escalation tier a certificate is in, from its remaining time and lifetime (the
/// monitoring configuration's tiers; `None` when outside every tier).
pub type TierOf = Arc<dyn Fn(Duration, Duration) -> Option<String> + Send + Sync>;

/// `GET /reports/expiring` filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExpiringQuery {
    /// Horizon (default `30d`).
    pub within: Option<String>,
    /// Profile.
    pub profile: Option<String>,
    /// `csv` for CSV (same as `Accept: text/csv`).
    pub format: Option<String>,
    /// Page size (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One row of the expiring report (the columns of `fleetca report expiring`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExpiringRow {
    /// Device serial number.
    pub device: String,
    /// Certificate serial.
    pub certificate: String,
    /// Profile.
    pub profile: String,
    /// End of validity.
    pub not_after: String,
    /// Days left (two decimals).
    pub days_left: f64,
    /// The escalation tier it is in, if any.
    pub tier: Option<String>,
}

/// Valid, unexpired, not yet renewed operational certificates expiring within the horizon,
/// soonest first.
pub async fn expiring(
    store: &dyn Store,
    actor: &Actor,
    tier_of: Option<&TierOf>,
    q: ExpiringQuery,
) -> Result<Page<ExpiringRow>, AdminError> {
    actor.require(Permission::ReadFleet)?;
    let limit = cursor::limit(q.limit)?;
    let within = duration("within", q.within.as_deref())?.unwrap_or(Duration::days(30));
    if let Some(f) = q.format.as_deref().filter(|f| *f != "csv" && *f != "json") {
        return Err(AdminError::field(
            "format",
            format!("format: '{f}' is not csv or json"),
        ));
    }
    let now = OffsetDateTime::now_utc();
    let filter = CertificateFilter {
        status: Some(CertificateStatus::Valid),
        kind: Some(CertificateKind::Operational),
        profile: q.profile,
        unrenewed: true,
        not_after_from: Some(now),
        not_after_before: Some(now + within),
        ..CertificateFilter::default()
    };
    let (rows, next_cursor) =
        certificate_page(store, filter, limit, Listing::Expiring, q.cursor.as_deref()).await?;
    let items = rows
        .into_iter()
        .map(|c| {
            let left = c.not_after - now;
            ExpiringRow {
                days_left: (left.whole_seconds() as f64 / 864.0).round() / 100.0,
                tier: tier_of.and_then(|t| t(left, c.not_after - c.not_before)),
                device: c.device_serial,
                certificate: c.serial,
                profile: c.profile,
                not_after: rfc3339(c.not_after),
            }
        })
        .collect();
    Ok(Page { items, next_cursor })
}

/// The expiring report as CSV (header row; the columns of `fleetca report expiring`).
pub fn expiring_csv(rows: &[ExpiringRow]) -> Result<String, AdminError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| AdminError::Internal(format!("CSV: {e}"));
    out.write_record(["device", "certificate", "not_after", "days_left", "tier"])
        .map_err(internal)?;
    for r in rows {
        out.write_record([
            r.device.as_str(),
            r.certificate.as_str(),
            r.not_after.as_str(),
            &format!("{:.2}", r.days_left),
            r.tier.as_deref().unwrap_or("-"),
        ])
        .map_err(internal)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| AdminError::Internal(format!("CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| AdminError::Internal(format!("CSV: {e}")))
}

/// `GET /audit` filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Actor (`user:alice`, `token:cmdb-sync`, `cli:root`).
    pub actor: Option<String>,
    /// Action (`cert-revoke`, ...).
    pub action: Option<String>,
    /// Subject (device serial, certificate serial, `station:NAME`, ...).
    pub subject: Option<String>,
    /// Events at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Events before this time (RFC 3339).
    pub until: Option<String>,
    /// Page size (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn time_param(
    field: &'static str,
    text: Option<&str>,
) -> Result<Option<OffsetDateTime>, AdminError> {
    text.map(|t| {
        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).map_err(|_| {
            AdminError::field(
                field,
                format!("{field}: '{t}' is not an RFC 3339 time (2026-01-31T12:00:00Z)"),
            )
        })
    })
    .transpose()
}

/// Audit events, newest first.
pub async fn audit_search(
    store: &dyn Store,
    actor: &Actor,
    q: AuditQuery,
) -> Result<Page<AuditView>, AdminError> {
    actor.require(Permission::ReadAudit)?;
    let limit = cursor::limit(q.limit)?;
    let mut filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        subject: q.subject,
        since: time_param("since", q.since.as_deref())?,
        until: time_param("until", q.until.as_deref())?,
        before: None,
        limit: limit + 1,
    };
    let filters = format!("{filter:?}");
    if let Some(c) = &q.cursor {
        match cursor::decode(Listing::Audit, &filters, c)? {
            Key::Id(id) => filter.before = Some(id),
            _ => return Err(AdminError::field("cursor", "invalid cursor: malformed key")),
        }
    }
    let rows = store.audit_search(&filter).await?;
    Ok(cursor::page(
        rows,
        limit,
        Listing::Audit,
        &filters,
        |r| Key::Id(r.id),
        |r| Some(AuditView::from(r)),
    ))
}

/// The result of recomputing the audit chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditVerification {
    /// Whether every record's hash matches.
    pub ok: bool,
    /// Records checked (when intact).
    pub events: u64,
    /// Id of the first record whose hash does not match.
    pub broken_at: Option<i64>,
}

/// Recomputes the whole audit chain.
pub async fn audit_verify(
    store: &dyn Store,
    actor: &Actor,
) -> Result<AuditVerification, AdminError> {
    actor.require(Permission::ReadAudit)?;
    Ok(match store.verify_audit_chain().await? {
        Ok(events) => AuditVerification {
            ok: true,
            events,
            broken_at: None,
        },
        Err(id) => AuditVerification {
            ok: false,
            events: 0,
            broken_at: Some(id),
        },
    })
}

/// `GET /stats` parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Days of expiries ahead (1-400, default 30).
    pub days_ahead: Option<u32>,
    /// Days of requests back (1-400, default 30).
    pub days_back: Option<u32>,
}

/// Certificates of one kind, profile and state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CertificateCount {
    /// `birth` or `operational`.
    pub kind: String,
    /// Profile.
    pub profile: String,
    /// `valid`, `expired`, `revoked` or `on-hold`.
    pub state: String,
    /// How many.
    pub count: u64,
}

/// Certificates of a profile expiring on a day.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExpiringDay {
    /// The day (UTC, `YYYY-MM-DD`).
    pub day: String,
    /// Profile.
    pub profile: String,
    /// How many.
    pub count: u64,
}

/// The requests decided on a day.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestDay {
    /// The day (UTC, `YYYY-MM-DD`).
    pub day: String,
    /// Issued.
    pub issued: u64,
    /// Refused.
    pub refused: u64,
    /// Waiting for an operator.
    pub pending: u64,
}

/// A device whose requests keep being refused.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FailingDeviceView {
    /// Device serial number.
    pub device: String,
    /// Refusals since its last issued certificate (within the period).
    pub refusals: u64,
    /// The last refusal.
    pub last_refused_at: String,
    /// Why it was refused.
    pub last_error: String,
}

/// The fleet at a glance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stats {
    /// Devices by status.
    pub devices_by_status: BTreeMap<String, u64>,
    /// Certificates by kind, profile and state.
    pub certificates: Vec<CertificateCount>,
    /// Valid certificates expiring per day and profile, for the next `days_ahead` days.
    pub expiring_per_day: Vec<ExpiringDay>,
    /// Requests per day for the last `days_back` days.
    pub requests_per_day: Vec<RequestDay>,
    /// Devices with repeated refusals in the last `days_back` days.
    pub failing_devices: Vec<FailingDeviceView>,
}

/// Most failing devices listed.
const MAX_FAILING: usize = 100;

fn days(field: &'static str, n: Option<u32>) -> Result<u32, AdminError> {
    match n {
        None => Ok(30),
        Some(n) if (1..=400).contains(&n) => Ok(n),
        Some(n) => Err(AdminError::field(
            field,
            format!("{field} {n} is out of range: 1 to 400"),
        )),
    }
}

/// Counts by status and profile, expiries ahead, requests back, failing devices (at least
/// `failing_threshold` refusals since their last certificate).
pub async fn stats(
    store: &dyn Store,
    actor: &Actor,
    failing_threshold: u32,
    q: StatsQuery,
) -> Result<Stats, AdminError> {
    actor.require(Permission::ReadFleet)?;
    let days_ahead = days("days_ahead", q.days_ahead)?;
    let days_back = days("days_back", q.days_back)?;
    let now = OffsetDateTime::now_utc();
    let s = store.fleet_stats(now, days_ahead, days_back).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let since = now - Duration::days(i64::from(days_back));
    let (streamed, failing) = tokio::join!(
        store.failing_devices(since, failing_threshold.max(1), tx),
        async {
            let mut all = Vec::new();
            while let Some(chunk) = rx.recv().await {
                all.extend(chunk);
            }
            all
        }
    );
    streamed?;
    let mut failing = failing;
    failing.sort_by(|a, b| {
        b.refusals
            .cmp(&a.refusals)
            .then(a.device_serial.cmp(&b.device_serial))
    });
    failing.truncate(MAX_FAILING);
    Ok(Stats {
        devices_by_status: s.devices_by_status.into_iter().collect(),
        certificates: s
            .certificates
            .into_iter()
            .map(|(kind, profile, state, count)| CertificateCount {
                kind,
                profile,
                state,
                count,
            })
            .collect(),
        expiring_per_day: s
            .expiring_per_day
            .into_iter()
            .map(|(day, profile, count)| ExpiringDay {
                day: day.to_string(),
                profile,
                count,
            })
            .collect(),
        requests_per_day: s
            .requests_per_day
            .into_iter()
            .map(|(day, a)| RequestDay {
                day: day.to_string(),
                issued: a.issued,
                refused: a.refused,
                pending: a.pending,
            })
            .collect(),
        failing_devices: failing
            .into_iter()
            .map(|f| FailingDeviceView {
                device: f.device_serial,
                refusals: f.refusals,
                last_refused_at: rfc3339(f.last_refused_at),
                last_error: f.last_error,
            })
            .collect(),
    })
}
