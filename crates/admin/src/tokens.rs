//! API tokens for automation: created (the secret shown once), listed, revoked.

use fleetca_store::{IdentityStore, NewToken, OperatorChange, TokenRecord};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use crate::secret::{Secret, TOKEN_PREFIX};
use crate::{rfc3339, Actor, AdminError, AdminStore, Audited, Permission, Role};

/// A token or user name: 1-64 letters, digits, '-', '_', '.' or '@'.
pub fn validate_identity_name(what: &str, name: &str) -> Result<(), AdminError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if valid {
        Ok(())
    } else {
        Err(AdminError::field(
            "name",
            format!("{what} name '{name}' must be 1-64 letters, digits, '-', '_', '.' or '@'"),
        ))
    }
}

/// A token just created: its secret is shown this once.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The bearer secret (`fca_...`).
    pub secret: Secret,
    /// End of validity, if any.
    pub expires_at: Option<OffsetDateTime>,
}

/// A token as listed (never its secret nor its hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    /// Name (`token:NAME` in the audit trail).
    pub name: String,
    /// Role it grants.
    pub role: String,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// By whom.
    pub created_by: String,
    /// End of validity (RFC 3339), if any.
    pub expires_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// Last request it authenticated (updated at most once a minute).
    pub last_used_at: Option<String>,
}

impl TokenView {
    fn of(t: &TokenRecord, now: OffsetDateTime) -> Self {
        let state = if t.revoked_at.is_some() {
            "revoked"
        } else if t.token.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        Self {
            name: t.token.name.clone(),
            role: t.token.role.clone(),
            state: state.into(),
            created_at: rfc3339(t.token.created_at),
            created_by: t.token.created_by.clone(),
            expires_at: t.token.expires_at.map(rfc3339),
            revoked_at: t.revoked_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
        }
    }
}

/// Creates an API token with `role`, valid for `expires_in` (`None`: until revoked).
pub async fn create_token<S: AdminStore + IdentityStore + ?Sized>(
    store: &S,
    actor: &Actor,
    name: &str,
    role: Role,
    expires_in: Option<Duration>,
) -> Result<CreatedToken, AdminError> {
    let now = OffsetDateTime::now_utc();
    let expires_at = expires_in.map(|d| now + d);
    let audited = Audited {
        actor,
        needs: Permission::Administer,
        action: "token-create",
        subject: format!("token:{name}"),
        facts: format!(
            "role {role}, expires {}",
            expires_at.map_or_else(|| "never".to_string(), rfc3339)
        ),
        comment: None,
    };
    audited.permitted(store).await?;
    validate_identity_name("token", name)?;
    if expires_in.is_some_and(|d| d <= Duration::ZERO) {
        return Err(AdminError::field(
            "expires_in",
            "a token's lifetime must be positive",
        ));
    }
    let secret = Secret::generate(TOKEN_PREFIX)?;
    let token = NewToken {
        name: name.to_string(),
        role: role.as_str().to_string(),
        secret_sha256: secret.sha256(),
        created_at: now,
        expires_at,
        created_by: actor.to_string(),
    };
    audited
        .apply(store, OperatorChange::CreateToken(token))
        .await?;
    Ok(CreatedToken {
        name: name.to_string(),
        role,
        secret,
        expires_at,
    })
}

/// Every token, by name.
pub async fn list_tokens<S: IdentityStore + ?Sized>(
    store: &S,
    actor: &Actor,
) -> Result<Vec<TokenView>, AdminError> {
    actor.require(Permission::Administer)?;
    let now = OffsetDateTime::now_utc();
    Ok(store
        .tokens()
        .await?
        .iter()
        .map(|t| TokenView::of(t, now))
        .collect())
}

/// Revokes a token: from now on it authenticates nothing; its name is never reused.
pub async fn revoke_token<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    name: &str,
) -> Result<(), AdminError> {
    let audited = Audited {
        actor,
        needs: Permission::Administer,
        action: "token-revoke",
        subject: format!("token:{name}"),
        facts: String::new(),
        comment: None,
    };
    audited.permitted(store).await?;
    audited
        .apply(
            store,
            OperatorChange::RevokeToken {
                name: name.to_string(),
            },
        )
        .await?;
    Ok(())
}
