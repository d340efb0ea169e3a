//! Alerts, the expiring report, the audit trail and the statistics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{permitted_query, Caller, QueryParams};
use super::fleet_routes::{negotiate, not_acceptable};
use super::problem::{ApiError, Problem};
use super::AdminApi;
use crate::{
    AlertListQuery, AlertView, AuditQuery, AuditVerification, AuditView, ExpiringQuery,
    ExpiringRow, Page, Permission, Stats, StatsQuery,
};

pub(super) fn routes() -> OpenApiRouter<Arc<AdminApi>> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(expiring))
        .routes(routes!(audit))
        .routes(routes!(audit_verify))
        .routes(routes!(stats))
}

/// Escalations (alerts), newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<AlertView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_alerts(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    QueryParams(q): QueryParams<AlertListQuery>,
) -> Result<Json<Page<AlertView>>, ApiError> {
    Ok(Json(
        crate::list_alerts(api.store.as_ref(), &caller.actor, q).await?,
    ))
}

const REPORT_TYPES: [&str; 2] = ["application/json", "text/csv"];

/// Certificates expiring within a horizon without a successor: JSON, or CSV
/// (`Accept: text/csv` or `format=csv`; the next page's cursor is in the `Link` header).
#[utoipa::path(get, path = "/api/v1/reports/expiring", tag = "reports", params(ExpiringQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report", content(
            (Page<ExpiringRow> = "application/json"),
            (String = "text/csv"))),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn expiring(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    headers: HeaderMap,
    QueryParams(q): QueryParams<ExpiringQuery>,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        Some("csv") => true,
        Some(_) => false,
        None => match negotiate(&headers, &REPORT_TYPES) {
            Some(t) => t == "text/csv",
            None => return Err(not_acceptable(&REPORT_TYPES)),
        },
    };
    let page = crate::expiring(api.store.as_ref(), &caller.actor, api.tier_of.as_ref(), q).await?;
    if !csv {
        return Ok(Json(page).into_response());
    }
    let mut response = crate::expiring_csv(&page.items)?.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Some(next) = page.next_cursor {
        if let Ok(v) = HeaderValue::from_str(&format!("<?cursor={next}>; rel=\"next\"")) {
            h.insert(header::LINK, v);
        }
    }
    Ok(response)
}

/// Audit events, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<AuditView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn audit(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    q: Result<QueryParams<AuditQuery>, ApiError>,
) -> Result<Json<Page<AuditView>>, ApiError> {
    let q = permitted_query(&caller, Permission::ReadAudit, q)?;
    Ok(Json(
        crate::audit_search(api.store.as_ref(), &caller.actor, q).await?,
    ))
}

/// Recomputes the audit chain.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = AuditVerification),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn audit_verify(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
) -> Result<Json<AuditVerification>, ApiError> {
    Ok(Json(
        crate::audit_verify(api.store.as_ref(), &caller.actor).await?,
    ))
}

/// The fleet at a glance.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats", params(StatsQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Stats),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn stats(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    QueryParams(q): QueryParams<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    Ok(Json(
        crate::stats(api.store.as_ref(), &caller.actor, api.failing_threshold, q).await?,
    ))
}
