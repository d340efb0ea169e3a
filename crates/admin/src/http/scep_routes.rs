//! SCEP one-time challenge passwords (issue 20).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{permitted_body, Caller, JsonBody};
use super::problem::{ApiError, Problem};
use super::AdminApi;
use crate::{rfc3339, Permission};

pub(super) fn routes() -> OpenApiRouter<Arc<AdminApi>> {
    OpenApiRouter::new().routes(routes!(create_scep_challenge))
}

/// A new SCEP challenge's lifetime.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScepChallengeBody {
    /// How long the challenge may be used (default `24h`, at most `30d`).
    pub expires_in: Option<String>,
}

/// A SCEP challenge password, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScepChallengeResponse {
    /// The device it authenticates.
    pub device_serial: String,
    /// The one-time challenge password for the device's PKCSReq.
    pub challenge: String,
    /// End of validity (RFC 3339).
    pub expires_at: String,
}

/// Creates a one-time SCEP challenge password for a device's first enrollment.
#[utoipa::path(post, path = "/api/v1/devices/{serial}/scep-challenge", tag = "devices",
    params(("serial" = String, Path, description = "Device serial number")),
    request_body(content = Option<ScepChallengeBody>), security(("bearer" = [])),
    responses((status = 201, body = ScepChallengeResponse),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_scep_challenge(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(serial): Path<String>,
    body: Result<JsonBody<ScepChallengeBody>, ApiError>,
) -> Result<(StatusCode, Json<ScepChallengeResponse>), ApiError> {
    let body = permitted_body(&caller, Permission::Operate, body)?;
    let expires_in = crate::reads::duration("expires_in", body.expires_in.as_deref())?
        .unwrap_or(time::Duration::hours(24));
    let created =
        crate::create_scep_challenge(api.store.as_ref(), &caller.actor, &serial, expires_in)
            .await?;
    Ok((
        StatusCode::CREATED,
        Json(ScepChallengeResponse {
            device_serial: created.device_serial,
            challenge: created.secret.expose().to_string(),
            expires_at: rfc3339(created.expires_at),
        }),
    ))
}
