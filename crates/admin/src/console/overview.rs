//! The overview: the fleet at a glance. Every count comes from the fleet statistics
//! ([`crate::stats`], the same as `GET /api/v1/stats`), asked once for 364 days ahead and
//! 30 days back; the console only buckets the days into weeks.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::Response;
use time::{Duration, OffsetDateTime};

use super::auth::ConsoleUser;
use super::charts::{self, ExpiryWeeks, WEEKS};
use super::format::{badge, when, When};
use super::render::{self, html, Chrome};
use super::State;
use crate::{AlertListQuery, StationView, StatsQuery};

/// Days of the expiry timeline (52 weeks).
const DAYS_AHEAD: u32 = (WEEKS * 7) as u32;
/// Days of the renewal activity.
const DAYS_BACK: u32 = 30;

pub(crate) struct Count {
    pub(crate) name: String,
    pub(crate) count: u64,
    pub(crate) badge: &'static str,
}

pub(crate) struct CertificateRow {
    pub(crate) kind: String,
    pub(crate) profile: String,
    pub(crate) state: String,
    pub(crate) count: u64,
    pub(crate) badge: &'static str,
}

pub(crate) struct WeekRow {
    pub(crate) start: String,
    pub(crate) counts: Vec<u64>,
    pub(crate) total: u64,
    pub(crate) in_window: bool,
}

pub(crate) struct FailingRow {
    pub(crate) device: String,
    pub(crate) refusals: u64,
    pub(crate) last: When,
    pub(crate) error: String,
}

pub(crate) struct StationRow {
    pub(crate) name: String,
    pub(crate) status: String,
    pub(crate) badge: &'static str,
    pub(crate) issued: u64,
    pub(crate) quota: Option<u64>,
    pub(crate) remaining: Option<u64>,
}

impl From<StationView> for StationRow {
    fn from(s: StationView) -> Self {
        Self {
            badge: badge(&s.status),
            name: s.name,
            status: s.status,
            issued: s.issued,
            quota: s.quota,
            remaining: s.remaining,
        }
    }
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Option<Chrome>,
    devices: Vec<Count>,
    device_total: u64,
    certificates: Vec<CertificateRow>,
    profiles: Vec<String>,
    expiry_svg: Option<String>,
    weeks: Vec<WeekRow>,
    expiring_total: u64,
    renewal_window_days: Option<i64>,
    activity_svg: Option<String>,
    issued: u64,
    refused: u64,
    pending: u64,
    failing: Vec<FailingRow>,
    escalations: Vec<Count>,
    escalations_more: bool,
    stations: Vec<StationRow>,
    /// Station actions are on the stations page, not here.
    can_change: bool,
    csrf: String,
}

/// `GET /`: the overview.
pub(crate) async fn overview(AxumState(console): State, user: ConsoleUser) -> Response {
    match overview_page(&console, &user).await {
        Ok(page) => html(StatusCode::OK, &page),
        Err(e) => render::admin_error(e, Some(&user)),
    }
}

async fn overview_page(
    console: &super::Console,
    user: &ConsoleUser,
) -> Result<OverviewPage, crate::AdminError> {
    let api = &console.api;
    let store = api.store.as_ref();
    let actor = user.actor();
    let now = OffsetDateTime::now_utc();
    let (stats, alerts, stations) = tokio::join!(
        crate::stats(
            store,
            actor,
            api.failing_threshold,
            StatsQuery {
                days_ahead: Some(DAYS_AHEAD),
                days_back: Some(DAYS_BACK),
            },
        ),
        crate::list_alerts(
            store,
            actor,
            AlertListQuery {
                limit: Some(crate::MAX_LIMIT),
                ..AlertListQuery::default()
            },
        ),
        crate::list_stations(store, actor),
    );
    let (stats, alerts, stations) = (stats?, alerts?, stations?);

    let devices: Vec<Count> = stats
        .devices_by_status
        .iter()
        .map(|(name, count)| Count {
            name: name.clone(),
            count: *count,
            badge: badge(name),
        })
        .collect();
    let certificates = stats
        .certificates
        .iter()
        .map(|c| CertificateRow {
            kind: c.kind.clone(),
            profile: c.profile.clone(),
            state: c.state.clone(),
            count: c.count,
            badge: badge(&c.state),
        })
        .collect();

    let renewal_window = console.settings.renewal_windows.values().max().copied();
    let weeks = ExpiryWeeks::from_days(now.date(), &stats.expiring_per_day);
    let expiry_svg = charts::expiry_timeline(&weeks, renewal_window);
    let week_rows: Vec<WeekRow> = (0..WEEKS)
        .filter(|w| weeks.week_total(*w) > 0)
        .map(|w| WeekRow {
            start: weeks.week_start(w).to_string(),
            counts: weeks
                .counts
                .iter()
                .map(|c| c.get(w).copied().unwrap_or(0))
                .collect(),
            total: weeks.week_total(w),
            in_window: renewal_window.is_some_and(|r| Duration::weeks(w as i64) < r),
        })
        .collect();
    let expiring_total = week_rows.iter().map(|w| w.total).sum();

    let first = now.date() - Duration::days(i64::from(DAYS_BACK) - 1);
    let activity_svg = charts::activity(&stats.requests_per_day, first, DAYS_BACK);
    let (issued, refused, pending) = stats
        .requests_per_day
        .iter()
        .fold((0, 0, 0), |(i, r, p), d| {
            (i + d.issued, r + d.refused, p + d.pending)
        });

    let mut by_tier: BTreeMap<String, u64> = BTreeMap::new();
    for a in &alerts.items {
        *by_tier.entry(a.tier.clone()).or_default() += 1;
    }
    Ok(OverviewPage {
        chrome: user.chrome("overview"),
        device_total: devices.iter().map(|d| d.count).sum(),
        devices,
        certificates,
        profiles: weeks.profiles.clone(),
        expiry_svg,
        weeks: week_rows,
        expiring_total,
        renewal_window_days: renewal_window.map(|r| r.whole_days()),
        activity_svg,
        issued,
        refused,
        pending,
        failing: stats
            .failing_devices
            .into_iter()
            .take(20)
            .map(|f| FailingRow {
                last: when(&f.last_refused_at, now),
                device: f.device,
                refusals: f.refusals,
                error: f.last_error,
            })
            .collect(),
        escalations: by_tier
            .into_iter()
            .map(|(name, count)| Count {
                name,
                count,
                badge: "warn",
            })
            .collect(),
        escalations_more: alerts.next_cursor.is_some(),
        stations: stations.into_iter().map(StationRow::from).collect(),
        can_change: false,
        csrf: String::new(),
    })
}
