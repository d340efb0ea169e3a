//! Stations, alerts and escalations, and the audit trail.

use askama::Template;
use axum::extract::{Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use time::OffsetDateTime;

use super::auth::ConsoleUser;
use super::fleet_pages::{alert_row, audit_row, notice, AlertRow, AuditRow};
use super::overview::StationRow;
use super::render::{self, given, html, Chrome};
use super::State;
use crate::{AlertListQuery, AuditQuery, AuditVerification};

#[derive(Template)]
#[template(path = "console/stations.html")]
struct StationsPage {
    chrome: Option<Chrome>,
    stations: Vec<StationRow>,
    can_change: bool,
    csrf: String,
    notice: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
}

/// `GET /stations`: quota use, suspend and resume (admin).
pub(crate) async fn stations(
    AxumState(console): State,
    user: ConsoleUser,
    Query(q): Query<DoneQuery>,
) -> Response {
    match crate::list_stations(console.api.store.as_ref(), user.actor()).await {
        Ok(stations) => html(
            StatusCode::OK,
            &StationsPage {
                chrome: user.chrome("stations"),
                stations: stations.into_iter().map(StationRow::from).collect(),
                can_change: user.can_administer(),
                csrf: user.csrf(),
                notice: notice(q.done.as_deref()),
            },
        ),
        Err(e) => render::admin_error(e, Some(&user)),
    }
}

#[derive(Template)]
#[template(path = "console/alerts.html")]
struct AlertsPage {
    chrome: Option<Chrome>,
    state: String,
    tier: String,
    escalations: Vec<AlertRow>,
    next: Option<String>,
}

impl AlertsPage {
    fn state_is(&self, s: &str) -> bool {
        self.state == s
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AlertsQuery {
    state: Option<String>,
    tier: Option<String>,
    cursor: Option<String>,
}

/// `GET /alerts`: escalations, open by default.
pub(crate) async fn alerts(
    AxumState(console): State,
    user: ConsoleUser,
    Query(q): Query<AlertsQuery>,
) -> Response {
    let state = given(q.state).unwrap_or_else(|| "open".into());
    let tier = given(q.tier);
    let page = crate::list_alerts(
        console.api.store.as_ref(),
        user.actor(),
        AlertListQuery {
            state: Some(state.clone()),
            tier: tier.clone(),
            cursor: given(q.cursor),
            ..AlertListQuery::default()
        },
    )
    .await;
    let page = match page {
        Ok(p) => p,
        Err(e) => return render::admin_error(e, Some(&user)),
    };
    let now = OffsetDateTime::now_utc();
    let next = page.next_cursor.map(|c| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("state", &state);
        if let Some(t) = &tier {
            s.append_pair("tier", t);
        }
        s.append_pair("cursor", &c);
        format!("/alerts?{}", s.finish())
    });
    html(
        StatusCode::OK,
        &AlertsPage {
            chrome: user.chrome("alerts"),
            escalations: page.items.into_iter().map(|a| alert_row(a, now)).collect(),
            state,
            tier: tier.unwrap_or_default(),
            next,
        },
    )
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Option<Chrome>,
    actor: String,
    since: String,
    until: String,
    events: Vec<AuditRow>,
    next: Option<String>,
    verification: Option<AuditVerification>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditPageQuery {
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

/// Accepts `2026-12-06`, `2026-12-06T10:00` or RFC 3339 (what people type and what the
/// `datetime-local` input sends); returns RFC 3339 UTC.
fn typed_time(text: Option<String>) -> Option<String> {
    let t = given(text)?;
    Some(match t.len() {
        10 => format!("{t}T00:00:00Z"),
        16 => format!("{t}:00Z"),
        _ => t,
    })
}

async fn audit_page(
    console: &super::Console,
    user: &ConsoleUser,
    q: AuditPageQuery,
    verification: Option<AuditVerification>,
) -> Response {
    let actor = given(q.actor);
    let since = typed_time(q.since);
    let until = typed_time(q.until);
    let page = crate::audit_search(
        console.api.store.as_ref(),
        user.actor(),
        AuditQuery {
            actor: actor.clone(),
            since: since.clone(),
            until: until.clone(),
            cursor: given(q.cursor),
            ..AuditQuery::default()
        },
    )
    .await;
    let page = match page {
        Ok(p) => p,
        Err(e) => return render::admin_error(e, Some(user)),
    };
    let now = OffsetDateTime::now_utc();
    let next = page.next_cursor.map(|c| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("actor", &actor), ("since", &since), ("until", &until)] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.append_pair("cursor", &c);
        format!("/audit?{}", s.finish())
    });
    html(
        StatusCode::OK,
        &AuditPage {
            chrome: user.chrome("audit"),
            events: page.items.into_iter().map(|a| audit_row(a, now)).collect(),
            actor: actor.unwrap_or_default(),
            since: since.unwrap_or_default(),
            until: until.unwrap_or_default(),
            next,
            verification,
        },
    )
}

/// `GET /audit`: the trail, newest first, filtered by actor and time (auditor, admin).
pub(crate) async fn audit(
    AxumState(console): State,
    user: ConsoleUser,
    Query(q): Query<AuditPageQuery>,
) -> Response {
    audit_page(&console, &user, q, None).await
}

/// `GET /audit/verify`: recomputes the hash chain and shows the result above the trail.
pub(crate) async fn audit_verify(AxumState(console): State, user: ConsoleUser) -> Response {
    match crate::audit_verify(console.api.store.as_ref(), user.actor()).await {
        Ok(v) => audit_page(&console, &user, AuditPageQuery::default(), Some(v)).await,
        Err(e) => render::admin_error(e, Some(&user)),
    }
}
