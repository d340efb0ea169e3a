//! API tokens, operator users and their sessions on SQLite: the changes (applied by
//! `operator.rs` with their audit event, in the writer's transaction) and the reads.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use super::rows::{time_at, unix};
use super::SqliteStore;
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

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<Result<TokenRecord, StoreError>> {
    let (name, role, secret_sha256): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
    let (created_at, expires_at): (i64, Option<i64>) = (r.get(3)?, r.get(4)?);
    let created_by: String = r.get(5)?;
    let (revoked_at, last_used_at): (Option<i64>, Option<i64>) = (r.get(6)?, r.get(7)?);
    Ok((|| {
        Ok(TokenRecord {
            token: NewToken {
                name,
                role,
                secret_sha256,
                created_at: time_at(created_at)?,
                expires_at: expires_at.map(time_at).transpose()?,
                created_by,
            },
            revoked_at: revoked_at.map(time_at).transpose()?,
            last_used_at: last_used_at.map(time_at).transpose()?,
        })
    })())
}

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<Result<UserRecord, StoreError>> {
    let (name, role, password_hash): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
    let (created_at, enabled, last_login_at): (i64, bool, Option<i64>) =
        (r.get(3)?, r.get(4)?, r.get(5)?);
    Ok((|| {
        Ok(UserRecord {
            user: NewUser {
                name,
                role,
                password_hash,
                created_at: time_at(created_at)?,
            },
            enabled,
            last_login_at: last_login_at.map(time_at).transpose()?,
        })
    })())
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Result<SessionRecord, StoreError>> {
    let (secret_sha256, user): (String, String) = (r.get(0)?, r.get(1)?);
    let (created_at, expires_at, last_seen_at): (i64, i64, i64) = (r.get(2)?, r.get(3)?, r.get(4)?);
    Ok((|| {
        Ok(SessionRecord {
            session: NewSession {
                secret_sha256,
                user,
                created_at: time_at(created_at)?,
                expires_at: time_at(expires_at)?,
            },
            last_seen_at: time_at(last_seen_at)?,
        })
    })())
}

/// Names a conflict after the thing whose name is taken.
fn named_conflict<'a>(what: &'a str, name: &'a str) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("{what} '{name}'")),
        other => other,
    }
}

pub(super) fn create_token_in(conn: &Connection, t: &NewToken) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO api_tokens (name, role, secret_sha256, created_at, expires_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        t.name,
        t.role,
        t.secret_sha256,
        unix(t.created_at),
        t.expires_at.map(unix),
        t.created_by
    ])
    .map_err(named_conflict("token", &t.name))?;
    Ok(())
}

pub(super) fn revoke_token_in(
    conn: &Connection,
    name: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let revoked: Option<Option<i64>> = conn
        .prepare_cached("SELECT revoked_at FROM api_tokens WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    match revoked {
        None => Err(StoreError::NotFound(format!("token '{name}'"))),
        Some(Some(_)) => Err(StoreError::Refused(format!(
            "token '{name}' is already revoked"
        ))),
        Some(None) => {
            conn.prepare_cached("UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1")?
                .execute(params![name, unix(at)])?;
            Ok(())
        }
    }
}

pub(super) fn add_user_in(conn: &Connection, u: &NewUser) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO operator_users (name, role, password_hash, created_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![u.name, u.role, u.password_hash, unix(u.created_at)])
    .map_err(named_conflict("user", &u.name))?;
    Ok(())
}

/// The user's (role, enabled), or NotFound.
fn user_state(conn: &Connection, name: &str) -> Result<(String, bool), StoreError> {
    conn.prepare_cached("SELECT role, enabled FROM operator_users WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("user '{name}'")))
}

fn end_sessions(conn: &Connection, user: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM operator_sessions WHERE user_name = ?1")?
        .execute([user])?;
    Ok(())
}

pub(super) fn set_user_enabled_in(
    conn: &Connection,
    name: &str,
    enabled: bool,
) -> Result<(), StoreError> {
    let (_, was) = user_state(conn, name)?;
    if was == enabled {
        return Err(StoreError::Refused(format!(
            "user '{name}' is already {}",
            if enabled { "enabled" } else { "disabled" }
        )));
    }
    conn.prepare_cached("UPDATE operator_users SET enabled = ?2 WHERE name = ?1")?
        .execute(params![name, enabled])?;
    if !enabled {
        end_sessions(conn, name)?;
    }
    Ok(())
}

pub(super) fn set_user_role_in(
    conn: &Connection,
    name: &str,
    role: &str,
) -> Result<(), StoreError> {
    let (was, _) = user_state(conn, name)?;
    if was == role {
        return Err(StoreError::Refused(format!(
            "user '{name}' already has the role {role}"
        )));
    }
    conn.prepare_cached("UPDATE operator_users SET role = ?2 WHERE name = ?1")?
        .execute(params![name, role])?;
    end_sessions(conn, name)
}

pub(super) fn set_user_password_in(
    conn: &Connection,
    name: &str,
    password_hash: &str,
) -> Result<(), StoreError> {
    user_state(conn, name)?;
    conn.prepare_cached("UPDATE operator_users SET password_hash = ?2 WHERE name = ?1")?
        .execute(params![name, password_hash])?;
    end_sessions(conn, name)
}

pub(super) fn remove_user_in(conn: &Connection, name: &str) -> Result<(), StoreError> {
    user_state(conn, name)?;
    end_sessions(conn, name)?;
    conn.prepare_cached("DELETE FROM operator_users WHERE name = ?1")?
        .execute([name])?;
    Ok(())
}

pub(super) fn login_in(
    conn: &Connection,
    s: &NewSession,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let (_, enabled) = user_state(conn, &s.user)?;
    if !enabled {
        return Err(StoreError::Refused(format!(
            "user '{}' is disabled",
            s.user
        )));
    }
    conn.prepare_cached(
        "INSERT INTO operator_sessions (secret_sha256, user_name, created_at, expires_at,
           last_seen_at) VALUES (?1, ?2, ?3, ?4, ?3)",
    )?
    .execute(params![
        s.secret_sha256,
        s.user,
        unix(s.created_at),
        unix(s.expires_at)
    ])
    .map_err(named_conflict("session of user", &s.user))?;
    conn.prepare_cached("UPDATE operator_users SET last_login_at = ?2 WHERE name = ?1")?
        .execute(params![s.user, unix(at)])?;
    Ok(())
}

pub(super) fn logout_in(conn: &Connection, secret_sha256: &str) -> Result<(), StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM operator_sessions WHERE secret_sha256 = ?1")?
        .execute([secret_sha256])?;
    if n == 0 {
        return Err(StoreError::NotFound("session".into()));
    }
    Ok(())
}

/// Runs a listing query and decodes every row.
fn collect<T>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    map: fn(&Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, map)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn token_by_secret(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.read_now(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_sha256 = ?1"
            ))?
            .query_row([secret_sha256], token_from_row)
            .optional()?
            .transpose()
        })
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(|conn| {
            collect(
                conn,
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name"),
                [],
                token_from_row,
            )
        })
        .await
    }

    async fn touch_token(&self, name: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        let (name, at) = (name.to_string(), unix(at));
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE api_tokens SET last_used_at = ?2
                     WHERE name = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2 - ?3)",
                )?
                .execute(params![name, at, TOKEN_TOUCH_INTERVAL])?;
                Ok(())
            })
            .await
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read_now(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM operator_users WHERE name = ?1"
            ))?
            .query_row([name], user_from_row)
            .optional()?
            .transpose()
        })
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|conn| {
            collect(
                conn,
                &format!("SELECT {USER_COLUMNS} FROM operator_users ORDER BY name"),
                [],
                user_from_row,
            )
        })
        .await
    }

    async fn session_by_secret(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.read_now(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM operator_sessions WHERE secret_sha256 = ?1"
            ))?
            .query_row([secret_sha256], session_from_row)
            .optional()?
            .transpose()
        })
    }

    async fn touch_session(
        &self,
        secret_sha256: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (secret, at) = (secret_sha256.to_string(), unix(at));
        self.inner
            .writer
            .write(move |conn| {
                // Only forward (requests may finish out of order), and no write when the
                // second is the same.
                conn.prepare_cached(
                    "UPDATE operator_sessions SET last_seen_at = ?2
                     WHERE secret_sha256 = ?1 AND last_seen_at < ?2",
                )?
                .execute(params![secret, at])?;
                Ok(())
            })
            .await
    }

    async fn purge_sessions(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let (now, idle) = (unix(now), unix(idle_before));
        self.inner
            .writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "DELETE FROM operator_sessions WHERE expires_at <= ?1 OR last_seen_at < ?2",
                    )?
                    .execute(params![now, idle])?;
                Ok(u64::try_from(n).unwrap_or(u64::MAX))
            })
            .await
    }
}
