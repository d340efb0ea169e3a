//! Signing in and out of the console, the signed-in user of a request, and the CSRF token
//! of each session.
//!
//! The session is the operations layer's login session (`fcs_...`, idle timeout and
//! lifetime enforced by [`crate::authenticate`]); the console only carries its secret in a
//! cookie. The CSRF token is HMAC-SHA256 of a fixed label keyed by that secret: it changes
//! with every session, needs no storage (any node can check it), and cannot be computed by
//! a page that cannot read the HttpOnly cookie.

use std::sync::Arc;

use askama::Template;
use aws_lc_rs::hmac;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;

use super::render::{self, html, Chrome, ClientAddr, FormBody};
use super::{Console, State};
use crate::http::Remote;
use crate::{Actor, AdminError, Authenticated, Permission};

/// The cookie that carries the session secret.
pub const SESSION_COOKIE: &str = "fleetca_session";

/// The label the CSRF token is an HMAC of.
const CSRF_LABEL: &[u8] = b"fleetca console csrf v1";

/// The CSRF token of the session whose secret is `secret`.
pub(crate) fn csrf_token(secret: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, CSRF_LABEL);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// Whether `given` is the CSRF token of the session `secret` (constant time).
pub(crate) fn csrf_matches(secret: &str, given: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(given) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, CSRF_LABEL, &given).is_ok()
}

/// The session secret in the request's cookies, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that carries a new session.
fn session_set_cookie(secret: &str) -> String {
    format!("{SESSION_COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that removes the session cookie.
const CLEAR_COOKIE: &str = "fleetca_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0";

/// The signed-in user of a request. Pages that need one take it as an extractor; without
/// a live session the browser is sent to the login page.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleUser {
    pub(crate) auth: Authenticated,
    /// The session secret (from the cookie): keys the CSRF token.
    secret: String,
}

impl ConsoleUser {
    pub(crate) fn actor(&self) -> &Actor {
        &self.auth.actor
    }

    /// The session's CSRF token, for the forms of a page.
    pub(crate) fn csrf(&self) -> String {
        csrf_token(&self.secret)
    }

    /// Whether `given` is this session's CSRF token.
    pub(crate) fn csrf_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| csrf_matches(&self.secret, g))
    }

    /// The layout of a page for this user, `nav` naming the current section.
    pub(crate) fn chrome(&self, nav: &'static str) -> Option<Chrome> {
        let role = self.actor().role();
        Some(Chrome {
            user: self.actor().name().to_string(),
            role: role.as_str(),
            csrf: self.csrf(),
            nav,
            can_audit: role.allows(Permission::ReadAudit),
        })
    }

    /// Whether the user may run device, certificate and approval actions.
    pub(crate) fn can_operate(&self) -> bool {
        self.actor().role().allows(Permission::Operate)
    }

    /// Whether the user may change stations, accounts, users and tokens.
    pub(crate) fn can_administer(&self) -> bool {
        self.actor().role().allows(Permission::Administer)
    }
}

impl FromRequestParts<Arc<Console>> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Response> {
        let Some(secret) = session_cookie(&parts.headers) else {
            return Err(Redirect::to("/login").into_response());
        };
        let source = parts
            .extensions
            .get::<Remote>()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |r| r.0);
        let api = &console.api;
        match crate::authenticate_secret(
            api.store.as_ref(),
            &api.sessions,
            &api.limiter,
            &secret,
            source,
        )
        .await
        {
            Ok(auth) if auth.session.is_some() => Ok(Self { auth, secret }),
            // An API token in the cookie, or a session that ended (idle, lifetime, logout).
            Ok(_) | Err(AdminError::Unauthenticated(_)) => {
                let mut r = Redirect::to("/login?ended=1").into_response();
                r.headers_mut()
                    .insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
                Err(r)
            }
            Err(e) => Err(render::admin_error(e, None)),
        }
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    chrome: Option<Chrome>,
    notice: Option<&'static str>,
    error: Option<String>,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    ended: Option<String>,
    bye: Option<String>,
}

/// `GET /login`: the sign-in form.
pub(crate) async fn login_page(
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let notice = if q.ended.is_some() {
        Some("Your session ended (signed out, idle too long, or past its lifetime). Please sign in again.")
    } else if q.bye.is_some() {
        Some("You are signed out.")
    } else {
        None
    };
    html(
        StatusCode::OK,
        &LoginPage {
            chrome: None,
            notice,
            error: None,
            name: String::new(),
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    name: String,
    password: String,
}

/// `POST /login`: checks the password through the operations layer (audited, limited per
/// source) and sets the session cookie.
pub(crate) async fn login(
    axum::extract::State(console): State,
    ClientAddr(source): ClientAddr,
    FormBody(form): FormBody<LoginForm>,
) -> Response {
    let api = &console.api;
    let refused = |status: StatusCode, error: String| {
        html(
            status,
            &LoginPage {
                chrome: None,
                notice: None,
                error: Some(error),
                name: form.name.clone(),
            },
        )
    };
    match crate::login(
        api.store.as_ref(),
        &api.sessions,
        &api.limiter,
        form.name.trim(),
        &form.password,
        source,
    )
    .await
    {
        Ok(logged_in) => {
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&session_set_cookie(logged_in.secret.expose())) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(AdminError::Unauthenticated(why)) => refused(StatusCode::UNAUTHORIZED, why),
        Err(AdminError::RateLimited { retry_after }) => {
            let secs = retry_after.as_secs().max(1);
            let mut r = refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many failed sign-ins from your address; try again in {secs} s."),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(e) => render::admin_error(e, None),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /logout`: ends the session (audited) and removes the cookie.
pub(crate) async fn logout(
    axum::extract::State(console): State,
    user: ConsoleUser,
    FormBody(form): FormBody<CsrfForm>,
) -> Response {
    if !user.csrf_ok(form.csrf.as_deref()) {
        return render::csrf_refused(&user);
    }
    if let Err(e) = crate::logout(console.api.store.as_ref(), &user.auth).await {
        return render::admin_error(e, Some(&user));
    }
    let mut r = Redirect::to("/login?bye=1").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_token_is_per_session_and_checked() {
        let a = csrf_token("fcs_aaaa");
        let b = csrf_token("fcs_bbbb");
        assert_ne!(a, b);
        assert!(csrf_matches("fcs_aaaa", &a));
        assert!(!csrf_matches("fcs_aaaa", &b));
        assert!(!csrf_matches("fcs_aaaa", ""));
        assert!(!csrf_matches("fcs_aaaa", "not base64!"));
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; fleetca_session=fcs_x; b=2"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("fcs_x"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("fleetca_session="));
        assert_eq!(session_cookie(&h), None);
    }
}
