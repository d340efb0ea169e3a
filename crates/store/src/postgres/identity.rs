//! API tokens, operator users and their sessions on PostgreSQL: the changes (applied by
//! `operator.rs` with their audit event, in one transaction; a user's row is locked
//! first, so concurrent changes of one user serialise) and the reads.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::rows::{opt_time, time_at, unix};
use super::PostgresStore;
use crate::identity::{
    IdentityStore, NewSession, NewToken, NewUser, SessionRecord, TokenRecord, UserRecord,
};
use crate::StoreError;

/// How often a token's `last_used_at` is written at most (seconds): every request reads
/// the token, few need to write.
const TOKEN_TOUCH_INTERVAL: i64 = 60;

const TOKEN_COLUMNS: &str =
    "name, role, secret_sha256, created_at, expires_at, created_by, revoked_at, last_used_at";
const USER_COLUMNS: &str = "name, role, password_hash, created_at, enabled, last_login_at";
const SESSION_COLUMNS: &str = "secret_sha256, user_name, created_at, expires_at, last_seen_at";

fn token_from_row(r: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        token: NewToken {
            name: r.try_get(0)?,
            role: r.try_get(1)?,
            secret_sha256: r.try_get(2)?,
            created_at: time_at(r.try_get(3)?)?,
            expires_at: opt_time(r.try_get(4)?)?,
            created_by: r.try_get(5)?,
        },
        revoked_at: opt_time(r.try_get(6)?)?,
        last_used_at: opt_time(r.try_get(7)?)?,
    })
}

fn user_from_row(r: &Row) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        user: NewUser {
            name: r.try_get(0)?,
            role: r.try_get(1)?,
            password_hash: r.try_get(2)?,
            created_at: time_at(r.try_get(3)?)?,
        },
        enabled: r.try_get(4)?,
        last_login_at: opt_time(r.try_get(5)?)?,
    })
}

fn session_from_row(r: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        session: NewSession {
            secret_sha256: r.try_get(0)?,
            user: r.try_get(1)?,
            created_at: time_at(r.try_get(2)?)?,
            expires_at: time_at(r.try_get(3)?)?,
        },
        last_seen_at: time_at(r.try_get(4)?)?,
    })
}

/// Names a conflict after the thing whose name is taken.
fn named_conflict(what: &str, name: &str, e: tokio_postgres::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("{what} '{name}'")),
        other => other,
    }
}

pub(super) async fn create_token_in(tx: &Transaction<'_>, t: &NewToken) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO api_tokens (name, role, secret_sha256, created_at, expires_at,
               created_by) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &t.name,
            &t.role,
            &t.secret_sha256,
            &unix(t.created_at),
            &t.expires_at.map(unix),
            &t.created_by,
        ],
    )
    .await
    .map_err(|e| named_conflict("token", &t.name, e))?;
    Ok(())
}

pub(super) async fn revoke_token_in(
    tx: &Transaction<'_>,
    name: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("SELECT revoked_at FROM api_tokens WHERE name = $1 FOR UPDATE")
        .await?;
    let revoked: Option<i64> = match tx.query_opt(&stmt, &[&name]).await? {
        None => return Err(StoreError::NotFound(format!("token '{name}'"))),
        Some(row) => row.try_get(0)?,
    };
    if revoked.is_some() {
        return Err(StoreError::Refused(format!(
            "token '{name}' is already revoked"
        )));
    }
    let stmt = tx
        .prepare_cached("UPDATE api_tokens SET revoked_at = $2 WHERE name = $1")
        .await?;
    tx.execute(&stmt, &[&name, &unix(at)]).await?;
    Ok(())
}

pub(super) async fn add_user_in(tx: &Transaction<'_>, u: &NewUser) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO operator_users (name, role, password_hash, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[&u.name, &u.role, &u.password_hash, &unix(u.created_at)],
    )
    .await
    .map_err(|e| named_conflict("user", &u.name, e))?;
    Ok(())
}

/// Locks the user's row and returns its (role, enabled), or NotFound.
async fn lock_user(tx: &Transaction<'_>, name: &str) -> Result<(String, bool), StoreError> {
    let stmt = tx
        .prepare_cached("SELECT role, enabled FROM operator_users WHERE name = $1 FOR UPDATE")
        .await?;
    match tx.query_opt(&stmt, &[&name]).await? {
        Some(row) => Ok((row.try_get(0)?, row.try_get(1)?)),
        None => Err(StoreError::NotFound(format!("user '{name}'"))),
    }
}

async fn end_sessions(tx: &Transaction<'_>, user: &str) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("DELETE FROM operator_sessions WHERE user_name = $1")
        .await?;
    tx.execute(&stmt, &[&user]).await?;
    Ok(())
}

pub(super) async fn set_user_enabled_in(
    tx: &Transaction<'_>,
    name: &str,
    enabled: bool,
) -> Result<(), StoreError> {
    let (_, was) = lock_user(tx, name).await?;
    if was == enabled {
        return Err(StoreError::Refused(format!(
            "user '{name}' is already {}",
            if enabled { "enabled" } else { "disabled" }
        )));
    }
    let stmt = tx
        .prepare_cached("UPDATE operator_users SET enabled = $2 WHERE name = $1")
        .await?;
    tx.execute(&stmt, &[&name, &enabled]).await?;
    if !enabled {
        end_sessions(tx, name).await?;
    }
    Ok(())
}

pub(super) async fn set_user_role_in(
    tx: &Transaction<'_>,
    name: &str,
    role: &str,
) -> Result<(), StoreError> {
    let (was, _) = lock_user(tx, name).await?;
    if was == role {
        return Err(StoreError::Refused(format!(
            "user '{name}' already has the role {role}"
        )));
    }
    let stmt = tx
        .prepare_cached("UPDATE operator_users SET role = $2 WHERE name = $1")
        .await?;
    tx.execute(&stmt, &[&name, &role]).await?;
    end_sessions(tx, name).await
}

pub(super) async fn set_user_password_in(
    tx: &Transaction<'_>,
    name: &str,
    password_hash: &str,
) -> Result<(), StoreError> {
    lock_user(tx, name).await?;
    let stmt = tx
        .prepare_cached("UPDATE operator_users SET password_hash = $2 WHERE name = $1")
        .await?;
    tx.execute(&stmt, &[&name, &password_hash]).await?;
    end_sessions(tx, name).await
}

pub(super) async fn remove_user_in(tx: &Transaction<'_>, name: &str) -> Result<(), StoreError> {
    lock_user(tx, name).await?;
    end_sessions(tx, name).await?;
    let stmt = tx
        .prepare_cached("DELETE FROM operator_users WHERE name = $1")
        .await?;
    tx.execute(&stmt, &[&name]).await?;
    Ok(())
}

pub(super) async fn login_in(
    tx: &Transaction<'_>,
    s: &NewSession,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let (_, enabled) = lock_user(tx, &s.user).await?;
    if !enabled {
        return Err(StoreError::Refused(format!(
            "user '{}' is disabled",
            s.user
        )));
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO operator_sessions (secret_sha256, user_name, created_at, expires_at,
               last_seen_at) VALUES ($1, $2, $3, $4, $3)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &s.secret_sha256,
            &s.user,
            &unix(s.created_at),
            &unix(s.expires_at),
        ],
    )
    .await
    .map_err(|e| named_conflict("session of user", &s.user, e))?;
    let stmt = tx
        .prepare_cached("UPDATE operator_users SET last_login_at = $2 WHERE name = $1")
        .await?;
    tx.execute(&stmt, &[&s.user, &unix(at)]).await?;
    Ok(())
}

pub(super) async fn logout_in(tx: &Transaction<'_>, secret_sha256: &str) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("DELETE FROM operator_sessions WHERE secret_sha256 = $1")
        .await?;
    if tx.execute(&stmt, &[&secret_sha256]).await? == 0 {
        return Err(StoreError::NotFound("session".into()));
    }
    Ok(())
}

#[async_trait]
impl IdentityStore for PostgresStore {
    async fn token_by_secret(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_sha256 = $1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&secret_sha256])
            .await?
            .map(|r| token_from_row(&r))
            .transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name"
            ))
            .await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    async fn touch_token(&self, name: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE api_tokens SET last_used_at = $2
                 WHERE name = $1 AND (last_used_at IS NULL OR last_used_at <= $3)",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[&name, &unix(at), &(unix(at) - TOKEN_TOUCH_INTERVAL)],
            )
            .await?;
        Ok(())
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM operator_users WHERE name = $1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&name])
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM operator_users ORDER BY name"
            ))
            .await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn session_by_secret(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM operator_sessions WHERE secret_sha256 = $1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&secret_sha256])
            .await?
            .map(|r| session_from_row(&r))
            .transpose()
    }

    async fn touch_session(
        &self,
        secret_sha256: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        // Only forward (requests may finish out of order), and no write in the same second.
        let stmt = client
            .prepare_cached(
                "UPDATE operator_sessions SET last_seen_at = $2
                 WHERE secret_sha256 = $1 AND last_seen_at < $2",
            )
            .await?;
        client.execute(&stmt, &[&secret_sha256, &unix(at)]).await?;
        Ok(())
    }

    async fn purge_sessions(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "DELETE FROM operator_sessions WHERE expires_at <= $1 OR last_seen_at < $2",
            )
            .await?;
        Ok(client
            .execute(&stmt, &[&unix(now), &unix(idle_before)])
            .await?)
    }
}
