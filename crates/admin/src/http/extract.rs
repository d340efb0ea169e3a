//! What handlers take from a request: the authenticated caller, a JSON body (64 KiB at
//! most, `application/json`, unknown fields refused) and query parameters, each failing
//! with a problem that names what is wrong.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use super::AdminApi;
use crate::Authenticated;

/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;

/// The TCP peer of the connection (set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub IpAddr);

/// The source address of a request.
pub(crate) fn source(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<Remote>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |r| r.0)
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Authenticated);

impl FromRequestParts<Arc<AdminApi>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<AdminApi>) -> Result<Self, ApiError> {
        let source = source(parts);
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            // Not visible ASCII: no secret of ours; authenticate() refuses and counts it.
            Some(v) => Some(v.to_str().unwrap_or("invalid")),
        };
        let given = header.is_some();
        crate::authenticate(
            api.store.as_ref(),
            &api.sessions,
            &api.limiter,
            header,
            source,
        )
        .await
        .map(Caller)
        .map_err(|e| match e {
            crate::AdminError::Unauthenticated(detail) => ApiError::unauthenticated(detail, given),
            other => ApiError::from(other),
        })
    }
}

/// The JSON pointer and text of a deserialization error.
fn pointer_of<E: std::fmt::Display>(
    path: &serde_path_to_error::Path,
    inner: &E,
) -> (String, String) {
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let text = inner.to_string();
    // A missing field is reported at its parent: point at the field.
    if let Some(rest) = text.split("missing field `").nth(1) {
        if let Some(name) = rest.split('`').next() {
            pointer.push('/');
            pointer.push_str(name);
        }
    }
    // serde_json adds " at line L column C": the pointer says where.
    let text = text
        .split(" at line ")
        .next()
        .unwrap_or(text.as_str())
        .to_string();
    (pointer, text)
}

/// A JSON request body of type `T`. An empty body reads as `{}` (for bodies whose fields
/// are all optional).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the request body is over {} KiB", MAX_BODY / 1024),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase());
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|e| {
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(s) = source {
                    if s.is::<http_body_util::LengthLimitError>() {
                        return too_large();
                    }
                    source = s.source();
                }
                ApiError::bad_request("the request body could not be read")
            })?;
        let body: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        if !bytes.is_empty() {
            let json = content_type.as_deref().is_some_and(|t| {
                let essence = t.split(';').next().unwrap_or("").trim();
                essence == "application/json"
            });
            if !json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "Unsupported media type",
                    "the request body must be JSON with Content-Type: application/json",
                ));
            }
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let (pointer, text) = pointer_of(e.path(), e.inner());
            if e.inner().is_syntax() || e.inner().is_eof() {
                ApiError::bad_request(format!("the request body is not valid JSON: {text}"))
            } else {
                ApiError::bad_field(pointer, text)
            }
        })?;
        de.end()
            .map_err(|_| ApiError::bad_request("the request body has data after the JSON value"))?;
        Ok(Self(value))
    }
}

/// Query parameters of type `T` (unknown ones refused).
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de).map(Self).map_err(|e| {
            let (pointer, text) = pointer_of(e.path(), e.inner());
            ApiError::bad_field(pointer, format!("query parameter: {text}"))
        })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// The source address of the request, as an extractor.
#[derive(Debug, Clone, Copy)]
pub struct SourceAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for SourceAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Self(source(parts)))
    }
}

/// The request body; when it is malformed, a 403 first if the caller's role could not make
/// the call anyway (the role is checked before the input, as the operations do; the
/// operation itself remains the authority and checks again).
pub(crate) fn permitted_body<T>(
    caller: &Authenticated,
    needs: crate::Permission,
    body: Result<JsonBody<T>, ApiError>,
) -> Result<T, ApiError> {
    match body {
        Ok(JsonBody(b)) => Ok(b),
        Err(e) => {
            caller.actor.require(needs)?;
            Err(e)
        }
    }
}

/// The query parameters; when they are malformed, a 403 first if the caller's role could
/// not make the call anyway.
pub(crate) fn permitted_query<T>(
    caller: &Authenticated,
    needs: crate::Permission,
    query: Result<QueryParams<T>, ApiError>,
) -> Result<T, ApiError> {
    match query {
        Ok(QueryParams(q)) => Ok(q),
        Err(e) => {
            caller.actor.require(needs)?;
            Err(e)
        }
    }
}
