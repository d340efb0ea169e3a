//! What the admin API and console read: filtered, keyset-paged listings of certificates,
//! approval requests, alerts and the audit trail, the enrollment accounts, and the fleet
//! statistics. Every listing is ordered by a unique key and continues strictly after (or
//! before) the last row of the previous page, so a page never repeats or skips a row when
//! rows are inserted meanwhile (no OFFSET).

use async_trait::async_trait;
use time::{Date, OffsetDateTime};

use crate::model::{
    AccountRecord, AuditRecord, CertificateKind, CertificateRecord, CertificateStatus,
};
use crate::monitoring::AlertRecord;
use crate::policy::{ApprovalRecord, ApprovalState};
use crate::StoreError;

/// Which certificates to list, ordered by `(not_after, serial)` ascending (the soonest to
/// expire first). Every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateFilter {
    /// Only this revocation state.
    pub status: Option<CertificateStatus>,
    /// Only birth or only operational certificates.
    pub kind: Option<CertificateKind>,
    /// Only certificates of this issuing CA (`manufacturing`, `operational`, ...).
    pub issuer: Option<String>,
    /// Only this profile.
    pub profile: Option<String>,
    /// Only this device's certificates.
    pub device_serial: Option<String>,
    /// Only certificates with `not_after` at or after this time (not yet expired).
    pub not_after_from: Option<OffsetDateTime>,
    /// Only certificates with `not_after` before this time.
    pub not_after_before: Option<OffsetDateTime>,
    /// Continue after this `(not_after, serial)` (the last row of the previous page).
    pub after: Option<(OffsetDateTime, String)>,
    /// At most this many rows.
    pub limit: u32,
}

/// Which approval requests to list, ordered by id ascending (oldest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalFilter {
    /// Only this state.
    pub state: Option<ApprovalState>,
    /// Only this device's requests.
    pub device_serial: Option<String>,
    /// Continue after this id.
    pub after: Option<i64>,
    /// At most this many rows.
    pub limit: u32,
}

/// Which escalations to list, ordered by id descending (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// `Some(true)`: only open ones; `Some(false)`: only resolved ones; `None`: both.
    pub open: Option<bool>,
    /// Only this kind (`expiry`, `birth-only`, `failing-renewals`).
    pub kind: Option<String>,
    /// Only this tier.
    pub tier: Option<String>,
    /// Only this device's escalations.
    pub device_serial: Option<String>,
    /// Continue before this id.
    pub before: Option<i64>,
    /// At most this many rows.
    pub limit: u32,
}

/// Which audit events to list, ordered by id descending (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this actor (`user:alice`, `token:cmdb-sync`, `cli:root`, `device:SN-1`).
    pub actor: Option<String>,
    /// Only this action (`cert-revoke`, ...).
    pub action: Option<String>,
    /// Only this subject (a device serial, certificate serial, station name, ...).
    pub subject: Option<String>,
    /// Only events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only events before this time.
    pub until: Option<OffsetDateTime>,
    /// Continue before this id.
    pub before: Option<i64>,
    /// At most this many rows.
    pub limit: u32,
}

/// Requests decided on one day (UTC), from the decision log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayActivity {
    /// Decisions with outcome `issued`.
    pub issued: u64,
    /// Decisions with outcome `denied`.
    pub refused: u64,
    /// Decisions with outcome `pending` (waiting for an operator).
    pub pending: u64,
}

/// Counts for `GET /api/v1/stats` and the console overview.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// (device status, count), every status present.
    pub devices_by_status: Vec<(String, u64)>,
    /// (kind, profile, state, count) over all certificates, where state is `valid`
    /// (unexpired at `now`), `expired` (valid but past `not_after`), `revoked` or
    /// `on-hold`.
    pub certificates: Vec<(String, String, String, u64)>,
    /// For each of the next `days_ahead` days (UTC, today first), the unexpired,
    /// unrevoked certificates whose `not_after` falls on it, per profile:
    /// (day, profile, count); days without any are left out.
    pub expiring_per_day: Vec<(Date, String, u64)>,
    /// For each of the last `days_back` days (UTC, oldest first, today last), the
    /// decisions of that day; days without any are left out.
    pub requests_per_day: Vec<(Date, DayActivity)>,
}

/// Reads for the admin API and console.
#[async_trait]
pub trait AdminViews: Send + Sync {
    /// Certificates matching `filter`, by `(not_after, serial)`.
    async fn certificate_page(
        &self,
        filter: &CertificateFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError>;
    /// Approval requests matching `filter`, by id ascending.
    async fn approval_page(
        &self,
        filter: &ApprovalFilter,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;
    /// Escalations matching `filter`, newest first, with their delivery state.
    async fn alert_page(&self, filter: &AlertFilter) -> Result<Vec<AlertRecord>, StoreError>;
    /// Audit events matching `filter`, newest first.
    async fn audit_search(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
    /// Every enrollment account, by name.
    async fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError>;
    /// The fleet's counts at `now`: `days_ahead` days of expiries and `days_back` days of
    /// requests (each at most 400).
    async fn fleet_stats(
        &self,
        now: OffsetDateTime,
        days_ahead: u32,
        days_back: u32,
    ) -> Result<FleetStats, StoreError>;
}
