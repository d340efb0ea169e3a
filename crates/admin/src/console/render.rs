//! Turning templates and errors into responses, and reading form bodies.

use std::net::IpAddr;

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::auth::ConsoleUser;
use crate::http::{ApiError, Remote, MAX_BODY};
use crate::AdminError;

/// What the layout of every signed-in page shows: who is signed in, the logout form's
/// CSRF token and the current section.
#[derive(Debug, Clone)]
pub(crate) struct Chrome {
    pub(crate) user: String,
    pub(crate) role: &'static str,
    pub(crate) csrf: String,
    pub(crate) nav: &'static str,
    pub(crate) can_audit: bool,
}

/// A rendered page with `status`.
pub(crate) fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => {
            let mut r = (status, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "console: a template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; the server log says why",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    chrome: Option<Chrome>,
    status: u16,
    title: String,
    detail: String,
}

/// An error page (with the layout when someone is signed in).
pub(crate) fn error_page(
    status: StatusCode,
    title: &str,
    detail: &str,
    user: Option<&ConsoleUser>,
) -> Response {
    html(
        status,
        &ErrorPage {
            chrome: user.and_then(|u| u.chrome("")),
            status: status.as_u16(),
            title: title.to_string(),
            detail: detail.to_string(),
        },
    )
}

/// An operation's error as a page, with the status and text the API would give.
pub(crate) fn admin_error(e: AdminError, user: Option<&ConsoleUser>) -> Response {
    let api = ApiError::from(e);
    let p = api.problem();
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let detail = match &p.required_role {
        Some(role) => format!("{} (needs the {} role)", p.detail, role.as_str()),
        None => p.detail.clone(),
    };
    error_page(status, &p.title, &detail, user)
}

/// The answer to a state-changing form without this session's CSRF token.
pub(crate) fn csrf_refused(user: &ConsoleUser) -> Response {
    tracing::info!(actor = %user.actor(), "console: form refused for a missing or wrong CSRF token");
    error_page(
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form did not carry the session's CSRF token (it may come from another site, or from before you signed in again). Nothing was changed; reload the page and try again.",
        Some(user),
    )
}

/// The source address of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<Remote>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |r| r.0),
        ))
    }
}

/// An `application/x-www-form-urlencoded` body (64 KiB at most).
#[derive(Debug)]
pub(crate) struct FormBody<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for FormBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, _: &S) -> Result<Self, Response> {
        let bad = |detail: &str| error_page(StatusCode::BAD_REQUEST, "Bad form", detail, None);
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.split(';').next().is_some_and(|e| {
                    e.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        if !is_form {
            return Err(error_page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Bad form",
                "a console form is sent as application/x-www-form-urlencoded",
                None,
            ));
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| bad("the form could not be read (over 64 KiB?)"))?;
        serde_urlencoded::from_bytes(&bytes)
            .map(Self)
            .map_err(|e| bad(&format!("the form is not what this page sends: {e}")))
    }
}

/// An optional text field of a form or query: empty means "not given".
pub(crate) fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}
