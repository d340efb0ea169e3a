//! The admin API: JSON over HTTPS at `/api/v1/`, RFC 9457 problems for every error, the
//! OpenAPI 3.1 document generated from the handlers at `/api/v1/openapi.json`.
//!
//! Handlers only parse the request, call one operation of this crate and render its
//! result: every rule (roles, validation, audit) lives in the operations.

mod auth_routes;
mod extract;
mod fleet_routes;
mod openapi;
mod problem;
mod registry_routes;
mod report_routes;
mod scep_routes;
mod server;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fleetca_pki::Issuer;
use fleetca_store::Store;
use utoipa_axum::router::OpenApiRouter;

pub use extract::{Remote, MAX_BODY};
pub use openapi::openapi;
pub use problem::{ApiError, FieldError, Problem, PROBLEM_JSON};
pub use server::{serve, tls_config, ConnectionLimits};

use crate::{FailureLimiter, SessionSettings, TierOf};

/// What the API serves from.
pub struct AdminApi {
    /// The inventory.
    pub store: Arc<dyn Store>,
    /// Session lengths.
    pub sessions: SessionSettings,
    /// Failed authentications per source.
    pub limiter: FailureLimiter,
    /// The registration CA, when loaded: issues station credentials.
    pub registration: Option<Arc<Issuer>>,
    /// The organization named in station credentials.
    pub organization: String,
    /// The configured EST labels (enrollment accounts may be limited to one).
    pub est_labels: Vec<String>,
    /// The escalation tier of a certificate, for the expiring report.
    pub tier_of: Option<TierOf>,
    /// Refusals that make a device "failing" in the statistics.
    pub failing_threshold: u32,
}

/// Every route of the API with its OpenAPI description.
fn routes() -> OpenApiRouter<Arc<AdminApi>> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(auth_routes::routes())
        .merge(fleet_routes::routes())
        .merge(registry_routes::routes())
        .merge(report_routes::routes())
        .merge(scep_routes::routes())
}

/// The API as an axum router (with `/api/v1/openapi.json`).
pub fn router(api: Arc<AdminApi>) -> axum::Router {
    let (router, doc) = routes().split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "no such resource (the API is under /api/v1/)",
            )
        })
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .layer(axum::middleware::map_response(no_store))
        .with_state(api)
}

/// Answers carry secrets (a new token, a session) and inventory data: no cache keeps them,
/// and no client guesses their type.
async fn no_store(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Turns axum's own error responses (405 with an empty body, a path it cannot decode in
/// plain text) into problems.
async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|t| !t.is_empty());
    let (slug, title, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "Method not allowed",
            "this resource does not take this method (see the Allow header)".to_string(),
        ),
        _ => (
            "",
            status.canonical_reason().unwrap_or("Error"),
            text.unwrap_or_else(|| "request refused".into()),
        ),
    };
    let mut out = ApiError::new(status, slug, title, detail).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}
