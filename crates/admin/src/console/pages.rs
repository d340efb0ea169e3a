//! The embedded stylesheet and script, and the console's "not found" page.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::render::error_page;

/// The console's one stylesheet.
const STYLESHEET: &str = include_str!("../../static/console.css");
/// The console's one script: progressive enhancement only (pages work without it).
const SCRIPT: &str = include_str!("../../static/console.js");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Embedded in the binary: it changes only with the binary.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// `GET /static/console.css`.
pub(crate) async fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}

/// `GET /static/console.js`.
pub(crate) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// Any path the console does not have.
pub(crate) async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page. The admin API is under /api/v1/.",
        None,
    )
}
