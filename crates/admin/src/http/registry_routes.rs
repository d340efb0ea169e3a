//! Stations, enrollment accounts, users and tokens.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{permitted_body, Caller, JsonBody};
use super::fleet_routes::CommentBody;
use super::problem::{ApiError, Problem};
use super::AdminApi;
use crate::{
    rfc3339, AccountRequest, AccountView, AdminError, Permission, Role, StationRequest,
    StationView, TokenView, UserView,
};
use fleetca_store::StationStatus;

pub(super) fn routes() -> OpenApiRouter<Arc<AdminApi>> {
    OpenApiRouter::new()
        .routes(routes!(list_stations, add_station))
        .routes(routes!(suspend_station))
        .routes(routes!(resume_station))
        .routes(routes!(remove_station))
        .routes(routes!(set_station_quota))
        .routes(routes!(list_accounts, add_account))
        .routes(routes!(disable_account))
        .routes(routes!(enable_account))
        .routes(routes!(list_users, add_user))
        .routes(routes!(remove_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(set_user_role))
        .routes(routes!(set_user_password))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// Every factory station with its quota use.
#[utoipa::path(get, path = "/api/v1/stations", tag = "stations", security(("bearer" = [])),
    responses((status = 200, body = Vec<StationView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_stations(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
) -> Result<Json<Vec<StationView>>, ApiError> {
    Ok(Json(
        crate::list_stations(api.store.as_ref(), &caller.actor).await?,
    ))
}

/// A station to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StationBody {
    /// Name (the credential's CN): 1-64 letters, digits, '-', '_', '.'.
    pub name: String,
    /// Regular expression every serial it asks for must match (whole serial).
    pub serial_pattern: String,
    /// `FROM..TO` range of serials.
    pub serial_range: Option<String>,
    /// Most birth certificates in all.
    pub quota: Option<u64>,
    /// Validity of the credential in days (default 365).
    pub valid_days: Option<u32>,
    /// Whether it may obtain a second birth certificate for a serial.
    pub allow_reissue: Option<bool>,
    /// The station's PKCS#10 request (PEM): the station makes its own key.
    pub csr: String,
    /// Recorded in the audit trail.
    pub comment: Option<String>,
}

/// A registered station and its credential.
#[derive(Debug, Serialize, ToSchema)]
pub struct StationCreated {
    /// The station.
    pub station: StationView,
    /// PEM: the station certificate, then the registration CA.
    pub certificate_chain: String,
}

/// Registers a factory station and issues its credential for the key in its CSR.
#[utoipa::path(post, path = "/api/v1/stations", tag = "stations", request_body = StationBody,
    security(("bearer" = [])),
    responses((status = 201, body = StationCreated),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn add_station(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    body: Result<JsonBody<StationBody>, ApiError>,
) -> Result<(StatusCode, Json<StationCreated>), ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    let credential = crate::add_station_from_csr(
        api.store.as_ref(),
        &caller.actor,
        api.registration.as_deref(),
        &api.organization,
        StationRequest {
            name: body.name.clone(),
            serial_pattern: body.serial_pattern,
            serial_range: body.serial_range,
            quota: body.quota,
            valid_days: body.valid_days.unwrap_or(365),
            allow_reissue: body.allow_reissue.unwrap_or(false),
        },
        &body.csr,
        body.comment.as_deref(),
    )
    .await?;
    let station = crate::list_stations(api.store.as_ref(), &caller.actor)
        .await?
        .into_iter()
        .find(|s| s.name == body.name)
        .ok_or_else(|| AdminError::NotFound(format!("station '{}'", body.name)))?;
    Ok((
        StatusCode::CREATED,
        Json(StationCreated {
            station,
            certificate_chain: credential.chain_pem,
        }),
    ))
}

async fn station_status(
    api: &AdminApi,
    caller: &crate::Authenticated,
    name: &str,
    status: StationStatus,
    comment: Option<&str>,
) -> Result<StatusCode, ApiError> {
    crate::set_station_status(api.store.as_ref(), &caller.actor, name, status, comment).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Suspends a station (effective on its next request).
#[utoipa::path(post, path = "/api/v1/stations/{name}/suspend", tag = "stations",
    params(("name" = String, Path)), request_body(content = Option<CommentBody>),
    security(("bearer" = [])),
    responses((status = 204, description = "Suspended"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn suspend_station(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<JsonBody<CommentBody>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    station_status(
        &api,
        &caller,
        &name,
        StationStatus::Suspended,
        body.comment.as_deref(),
    )
    .await
}

/// Resumes a suspended station.
#[utoipa::path(post, path = "/api/v1/stations/{name}/resume", tag = "stations",
    params(("name" = String, Path)), request_body(content = Option<CommentBody>),
    security(("bearer" = [])),
    responses((status = 204, description = "Resumed"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn resume_station(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<JsonBody<CommentBody>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    station_status(
        &api,
        &caller,
        &name,
        StationStatus::Active,
        body.comment.as_deref(),
    )
    .await
}

/// Removes a station for good (its name is never used again).
#[utoipa::path(delete, path = "/api/v1/stations/{name}", tag = "stations",
    params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Removed"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn remove_station(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    station_status(&api, &caller, &name, StationStatus::Removed, None).await
}

/// A station quota.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    /// Most birth certificates in all; `null`: no quota.
    pub quota: Option<u64>,
    /// Recorded in the audit trail.
    pub comment: Option<String>,
}

/// Sets a station's quota.
#[utoipa::path(put, path = "/api/v1/stations/{name}/quota", tag = "stations",
    params(("name" = String, Path)), request_body = QuotaBody, security(("bearer" = [])),
    responses((status = 204, description = "Set"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn set_station_quota(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<JsonBody<QuotaBody>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    crate::set_station_quota(
        api.store.as_ref(),
        &caller.actor,
        &name,
        body.quota,
        body.comment.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every EST enrollment account.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Vec<AccountView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_accounts(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    Ok(Json(
        crate::list_accounts(api.store.as_ref(), &caller.actor).await?,
    ))
}

/// An enrollment account to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    /// HTTP Basic user name.
    pub name: String,
    /// Its password (at least 12 characters; see the password policy).
    pub password: String,
    /// EST label it is limited to.
    pub label: Option<String>,
    /// Regular expression the whole serial must match.
    pub serial_pattern: Option<String>,
    /// Without a pattern: any serial.
    pub any_serial: Option<bool>,
    /// Also devices the inventory already knows.
    pub allow_known_devices: Option<bool>,
    /// Recorded in the audit trail.
    pub comment: Option<String>,
}

/// Adds an EST enrollment account.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = AccountBody,
    security(("bearer" = [])),
    responses((status = 201, body = AccountView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn add_account(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    body: Result<JsonBody<AccountBody>, ApiError>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    let name = body.name.clone();
    crate::create_account(
        api.store.as_ref(),
        &caller.actor,
        &api.est_labels,
        AccountRequest {
            name: body.name,
            password: body.password,
            label: body.label,
            serial_pattern: body.serial_pattern,
            any_serial: body.any_serial.unwrap_or(false),
            known_devices: body.allow_known_devices.unwrap_or(false),
        },
        body.comment.as_deref(),
    )
    .await?;
    let account = crate::list_accounts(api.store.as_ref(), &caller.actor)
        .await?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| AdminError::NotFound(format!("account '{name}'")))?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// Disables an enrollment account.
#[utoipa::path(post, path = "/api/v1/accounts/{name}/disable", tag = "accounts",
    params(("name" = String, Path)), request_body(content = Option<CommentBody>),
    security(("bearer" = [])),
    responses((status = 204, description = "Disabled"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn disable_account(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<JsonBody<CommentBody>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    crate::set_account_enabled(
        api.store.as_ref(),
        &caller.actor,
        &name,
        false,
        body.comment.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables an enrollment account.
#[utoipa::path(post, path = "/api/v1/accounts/{name}/enable", tag = "accounts",
    params(("name" = String, Path)), request_body(content = Option<CommentBody>),
    security(("bearer" = [])),
    responses((status = 204, description = "Enabled"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn enable_account(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<JsonBody<CommentBody>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    crate::set_account_enabled(
        api.store.as_ref(),
        &caller.actor,
        &name,
        true,
        body.comment.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every operator user.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<UserView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_users(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(
        crate::list_users(api.store.as_ref(), &caller.actor).await?,
    ))
}

/// A user to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Password (at least 12 characters; see the password policy).
    pub password: String,
}

/// Adds an operator user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = UserBody,
    security(("bearer" = [])),
    responses((status = 201, body = UserView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn add_user(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    body: Result<JsonBody<UserBody>, ApiError>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    crate::add_user(
        api.store.as_ref(),
        &caller.actor,
        &body.name,
        body.role,
        body.password,
    )
    .await?;
    let user = crate::list_users(api.store.as_ref(), &caller.actor)
        .await?
        .into_iter()
        .find(|u| u.name == body.name)
        .ok_or_else(|| AdminError::NotFound(format!("user '{}'", body.name)))?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Removes a user and their sessions.
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Removed"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn remove_user(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    crate::remove_user(api.store.as_ref(), &caller.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables a user (their sessions end).
#[utoipa::path(post, path = "/api/v1/users/{name}/disable", tag = "users",
    params(("name" = String, Path)), request_body(content = Option<CommentBody>),
    security(("bearer" = [])),
    responses((status = 204, description = "Disabled"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn disable_user(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<JsonBody<CommentBody>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    crate::set_user_enabled(
        api.store.as_ref(),
        &caller.actor,
        &name,
        false,
        body.comment.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables a user.
#[utoipa::path(post, path = "/api/v1/users/{name}/enable", tag = "users",
    params(("name" = String, Path)), request_body(content = Option<CommentBody>),
    security(("bearer" = [])),
    responses((status = 204, description = "Enabled"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn enable_user(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<JsonBody<CommentBody>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    crate::set_user_enabled(
        api.store.as_ref(),
        &caller.actor,
        &name,
        true,
        body.comment.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// The new role.
    pub role: Role,
}

/// Changes a user's role (their sessions end).
#[utoipa::path(put, path = "/api/v1/users/{name}/role", tag = "users",
    params(("name" = String, Path)), request_body = RoleBody, security(("bearer" = [])),
    responses((status = 204, description = "Set"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn set_user_role(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<JsonBody<RoleBody>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    crate::set_user_role(api.store.as_ref(), &caller.actor, &name, body.role).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// The new password.
    pub password: String,
}

/// Replaces a user's password (their sessions end).
#[utoipa::path(put, path = "/api/v1/users/{name}/password", tag = "users",
    params(("name" = String, Path)), request_body = PasswordBody, security(("bearer" = [])),
    responses((status = 204, description = "Set"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn set_user_password(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<JsonBody<PasswordBody>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    crate::set_user_password(api.store.as_ref(), &caller.actor, &name, body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every API token (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_tokens(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    Ok(Json(
        crate::list_tokens(api.store.as_ref(), &caller.actor).await?,
    ))
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// Name (`token:NAME` in the audit trail; never reused).
    pub name: String,
    /// Role it grants.
    pub role: Role,
    /// Lifetime (`90d`); none: until revoked.
    pub expires_in: Option<String>,
}

/// A created token: the secret is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The bearer secret (`fca_...`).
    pub token: String,
    /// End of validity.
    pub expires_at: Option<String>,
}

/// Creates an API token.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenBody,
    security(("bearer" = [])),
    responses((status = 201, body = TokenCreated),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_token(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    body: Result<JsonBody<TokenBody>, ApiError>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let body = permitted_body(&caller, Permission::Administer, body)?;
    let expires_in = crate::reads::duration("expires_in", body.expires_in.as_deref())?;
    let created = crate::create_token(
        api.store.as_ref(),
        &caller.actor,
        &body.name,
        body.role,
        expires_in,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            name: created.name,
            role: created.role,
            token: created.secret.expose().to_string(),
            expires_at: created.expires_at.map(rfc3339),
        }),
    ))
}

/// Revokes an API token.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Revoked"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn revoke_token(
    State(api): State<Arc<AdminApi>>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    crate::revoke_token(api.store.as_ref(), &caller.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
