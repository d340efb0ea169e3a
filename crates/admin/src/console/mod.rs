//! The web console: server-rendered HTML pages over the same operations as the admin API,
//! served by the admin listener at `/` (the API stays under `/api/v1/`).
//!
//! Every page is an askama template compiled into the binary; charts are SVG drawn on the
//! server by plotters; the one stylesheet and the one small script are embedded too, so
//! nothing is fetched at run time and every read page works without JavaScript.
//!
//! Sign-in is a login session of the operations layer (`fcs_...`) carried in a cookie
//! (`Secure; HttpOnly; SameSite=Strict`); every state-changing form carries a CSRF token
//! derived from that session's secret (HMAC-SHA256), checked before the operation runs.
//! Every response carries a strict Content-Security-Policy and the other security headers.

mod actions;
mod auth;
mod charts;
mod fleet_pages;
mod format;
mod overview;
mod pages;
mod render;
mod report_pages;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use time::Duration;
use tower::ServiceExt;

use crate::http::AdminApi;

pub use auth::SESSION_COOKIE;

/// What the console needs beyond the API's state.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSettings {
    /// Per profile, how long before expiry a device renews (the profile's validity less
    /// the point of its lifetime where the agent renews). The expiry timeline marks it.
    pub renewal_windows: BTreeMap<String, Duration>,
}

/// The console's state: the API's (store, sessions, limiter) and its own settings.
pub(crate) struct Console {
    pub(crate) api: Arc<AdminApi>,
    pub(crate) settings: ConsoleSettings,
}

pub(crate) type State = axum::extract::State<Arc<Console>>;

/// The Content-Security-Policy of every console response: nothing inline, nothing from
/// elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The admin listener's router: the console at `/`, the admin API under `/api/v1/`.
pub fn router(api: Arc<AdminApi>, settings: ConsoleSettings) -> axum::Router {
    let api_router = crate::http::router(Arc::clone(&api));
    let console = Arc::new(Console { api, settings });
    let pages = axum::Router::new()
        .route("/", get(overview::overview))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/devices", get(fleet_pages::devices))
        .route("/devices/{serial}", get(fleet_pages::device))
        .route(
            "/devices/{serial}/confirm",
            get(actions::confirm_device_action),
        )
        .route("/devices/{serial}/{action}", post(actions::device_action))
        .route("/certificates", get(fleet_pages::certificates))
        .route(
            "/certificates/{serial}/revoke",
            get(actions::confirm_revoke).post(actions::revoke),
        )
        .route("/approvals", get(fleet_pages::approvals))
        .route("/approvals/{id}/{decision}", post(actions::decide))
        .route("/stations", get(report_pages::stations))
        .route("/stations/{name}/{change}", post(actions::station_change))
        .route("/alerts", get(report_pages::alerts))
        .route("/audit", get(report_pages::audit))
        .route("/audit/verify", get(report_pages::audit_verify))
        .route("/static/console.css", get(pages::stylesheet))
        .route("/static/console.js", get(pages::script))
        .with_state(console)
        .layer(axum::middleware::map_response(security_headers));
    // Paths under /api/ go to the API (with its own problem+json errors); any other
    // unknown path gets the console's "not found" page.
    pages.fallback_service(tower::service_fn(move |req: Request| {
        let api_router = api_router.clone();
        async move {
            let path = req.uri().path();
            if path == "/api" || path.starts_with("/api/") {
                api_router.oneshot(req).await
            } else {
                Ok(security_headers(pages::not_found().await).await)
            }
        }
    }))
}

/// The security headers of every console response; pages are never cached.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
