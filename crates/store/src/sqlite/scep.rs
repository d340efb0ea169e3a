//! SCEP challenges and transactions on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use super::rows::{time_at, unix};
use super::SqliteStore;
use crate::scep::{NewScepChallenge, ScepStore, ScepTransaction};
use crate::StoreError;

const TRANSACTION_COLUMNS: &str =
    "transaction_id, key_sha256, label, secret_device, csr, created_at, certificate_serial";

fn transaction_from_row(r: &Row<'_>) -> rusqlite::Result<Result<ScepTransaction, StoreError>> {
    let (transaction_id, key_sha256): (String, String) = (r.get(0)?, r.get(1)?);
    let (label, secret_device): (Option<String>, Option<String>) = (r.get(2)?, r.get(3)?);
    let (csr, created_at): (Vec<u8>, i64) = (r.get(4)?, r.get(5)?);
    let certificate_serial: Option<String> = r.get(6)?;
    Ok(time_at(created_at).map(|created_at| ScepTransaction {
        transaction_id,
        key_sha256,
        label,
        secret_device,
        csr,
        created_at,
        certificate_serial,
    }))
}

pub(super) fn create_challenge_in(
    conn: &Connection,
    c: &NewScepChallenge,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO scep_challenges (secret_sha256, device_serial, created_at, expires_at,
           created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        c.secret_sha256,
        c.device_serial,
        unix(c.created_at),
        unix(c.expires_at),
        c.created_by
    ])
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict("SCEP challenge".into()),
        other => other,
    })?;
    Ok(())
}

fn transaction_in(conn: &Connection, id: &str) -> Result<Option<ScepTransaction>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {TRANSACTION_COLUMNS} FROM scep_transactions WHERE transaction_id = ?1"
    ))?
    .query_row([id], transaction_from_row)
    .optional()?
    .transpose()
}

#[async_trait]
impl ScepStore for SqliteStore {
    async fn consume_scep_challenge(
        &self,
        secret_sha256: &str,
        at: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let (secret, at) = (secret_sha256.to_string(), unix(at));
        self.inner
            .writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE scep_challenges SET used_at = ?2
                         WHERE secret_sha256 = ?1 AND used_at IS NULL AND expires_at > ?2
                         RETURNING device_serial",
                    )?
                    .query_row(params![secret, at], |r| r.get(0))
                    .optional()?)
            })
            .await
    }

    async fn record_scep_transaction(
        &self,
        t: ScepTransaction,
    ) -> Result<ScepTransaction, StoreError> {
        self.inner
            .writer
            .write(move |conn| {
                if let Some(known) = transaction_in(conn, &t.transaction_id)? {
                    return if known.key_sha256 == t.key_sha256 {
                        Ok(known)
                    } else {
                        Err(StoreError::Conflict(format!(
                            "SCEP transaction {} was started with another key",
                            t.transaction_id
                        )))
                    };
                }
                conn.prepare_cached(
                    "INSERT INTO scep_transactions (transaction_id, key_sha256, label,
                       secret_device, csr, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    t.transaction_id,
                    t.key_sha256,
                    t.label,
                    t.secret_device,
                    t.csr,
                    unix(t.created_at)
                ])?;
                Ok(t)
            })
            .await
    }

    async fn complete_scep_transaction(
        &self,
        transaction_id: &str,
        certificate_serial: &str,
    ) -> Result<(), StoreError> {
        let (id, serial) = (transaction_id.to_string(), certificate_serial.to_string());
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE scep_transactions SET certificate_serial = ?2 WHERE transaction_id = ?1",
                )?
                .execute(params![id, serial])?;
                Ok(())
            })
            .await
    }

    async fn scep_transaction(
        &self,
        transaction_id: &str,
    ) -> Result<Option<ScepTransaction>, StoreError> {
        self.read_now(|conn| transaction_in(conn, transaction_id))
    }
}
