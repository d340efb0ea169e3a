//! Logging in and out, and turning a bearer secret into an [`Actor`].
//!
//! Failed logins and bad bearer secrets are audited (`admin-login` / `admin-auth`, outcome
//! `refused`, with the source address, never the secret) and counted per source by the
//! [`FailureLimiter`]: past its limit a source gets [`AdminError::RateLimited`] until the
//! window passes, whatever it sends.

use std::net::IpAddr;
use std::sync::OnceLock;

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::Argon2;
use fleetca_store::{AuditEvent, IdentityStore, NewSession, OperatorChange};
use time::{Duration, OffsetDateTime};

use crate::secret::{same_hash, sha256_hex, well_formed, Secret, SESSION_PREFIX, TOKEN_PREFIX};
use crate::users::verify_password;
use crate::{rfc3339, Actor, ActorKind, AdminError, AdminStore, FailureLimiter, Role};

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after the login, whatever its use.
    pub lifetime: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle: Duration::minutes(30),
            lifetime: Duration::hours(12),
        }
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The session secret (`fcs_...`), for `Authorization: Bearer` or the console's cookie.
    pub secret: Secret,
    /// The session's absolute end.
    pub expires_at: OffsetDateTime,
    /// The user.
    pub user: String,
    /// The user's role.
    pub role: Role,
}

/// Who a bearer secret authenticated.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The actor, with role and source.
    pub actor: Actor,
    /// For a session: the SHA-256 of its secret (what logout ends).
    pub session: Option<String>,
}

/// What a client is told for any failed login: never which part was wrong.
const LOGIN_REFUSED: &str = "wrong user name or password, or the user is disabled";
/// What a client is told for a bearer secret that authenticates nobody.
const TOKEN_REFUSED: &str = "the bearer token is unknown, expired or revoked";

/// A valid argon2id hash of a random password: an unknown user's login verifies against
/// it, so that it costs as long as a known user's (no timing oracle for user names).
fn decoy_hash() -> String {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY
        .get_or_init(|| {
            let mut bytes = [0u8; 24];
            let _ = aws_lc_rs::rand::fill(&mut bytes);
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(&bytes, &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
        .clone()
}

async fn refused<S: AdminStore + ?Sized>(
    store: &S,
    limiter: &FailureLimiter,
    source: IpAddr,
    action: &str,
    actor: String,
    why: &str,
) -> Result<(), AdminError> {
    limiter.fail(source);
    tracing::info!(%source, %actor, action, why, "admin authentication refused");
    store
        .append(AuditEvent {
            at: OffsetDateTime::now_utc(),
            actor,
            action: action.to_string(),
            subject: "admin-api".to_string(),
            outcome: "refused".to_string(),
            detail: format!("{why}; from {source}"),
        })
        .await?;
    Ok(())
}

/// Logs a user in with their password; returns a new session.
pub async fn login<S: AdminStore + IdentityStore + ?Sized>(
    store: &S,
    settings: &SessionSettings,
    limiter: &FailureLimiter,
    name: &str,
    password: &str,
    source: IpAddr,
) -> Result<LoggedIn, AdminError> {
    if let Some(retry_after) = limiter.blocked(source) {
        return Err(AdminError::RateLimited { retry_after });
    }
    let name_ok = crate::tokens::validate_identity_name("user", name).is_ok();
    let user = if name_ok {
        store.user(name).await?
    } else {
        None
    };
    let hash = user
        .as_ref()
        .map_or_else(decoy_hash, |u| u.user.password_hash.clone());
    let matches = verify_password(hash, password.to_string()).await;
    let role = user.as_ref().and_then(|u| u.user.role.parse::<Role>().ok());
    let why = match (&user, matches, role) {
        (None, _, _) => Some("unknown user"),
        (Some(_), false, _) => Some("wrong password"),
        (Some(u), true, _) if !u.enabled => Some("user disabled"),
        (Some(_), true, None) => Some("user has an unknown role"),
        (Some(_), true, Some(_)) => None,
    };
    let actor = if name_ok {
        format!("user:{name}")
    } else {
        "anonymous".to_string()
    };
    let (Some(role), None) = (role, why) else {
        let why = if name_ok {
            why.unwrap_or("refused")
        } else {
            "malformed user name"
        };
        refused(store, limiter, source, "admin-login", actor, why).await?;
        return Err(AdminError::Unauthenticated(LOGIN_REFUSED.into()));
    };
    let now = OffsetDateTime::now_utc();
    let secret = Secret::generate(SESSION_PREFIX)?;
    let expires_at = now + settings.lifetime;
    let session = NewSession {
        secret_sha256: secret.sha256(),
        user: name.to_string(),
        created_at: now,
        expires_at,
    };
    let event = AuditEvent {
        at: now,
        actor,
        action: "admin-login".into(),
        subject: "admin-api".into(),
        outcome: "granted".into(),
        detail: format!("session until {}; from {source}", rfc3339(expires_at)),
    };
    store
        .apply_audited(OperatorChange::Login(session), now, event)
        .await?;
    // Housekeeping: sessions that ended need not stay.
    if let Err(e) = store.purge_sessions(now, now - settings.idle).await {
        tracing::warn!(error = %e, "cannot purge ended sessions");
    }
    Ok(LoggedIn {
        secret,
        expires_at,
        user: name.to_string(),
        role,
    })
}

/// Ends the caller's session.
pub async fn logout<S: AdminStore + ?Sized>(
    store: &S,
    caller: &Authenticated,
) -> Result<(), AdminError> {
    let Some(session) = &caller.session else {
        return Err(AdminError::Invalid(
            "logout ends a login session; an API token is revoked instead (DELETE /api/v1/tokens/NAME)".into(),
        ));
    };
    let now = OffsetDateTime::now_utc();
    let event = AuditEvent {
        at: now,
        actor: caller.actor.to_string(),
        action: "admin-logout".into(),
        subject: "admin-api".into(),
        outcome: "granted".into(),
        detail: crate::with_source("session ended".into(), &caller.actor),
    };
    store
        .apply_audited(
            OperatorChange::Logout {
                secret_sha256: session.clone(),
            },
            now,
            event,
        )
        .await?;
    Ok(())
}

/// Authenticates the value of an `Authorization` header (`Bearer fca_...` or
/// `Bearer fcs_...`) from `source`.
pub async fn authenticate<S: AdminStore + IdentityStore + ?Sized>(
    store: &S,
    settings: &SessionSettings,
    limiter: &FailureLimiter,
    authorization: Option<&str>,
    source: IpAddr,
) -> Result<Authenticated, AdminError> {
    let Some(header) = authorization else {
        return Err(AdminError::Unauthenticated(
            "this needs a bearer token (Authorization: Bearer ...)".into(),
        ));
    };
    let secret = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .unwrap_or("");
    authenticate_secret(store, settings, limiter, secret, source).await
}

/// Authenticates a bearer secret itself (an API token, or a session as the web console
/// keeps it in its cookie) from `source`.
pub async fn authenticate_secret<S: AdminStore + IdentityStore + ?Sized>(
    store: &S,
    settings: &SessionSettings,
    limiter: &FailureLimiter,
    secret: &str,
    source: IpAddr,
) -> Result<Authenticated, AdminError> {
    if let Some(retry_after) = limiter.blocked(source) {
        return Err(AdminError::RateLimited { retry_after });
    }
    let now = OffsetDateTime::now_utc();
    let outcome = if well_formed(secret, TOKEN_PREFIX) {
        token(store, secret, now).await?
    } else if well_formed(secret, SESSION_PREFIX) {
        session(store, settings, secret, now).await?
    } else {
        Err("not a fleetca bearer token".to_string())
    };
    match outcome {
        Ok(authenticated) => Ok(Authenticated {
            actor: authenticated.actor.from_source(source),
            session: authenticated.session,
        }),
        Err(why) => {
            refused(
                store,
                limiter,
                source,
                "admin-auth",
                "anonymous".into(),
                &why,
            )
            .await?;
            Err(AdminError::Unauthenticated(TOKEN_REFUSED.into()))
        }
    }
}

/// The token `secret` names, or why it authenticates nobody.
async fn token<S: IdentityStore + ?Sized>(
    store: &S,
    secret: &str,
    now: OffsetDateTime,
) -> Result<Result<Authenticated, String>, AdminError> {
    let hash = sha256_hex(secret);
    let Some(record) = store.token_by_secret(&hash).await? else {
        return Ok(Err("unknown token".into()));
    };
    let token = &record.token;
    if !same_hash(&token.secret_sha256, &hash) {
        return Ok(Err("unknown token".into()));
    }
    if record.revoked_at.is_some() {
        return Ok(Err(format!("token:{} is revoked", token.name)));
    }
    if token.expires_at.is_some_and(|e| e <= now) {
        return Ok(Err(format!("token:{} expired", token.name)));
    }
    let Ok(role) = token.role.parse::<Role>() else {
        return Ok(Err(format!("token:{} has an unknown role", token.name)));
    };
    if record
        .last_used_at
        .is_none_or(|t| now - t >= Duration::minutes(1))
    {
        if let Err(e) = store.touch_token(&token.name, now).await {
            tracing::warn!(error = %e, token = %token.name, "cannot note the token's last use");
        }
    }
    Ok(Ok(Authenticated {
        actor: Actor::new(ActorKind::Token, token.name.clone(), role),
        session: None,
    }))
}

/// The session `secret` names, or why it authenticates nobody.
async fn session<S: IdentityStore + ?Sized>(
    store: &S,
    settings: &SessionSettings,
    secret: &str,
    now: OffsetDateTime,
) -> Result<Result<Authenticated, String>, AdminError> {
    let hash = sha256_hex(secret);
    let Some(record) = store.session_by_secret(&hash).await? else {
        return Ok(Err("unknown session".into()));
    };
    let session = &record.session;
    if !same_hash(&session.secret_sha256, &hash) {
        return Ok(Err("unknown session".into()));
    }
    if session.expires_at <= now {
        return Ok(Err(format!("session of user:{} expired", session.user)));
    }
    if now - record.last_seen_at >= settings.idle {
        return Ok(Err(format!(
            "session of user:{} idle too long",
            session.user
        )));
    }
    let user = store.user(&session.user).await?;
    let Some(user) = user.filter(|u| u.enabled) else {
        return Ok(Err(format!("user:{} is disabled or removed", session.user)));
    };
    let Ok(role) = user.user.role.parse::<Role>() else {
        return Ok(Err(format!("user:{} has an unknown role", session.user)));
    };
    // Idle time is measured from the last noted use; note it at most every tenth of the
    // idle timeout (and at most once a minute), not on every request.
    let refresh = std::cmp::min(settings.idle / 10_i32, Duration::minutes(1));
    if now - record.last_seen_at >= refresh {
        if let Err(e) = store.touch_session(&hash, now).await {
            tracing::warn!(error = %e, user = %session.user, "cannot note the session's use");
        }
    }
    Ok(Ok(Authenticated {
        actor: Actor::new(ActorKind::User, session.user.clone(), role),
        session: Some(hash),
    }))
}
