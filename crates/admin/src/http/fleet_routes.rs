//! Devices, certificates, approval requests and decisions.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleetca_pki::RevocationReason;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{permitted_body, Caller, JsonBody, QueryParams};
use super::problem::{ApiError, Problem};
use super::AdminApi;
use crate::reads::parse_opt;
use crate::Permission;
use crate::{
    rfc3339, AdminError, ApprovalDetail, ApprovalListQuery, ApprovalView, CertificateListQuery,
    CertificateView, DecisionListQuery, DecisionView, DeviceDetail, DeviceListQuery, DeviceView,
    Page,
};

pub(super) fn routes() -> OpenApiRouter<Arc<AdminApi>> {
    OpenApiRouter::new()
        .routes(routes!(list_devices))
        .routes(routes!(device))
        .routes(routes!(suspend))
        .routes(routes!(resume))
        .routes(routes!(decommission))
        .routes(routes!(force_reenroll))
        .routes(routes!(list_certificates))
        .routes(routes!(certificate))
        .routes(routes!(revoke))
        .routes(routes!(list_approvals))
        .routes(routes!(approval))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(list_decisions))
}

/// List of devices.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DeviceListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<DeviceView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_devices(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    QueryParams(q): QueryParams<DeviceListQuery>,
) -> Result<Json<Page<DeviceView>>, ApiError> {
    Ok(Json(
        crate::list_devices(api.store.as_ref(), &caller.actor, q).await?,
    ))
}

/// One device with its certificate lineage, open escalations and last decisions.
#[utoipa::path(get, path = "/api/v1/devices/{serial}", tag = "devices",
    params(("serial" = String, Path, description = "Device serial number")),
    security(("bearer" = [])),
    responses((status = 200, body = DeviceDetail),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn device(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(serial): Path<String>,
) -> Result<Json<DeviceDetail>, ApiError> {
    Ok(Json(
        crate::device_detail(api.store.as_ref(), &caller.actor, &serial).await?,
    ))
}

/// An operator's comment for the audit trail.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    /// Recorded in the audit trail.
    pub comment: Option<String>,
}

/// The certificates whose status changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SerialsResponse {
    /// Certificate serials.
    pub serials: Vec<String>,
}

/// Suspends a device: its valid certificates go on hold (reversible).
#[utoipa::path(post, path = "/api/v1/devices/{serial}/suspend", tag = "devices",
    params(("serial" = String, Path, description = "Device serial number")),
    request_body(content = Option<CommentBody>), security(("bearer" = [])),
    responses((status = 200, body = SerialsResponse),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn suspend(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(serial): Path<String>,
    body: Result<JsonBody<CommentBody>, ApiError>,
) -> Result<Json<SerialsResponse>, ApiError> {
    let body = permitted_body(&caller, Permission::Operate, body)?;
    let serials = crate::suspend(
        api.store.as_ref(),
        &caller.actor,
        &serial,
        body.comment.as_deref(),
    )
    .await?;
    Ok(Json(SerialsResponse { serials }))
}

/// Lifts a suspension: held certificates become valid again.
#[utoipa::path(post, path = "/api/v1/devices/{serial}/resume", tag = "devices",
    params(("serial" = String, Path, description = "Device serial number")),
    request_body(content = Option<CommentBody>), security(("bearer" = [])),
    responses((status = 200, body = SerialsResponse),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn resume(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(serial): Path<String>,
    body: Result<JsonBody<CommentBody>, ApiError>,
) -> Result<Json<SerialsResponse>, ApiError> {
    let body = permitted_body(&caller, Permission::Operate, body)?;
    let serials = crate::resume(
        api.store.as_ref(),
        &caller.actor,
        &serial,
        body.comment.as_deref(),
    )
    .await?;
    Ok(Json(SerialsResponse { serials }))
}

/// A decommissioning.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecommissionBody {
    /// RFC 5280 reason name (default `cessationOfOperation`).
    pub reason: Option<String>,
    /// Recorded in the audit trail.
    pub comment: Option<String>,
}

/// Retires a device for good: every live certificate is revoked.
#[utoipa::path(post, path = "/api/v1/devices/{serial}/decommission", tag = "devices",
    params(("serial" = String, Path, description = "Device serial number")),
    request_body(content = Option<DecommissionBody>), security(("bearer" = [])),
    responses((status = 200, body = SerialsResponse),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn decommission(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(serial): Path<String>,
    body: Result<JsonBody<DecommissionBody>, ApiError>,
) -> Result<Json<SerialsResponse>, ApiError> {
    let body = permitted_body(&caller, Permission::Operate, body)?;
    let reason = parse_opt::<RevocationReason>("reason", body.reason.as_deref())?
        .unwrap_or(RevocationReason::CessationOfOperation);
    let serials = crate::decommission(
        api.store.as_ref(),
        &caller.actor,
        &serial,
        reason,
        body.comment.as_deref(),
    )
    .await?;
    Ok(Json(SerialsResponse { serials }))
}

/// A forced re-enrollment.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceReenrollBody {
    /// How long the device may re-enroll outside its window (default `7d`).
    pub window: Option<String>,
    /// Recorded in the audit trail.
    pub comment: Option<String>,
}

/// Until when the override holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct UntilResponse {
    /// RFC 3339.
    pub until: String,
}

/// Lets a device re-enroll outside its window for a while.
#[utoipa::path(post, path = "/api/v1/devices/{serial}/force-reenroll", tag = "devices",
    params(("serial" = String, Path, description = "Device serial number")),
    request_body(content = Option<ForceReenrollBody>), security(("bearer" = [])),
    responses((status = 200, body = UntilResponse),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn force_reenroll(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(serial): Path<String>,
    body: Result<JsonBody<ForceReenrollBody>, ApiError>,
) -> Result<Json<UntilResponse>, ApiError> {
    let body = permitted_body(&caller, Permission::Operate, body)?;
    let window = crate::reads::duration("window", body.window.as_deref())?
        .unwrap_or(time::Duration::days(7));
    let until = crate::force_reenroll(
        api.store.as_ref(),
        &caller.actor,
        &serial,
        window,
        body.comment.as_deref(),
    )
    .await?;
    Ok(Json(UntilResponse {
        until: rfc3339(until),
    }))
}

/// List of certificates, soonest expiry first.
#[utoipa::path(get, path = "/api/v1/certificates", tag = "certificates",
    params(CertificateListQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<CertificateView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_certificates(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    QueryParams(q): QueryParams<CertificateListQuery>,
) -> Result<Json<Page<CertificateView>>, ApiError> {
    Ok(Json(
        crate::list_certificates(api.store.as_ref(), &caller.actor, q).await?,
    ))
}

/// The media types a client accepts, in its order of preference (q=0 left out).
pub(super) fn accepted(headers: &HeaderMap) -> Vec<String> {
    let mut types: Vec<(String, f32, usize)> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .enumerate()
        .filter_map(|(i, item)| {
            let mut parts = item.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (q > 0.0 && !essence.is_empty()).then_some((essence, q, i))
        })
        .collect();
    types.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    types.into_iter().map(|(t, _, _)| t).collect()
}

/// The first of `offered` the client accepts (`None`: answer 406).
pub(super) fn negotiate<'a>(headers: &HeaderMap, offered: &[&'a str]) -> Option<&'a str> {
    let accepted = accepted(headers);
    if accepted.is_empty() {
        return offered.first().copied();
    }
    accepted.iter().find_map(|a| {
        offered.iter().copied().find(|o| {
            a == o
                || a == "*/*"
                || a.strip_suffix("/*")
                    .is_some_and(|major| o.split('/').next() == Some(major))
        })
    })
}

pub(super) fn not_acceptable(offered: &[&str]) -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "not-acceptable",
        "Not acceptable",
        format!("this resource is available as {}", offered.join(", ")),
    )
}

const CERTIFICATE_TYPES: [&str; 3] = [
    "application/json",
    "application/pem-certificate-chain",
    "application/pkix-cert",
];

/// One certificate: JSON, PEM or DER by content negotiation.
#[utoipa::path(get, path = "/api/v1/certificates/{serial}", tag = "certificates",
    params(("serial" = String, Path, description = "Certificate serial (hex, colons allowed)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The certificate", content(
            (CertificateView = "application/json"),
            (String = "application/pem-certificate-chain"),
            (Vec<u8> = "application/pkix-cert"))),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn certificate(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(serial): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(kind) = negotiate(&headers, &CERTIFICATE_TYPES) else {
        return Err(not_acceptable(&CERTIFICATE_TYPES));
    };
    let (view, der) = crate::certificate(api.store.as_ref(), &caller.actor, &serial).await?;
    let typed = |body: Vec<u8>, content_type: &'static str| {
        let mut r = body.into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    Ok(match kind {
        "application/pem-certificate-chain" => typed(
            fleetca_pki::pem_certificate(&der).into_bytes(),
            "application/pem-certificate-chain",
        ),
        "application/pkix-cert" => typed(der, "application/pkix-cert"),
        _ => Json(view).into_response(),
    })
}

/// A revocation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// RFC 5280 reason name (`keyCompromise`, `superseded`, `certificateHold`, ...).
    pub reason: String,
    /// Recorded in the audit trail.
    pub comment: Option<String>,
    /// Must be `true` for `keyCompromise` (it cannot be undone and blocks renewal).
    pub confirm: Option<bool>,
}

/// Revokes a certificate (or puts it on hold with `certificateHold`).
#[utoipa::path(post, path = "/api/v1/certificates/{serial}/revoke", tag = "certificates",
    params(("serial" = String, Path, description = "Certificate serial (hex, colons allowed)")),
    request_body = RevokeBody, security(("bearer" = [])),
    responses((status = 200, body = CertificateView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn revoke(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(serial): Path<String>,
    body: Result<JsonBody<RevokeBody>, ApiError>,
) -> Result<Json<CertificateView>, ApiError> {
    let body = permitted_body(&caller, Permission::Operate, body)?;
    let reason = parse_opt::<RevocationReason>("reason", Some(&body.reason))?
        .ok_or_else(|| AdminError::field("reason", "a reason is needed"))?;
    let record = crate::revoke_certificate_confirmed(
        api.store.as_ref(),
        &caller.actor,
        &serial,
        reason,
        body.comment.as_deref(),
        body.confirm.unwrap_or(false),
    )
    .await?;
    Ok(Json(CertificateView::from(&record)))
}

/// List of approval requests, oldest first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals", params(ApprovalListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<ApprovalView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_approvals(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    QueryParams(q): QueryParams<ApprovalListQuery>,
) -> Result<Json<Page<ApprovalView>>, ApiError> {
    Ok(Json(
        crate::list_approvals(api.store.as_ref(), &caller.actor, q).await?,
    ))
}

fn approval_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("approval request '{id}' not found (ids are numbers)"),
        )
    })
}

/// One approval request and the decisions that reference it.
#[utoipa::path(get, path = "/api/v1/approvals/{id}", tag = "approvals",
    params(("id" = i64, Path, description = "Request id")), security(("bearer" = [])),
    responses((status = 200, body = ApprovalDetail),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn approval(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<ApprovalDetail>, ApiError> {
    let id = approval_id(&id)?;
    Ok(Json(
        crate::approval(api.store.as_ref(), &caller.actor, id).await?,
    ))
}

/// Approves a pending request: the device's next poll gets its certificate.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", tag = "approvals",
    params(("id" = i64, Path, description = "Request id")),
    request_body(content = Option<CommentBody>), security(("bearer" = [])),
    responses((status = 200, body = ApprovalView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn approve(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Result<JsonBody<CommentBody>, ApiError>,
) -> Result<Json<ApprovalView>, ApiError> {
    let body = permitted_body(&caller, Permission::Operate, body)?;
    let id = approval_id(&id)?;
    let record = crate::decide_request(
        api.store.as_ref(),
        &caller.actor,
        id,
        true,
        body.comment.as_deref(),
    )
    .await?;
    Ok(Json(record.into()))
}

/// A rejection.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Why (the device is told it). Required.
    pub reason: Option<String>,
}

/// Rejects a pending request with a reason.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/reject", tag = "approvals",
    params(("id" = i64, Path, description = "Request id")),
    request_body = RejectBody, security(("bearer" = [])),
    responses((status = 200, body = ApprovalView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn reject(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Result<JsonBody<RejectBody>, ApiError>,
) -> Result<Json<ApprovalView>, ApiError> {
    let body = permitted_body(&caller, Permission::Operate, body)?;
    let id = approval_id(&id)?;
    let record = crate::decide_request(
        api.store.as_ref(),
        &caller.actor,
        id,
        false,
        body.reason.as_deref(),
    )
    .await?;
    Ok(Json(record.into()))
}

/// Decisions, newest first, with every rule's result.
#[utoipa::path(get, path = "/api/v1/decisions", tag = "decisions", params(DecisionListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<DecisionView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_decisions(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    QueryParams(q): QueryParams<DecisionListQuery>,
) -> Result<Json<Page<DecisionView>>, ApiError> {
    Ok(Json(
        crate::list_decisions(api.store.as_ref(), &caller.actor, q).await?,
    ))
}
