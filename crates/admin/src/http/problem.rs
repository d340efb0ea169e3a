//! RFC 9457 problem details: every error of the API, with the status the operation's
//! error means. The only place where an [`AdminError`] becomes an HTTP status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{AdminError, Role};

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// The authentication challenge.
pub const CHALLENGE: &str = "Bearer realm=\"fleetca-admin\"";

/// One bad field.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer of the field in the request body, or `/NAME` of a query parameter.
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `https://fleetca.dev/problems/<slug>` or `about:blank`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short, the same for every problem of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, for people.
    pub detail: String,
    /// The bad fields, when known.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The least role that would be allowed (403).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_role: Option<Role>,
}

/// An error response: a problem and the headers that go with it.
#[derive(Debug, Clone)]
pub struct ApiError {
    problem: Box<Problem>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// A problem of `slug` (`about:blank` when empty).
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            problem: Box::new(Problem {
                type_: if slug.is_empty() {
                    "about:blank".into()
                } else {
                    format!("https://fleetca.dev/problems/{slug}")
                },
                title: title.into(),
                status: status.as_u16(),
                detail: detail.into(),
                errors: Vec::new(),
                required_role: None,
            }),
            headers: Vec::new(),
        }
    }

    /// A 400 naming the bad field by its JSON pointer.
    pub fn bad_field(pointer: String, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail.clone(),
        );
        e.problem.errors.push(FieldError { pointer, detail });
        e
    }

    /// A 400 without a field.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }

    /// A 401 with the challenge; `invalid_token` when a credential was given.
    pub fn unauthenticated(detail: impl Into<String>, credential_given: bool) -> Self {
        let challenge = if credential_given {
            format!("{CHALLENGE}, error=\"invalid_token\"")
        } else {
            CHALLENGE.to_string()
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            detail,
        )
        .with_header(header::WWW_AUTHENTICATE, &challenge)
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// The problem.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let text = e.to_string();
        match e {
            AdminError::Invalid(_) => Self::bad_request(text),
            AdminError::InvalidField { field, detail } => {
                Self::bad_field(format!("/{field}"), detail)
            }
            AdminError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", text)
            }
            AdminError::Refused(_) | AdminError::Store(fleetca_store::StoreError::Limit { .. }) => {
                Self::new(StatusCode::CONFLICT, "state-conflict", "Conflict", text)
            }
            AdminError::Conflict(_) => {
                Self::new(StatusCode::CONFLICT, "name-in-use", "Name in use", text)
            }
            AdminError::Unavailable(_) => {
                Self::new(StatusCode::CONFLICT, "not-set-up", "Not set up", text)
            }
            AdminError::Forbidden { required, .. } => {
                let mut e = Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", text);
                e.problem.required_role = Some(required);
                e
            }
            AdminError::Unauthenticated(detail) => Self::unauthenticated(detail, true),
            AdminError::RateLimited { retry_after } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many failed authentications",
                text,
            )
            .with_header(
                header::RETRY_AFTER,
                &retry_after.as_secs().max(1).to_string(),
            ),
            AdminError::Store(e) => {
                tracing::error!(error = %e, "admin API: inventory error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the inventory failed; the server log says why",
                )
            }
            AdminError::Internal(e) => {
                tracing::error!(error = %e, "admin API: internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "an internal step failed; the server log says why",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            h.insert(name, value);
        }
        response
    }
}
