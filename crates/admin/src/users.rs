//! Operator users (people; the console logs them in): argon2id passwords.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use fleetca_store::{IdentityStore, NewUser, OperatorChange, UserRecord};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::tokens::validate_identity_name;
use crate::{rfc3339, Actor, AdminError, AdminStore, Audited, Permission, Role};

/// A user as listed (never the password hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// Login name (`user:NAME` in the audit trail).
    pub name: String,
    /// Role.
    pub role: String,
    /// Whether the user may log in.
    pub enabled: bool,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last successful login.
    pub last_login_at: Option<String>,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            name: u.user.name.clone(),
            role: u.user.role.clone(),
            enabled: u.enabled,
            created_at: rfc3339(u.user.created_at),
            last_login_at: u.last_login_at.map(rfc3339),
        }
    }
}

/// The argon2id hash (PHC string) of an acceptable password for `user`, computed off the
/// async threads.
pub(crate) async fn hash_password(user: &str, password: String) -> Result<String, AdminError> {
    if let Some(why) = crate::password_weakness(&password, user) {
        return Err(AdminError::field(
            "password",
            format!("the password is too weak: {why}; use at least 12 characters with three of lower-case, upper-case, digits and other characters, or a passphrase of 20 or more"),
        ));
    }
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AdminError::Internal(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| AdminError::Internal(format!("password hashing stopped: {e}")))?
}

/// Whether `password` matches the PHC string `hash`, off the async threads.
pub(crate) async fn verify_password(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

fn audited<'a>(actor: &'a Actor, action: &'static str, name: &str, facts: String) -> Audited<'a> {
    Audited {
        actor,
        needs: Permission::Administer,
        action,
        subject: format!("user:{name}"),
        facts,
        comment: None,
    }
}

/// Adds an operator user with `role` and `password` (checked against the password policy).
pub async fn add_user<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    name: &str,
    role: Role,
    password: String,
) -> Result<(), AdminError> {
    let audited = audited(actor, "user-add", name, format!("role {role}"));
    audited.permitted(store).await?;
    validate_identity_name("user", name)?;
    let password_hash = hash_password(name, password).await?;
    let user = NewUser {
        name: name.to_string(),
        role: role.as_str().to_string(),
        password_hash,
        created_at: OffsetDateTime::now_utc(),
    };
    audited.apply(store, OperatorChange::AddUser(user)).await?;
    Ok(())
}

/// Every user, by name.
pub async fn list_users<S: IdentityStore + ?Sized>(
    store: &S,
    actor: &Actor,
) -> Result<Vec<UserView>, AdminError> {
    actor.require(Permission::Administer)?;
    Ok(store.users().await?.iter().map(UserView::from).collect())
}

/// Enables or disables a user; disabling ends the user's sessions.
pub async fn set_user_enabled<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    name: &str,
    enabled: bool,
    comment: Option<&str>,
) -> Result<(), AdminError> {
    let action = if enabled {
        "user-enable"
    } else {
        "user-disable"
    };
    let mut audited = audited(actor, action, name, String::new());
    audited.comment = comment;
    audited.permitted(store).await?;
    let change = OperatorChange::UserEnabled {
        name: name.to_string(),
        enabled,
    };
    audited.apply(store, change).await?;
    Ok(())
}

/// Changes a user's role; the user's sessions end.
pub async fn set_user_role<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    name: &str,
    role: Role,
) -> Result<(), AdminError> {
    let audited = audited(actor, "user-set-role", name, format!("role {role}"));
    audited.permitted(store).await?;
    let change = OperatorChange::UserRole {
        name: name.to_string(),
        role: role.as_str().to_string(),
    };
    audited.apply(store, change).await?;
    Ok(())
}

/// Replaces a user's password; the user's sessions end.
pub async fn set_user_password<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    name: &str,
    password: String,
) -> Result<(), AdminError> {
    let audited = audited(actor, "user-set-password", name, String::new());
    audited.permitted(store).await?;
    let password_hash = hash_password(name, password).await?;
    let change = OperatorChange::UserPassword {
        name: name.to_string(),
        password_hash,
    };
    audited.apply(store, change).await?;
    Ok(())
}

/// Removes a user and their sessions (the audit trail keeps what they did).
pub async fn remove_user<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    name: &str,
) -> Result<(), AdminError> {
    let audited = audited(actor, "user-remove", name, String::new());
    audited.permitted(store).await?;
    let change = OperatorChange::RemoveUser {
        name: name.to_string(),
    };
    audited.apply(store, change).await?;
    Ok(())
}
