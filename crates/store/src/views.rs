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
    /// Only certificates no later certificate renews (`replaced_by` is empty): what the
    /// expiring report lists, filtered in the query so that every page is full.
    pub unrenewed: bool,
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

/// Seconds in a UTC day.
pub(crate) const DAY: i64 = 86_400;

/// The UTC day (days since 1970-01-01) of a unix time.
pub(crate) fn day_of(unix: i64) -> i64 {
    unix.div_euclid(DAY)
}

/// The days [`AdminViews::fleet_stats`] covers, as unix days and seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatsWindow {
    /// `now`, unix seconds.
    pub(crate) now: i64,
    /// Today (UTC), as a unix day.
    pub(crate) today: i64,
    /// Expiries are counted on days `today..today + days_ahead`.
    pub(crate) days_ahead: i64,
    /// Requests are counted on days `today - days_back + 1..=today`.
    pub(crate) days_back: i64,
}

/// Rows the backends read for [`FleetStats`], before they are put together.
#[derive(Debug, Default)]
pub(crate) struct StatsRows {
    /// (device status, count).
    pub(crate) devices: Vec<(String, i64)>,
    /// (kind, profile, status, expiry day, count) over all certificates (valid ones that
    /// expire today are taken from `today` instead, which splits them at `now`).
    pub(crate) counted: Vec<(String, String, String, i64, i64)>,
    /// (kind, profile, unexpired at `now`, count): the valid certificates expiring today.
    pub(crate) today: Vec<(String, String, bool, i64)>,
    /// (day, outcome, count) over the window's decisions.
    pub(crate) decisions: Vec<(i64, String, i64)>,
}

impl StatsWindow {
    /// The window at `now`; each number of days is at most 400.
    pub(crate) fn new(now: OffsetDateTime, days_ahead: u32, days_back: u32) -> Self {
        let now = now.unix_timestamp();
        Self {
            now,
            today: day_of(now),
            days_ahead: i64::from(days_ahead.min(400)),
            days_back: i64::from(days_back.min(400)),
        }
    }

    /// Start of today, unix seconds.
    pub(crate) fn today_start(&self) -> i64 {
        self.today * DAY
    }

    /// First day of the requests window.
    pub(crate) fn first_request_day(&self) -> i64 {
        self.today - self.days_back + 1
    }

    /// Puts the rows together.
    pub(crate) fn assemble(&self, rows: StatsRows) -> Result<FleetStats, StoreError> {
        use std::collections::BTreeMap;
        let date = |day: i64| -> Result<Date, StoreError> {
            OffsetDateTime::from_unix_timestamp(day.saturating_mul(DAY))
                .map(|t| t.date())
                .map_err(|e| StoreError::Corrupt(format!("day {day}: {e}")))
        };
        let expiring_day = |day: i64| day >= self.today && day < self.today + self.days_ahead;
        let mut certificates: BTreeMap<(String, String, String), i64> = BTreeMap::new();
        let mut expiring: BTreeMap<(i64, String), i64> = BTreeMap::new();
        for (kind, profile, status, day, n) in rows.counted {
            let state = if status == CertificateStatus::Valid.as_str() {
                if day == self.today {
                    // Counted exactly from the certificates themselves (`today`).
                    continue;
                } else if day < self.today {
                    "expired".to_string()
                } else {
                    if expiring_day(day) {
                        *expiring.entry((day, profile.clone())).or_default() += n;
                    }
                    status
                }
            } else {
                status
            };
            *certificates.entry((kind, profile, state)).or_default() += n;
        }
        for (kind, profile, unexpired, n) in rows.today {
            if unexpired && expiring_day(self.today) {
                *expiring.entry((self.today, profile.clone())).or_default() += n;
            }
            let state = if unexpired { "valid" } else { "expired" };
            *certificates
                .entry((kind, profile, state.to_string()))
                .or_default() += n;
        }
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let mut requests: BTreeMap<i64, DayActivity> = BTreeMap::new();
        for (day, outcome, n) in rows.decisions {
            let activity = requests.entry(day).or_default();
            match outcome.as_str() {
                "issued" => activity.issued += count(n),
                "denied" => activity.refused += count(n),
                "pending" => activity.pending += count(n),
                _ => {}
            }
        }
        let mut devices: BTreeMap<String, i64> = BTreeMap::new();
        for (status, n) in rows.devices {
            *devices.entry(status).or_default() += n;
        }
        Ok(FleetStats {
            devices_by_status: devices
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(s, n)| (s, count(n)))
                .collect(),
            certificates: certificates
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|((k, p, s), n)| (k, p, s, count(n)))
                .collect(),
            expiring_per_day: expiring
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|((day, profile), n)| Ok((date(day)?, profile, count(n))))
                .collect::<Result<_, StoreError>>()?,
            requests_per_day: requests
                .into_iter()
                .filter(|(day, a)| {
                    *day >= self.first_request_day()
                        && *day <= self.today
                        && *a != DayActivity::default()
                })
                .map(|(day, a)| Ok((date(day)?, a)))
                .collect::<Result<_, StoreError>>()?,
        })
    }
}
