//! Login, logout and who am I.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Caller, JsonBody, SourceAddr};
use super::problem::{ApiError, Problem};
use super::AdminApi;
use crate::{rfc3339, Role};

pub(super) fn routes() -> OpenApiRouter<Arc<AdminApi>> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
}

/// A login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// The session secret (`fcs_...`): send it as `Authorization: Bearer`.
    pub token: String,
    /// Its absolute end (it also ends after the idle timeout).
    pub expires_at: String,
    /// The user.
    pub user: String,
    /// The user's role.
    pub role: Role,
}

/// Logs an operator user in.
#[utoipa::path(post, path = "/api/v1/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
async fn login(
    State(api): State<Arc<AdminApi>>,
    SourceAddr(source): SourceAddr,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let logged_in = crate::login(
        api.store.as_ref(),
        &api.sessions,
        &api.limiter,
        &body.name,
        &body.password,
        source,
    )
    .await?;
    Ok(Json(LoginResponse {
        token: logged_in.secret.expose().to_string(),
        expires_at: rfc3339(logged_in.expires_at),
        user: logged_in.user,
        role: logged_in.role,
    }))
}

/// Ends the caller's session.
#[utoipa::path(post, path = "/api/v1/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Session ended"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn logout(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
) -> Result<StatusCode, ApiError> {
    crate::logout(api.store.as_ref(), &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `user:NAME` or `token:NAME`.
    pub actor: String,
    /// Role.
    pub role: Role,
}

/// Who the credential authenticates.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn me(Caller(caller): Caller) -> Json<Me> {
    Json(Me {
        actor: caller.actor.to_string(),
        role: caller.actor.role(),
    })
}
