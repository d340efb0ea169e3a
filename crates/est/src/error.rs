//! The only place where failures become HTTP statuses. Bodies are plain text a person can
//! act on; they never carry paths, SQL or key material.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

/// A refused or failed EST request.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EstError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or bad credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: refused by policy.
    #[error("refused by rule '{rule}': {reason}")]
    Forbidden {
        /// The rule that denied.
        rule: String,
        /// Why.
        reason: String,
    },
    /// 404: unknown path or label.
    #[error("{0}")]
    NotFound(String),
    /// 405: wrong method.
    #[error("method not allowed; use {allow}")]
    MethodNotAllowed {
        /// The allowed method.
        allow: &'static str,
    },
    /// 408: the body did not arrive in time.
    #[error("request body not received within {seconds} s")]
    Timeout {
        /// The limit.
        seconds: u64,
    },
    /// 413: body too large.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// 415: wrong content type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503: a dependency is unavailable; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// 503 with a chosen `Retry-After`: a rule could not be evaluated now (an inventory
    /// connector did not answer). Neither a certificate nor a denial.
    #[error("rule '{rule}' cannot be evaluated now (an inventory did not answer); retry in {retry_after} s")]
    RetryLater {
        /// The rule that could not be evaluated.
        rule: String,
        /// Seconds until the device should retry.
        retry_after: u64,
    },
    /// 429: too many failed password attempts for this account or from this source; the
    /// password was not checked.
    #[error("too many failed password attempts {scope}; retry in {retry_after} s")]
    TooManyAttempts {
        /// "for this account" or "from this address".
        scope: &'static str,
        /// Seconds until the back-off ends.
        retry_after: u64,
    },
    /// 500: a server-side failure (details are logged, not sent).
    #[error("internal error (logged on the server as {incident})")]
    Internal {
        /// Identifier to find the log line.
        incident: String,
    },
}

impl EstError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) | Self::RetryLater { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A server-side failure: logs the detail under a fresh incident id and returns the
    /// error the client sees.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        let incident = format!("{:016x}", rand_u64());
        tracing::error!(%incident, error = %detail, "internal error");
        Self::Internal { incident }
    }

    /// The response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let body = format!("{self}\n");
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            Self::Unauthenticated(_) => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"fleetca\""),
                );
            }
            Self::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            Self::Unavailable(_) => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
            }
            Self::RetryLater { retry_after, .. } | Self::TooManyAttempts { retry_after, .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        response
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // An incident id needs no cryptographic strength, but the OS RNG is what we have.
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return 0;
    }
    u64::from_le_bytes(b)
}
