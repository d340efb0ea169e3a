//! CMP secrets and transactions on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use super::rows::{time_at, unix};
use super::SqliteStore;
use crate::cmp::{CmpSecretRecord, CmpStore, CmpTransaction, CmpTransactionState, NewCmpSecret};
use crate::StoreError;

const SECRET_COLUMNS: &str = "reference, device_serial, secret_sha256, created_at, expires_at,
    created_by, consumed_at, consumed_by";
const TRANSACTION_COLUMNS: &str = "transaction_id, state, server_nonce, protection,
    device_serial, label, request_kind, request_der, certificate_serial, certificate_der,
    confirm_by, created_at, updated_at";

pub(super) fn create_secret_in(conn: &Connection, s: &NewCmpSecret) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO cmp_secrets (reference, device_serial, secret_sha256, created_at,
             expires_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        s.reference,
        s.device_serial,
        s.secret_sha256,
        unix(s.created_at),
        unix(s.expires_at),
        s.created_by
    ])?;
    Ok(())
}

fn secret_from_row(r: &Row<'_>) -> rusqlite::Result<Result<CmpSecretRecord, StoreError>> {
    let (reference, device_serial, secret_sha256): (String, String, String) =
        (r.get(0)?, r.get(1)?, r.get(2)?);
    let (created_at, expires_at, created_by): (i64, i64, String) =
        (r.get(3)?, r.get(4)?, r.get(5)?);
    let (consumed_at, consumed_by): (Option<i64>, Option<Vec<u8>>) = (r.get(6)?, r.get(7)?);
    Ok((|| {
        Ok(CmpSecretRecord {
            secret: NewCmpSecret {
                reference,
                device_serial,
                secret_sha256,
                created_at: time_at(created_at)?,
                expires_at: time_at(expires_at)?,
                created_by,
            },
            consumed_at: consumed_at.map(time_at).transpose()?,
            consumed_by,
        })
    })())
}

type TransactionRow = (
    (Vec<u8>, String, Vec<u8>, String, String),
    (Option<String>, String, Option<Vec<u8>>),
    (Option<String>, Option<Vec<u8>>, Option<i64>, i64, i64),
);

fn transaction_row(r: &Row<'_>) -> rusqlite::Result<TransactionRow> {
    Ok((
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
        (r.get(5)?, r.get(6)?, r.get(7)?),
        (r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?),
    ))
}

fn transaction_of(row: TransactionRow) -> Result<CmpTransaction, StoreError> {
    let (
        (transaction_id, state, server_nonce, protection, device_serial),
        (label, request_kind, request_der),
        (certificate_serial, certificate_der, confirm_by, created_at, updated_at),
    ) = row;
    Ok(CmpTransaction {
        transaction_id,
        state: CmpTransactionState::parse(&state)?,
        server_nonce,
        protection,
        device_serial,
        label,
        request_kind,
        request_der,
        certificate_serial,
        certificate_der,
        confirm_by: confirm_by.map(time_at).transpose()?,
        created_at: time_at(created_at)?,
        updated_at: time_at(updated_at)?,
    })
}

#[async_trait]
impl CmpStore for SqliteStore {
    async fn cmp_secret(&self, reference: &str) -> Result<Option<CmpSecretRecord>, StoreError> {
        self.read_now(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SECRET_COLUMNS} FROM cmp_secrets WHERE reference = ?1"
            ))?
            .query_row([reference], secret_from_row)
            .optional()?
            .transpose()
        })
    }

    async fn consume_cmp_secret(
        &self,
        reference: &str,
        transaction_id: &[u8],
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let reference = reference.to_string();
        let transaction_id = transaction_id.to_vec();
        self.inner
            .writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE cmp_secrets SET consumed_at = ?2, consumed_by = ?3
                         WHERE reference = ?1 AND consumed_at IS NULL AND expires_at > ?2",
                    )?
                    .execute(params![reference, unix(at), transaction_id])?;
                Ok(n == 1)
            })
            .await
    }

    async fn begin_cmp_transaction(&self, t: CmpTransaction) -> Result<(), StoreError> {
        self.inner
            .writer
            .write(move |conn| {
                insert_transaction(conn, &t).map_err(|e| match e {
                    StoreError::Limit { reason, .. } => StoreError::Conflict(reason),
                    other => other,
                })
            })
            .await
    }

    async fn cmp_transaction(&self, id: &[u8]) -> Result<Option<CmpTransaction>, StoreError> {
        self.read_now(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {TRANSACTION_COLUMNS} FROM cmp_transactions WHERE transaction_id = ?1"
            ))?
            .query_row([id], transaction_row)
            .optional()?
            .map(transaction_of)
            .transpose()
        })
    }

    async fn advance_cmp_transaction(
        &self,
        expected_nonce: &[u8],
        t: CmpTransaction,
    ) -> Result<bool, StoreError> {
        let expected_nonce = expected_nonce.to_vec();
        self.inner
            .writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE cmp_transactions SET state = ?3, server_nonce = ?4,
                             request_der = ?5, certificate_serial = ?6, certificate_der = ?7,
                             confirm_by = ?8, updated_at = ?9
                         WHERE transaction_id = ?1 AND server_nonce = ?2",
                    )?
                    .execute(params![
                        t.transaction_id,
                        expected_nonce,
                        t.state.as_str(),
                        t.server_nonce,
                        t.request_der,
                        t.certificate_serial,
                        t.certificate_der,
                        t.confirm_by.map(unix),
                        unix(t.updated_at),
                    ])?;
                Ok(n == 1)
            })
            .await
    }

    async fn overdue_cmp_confirmations(
        &self,
        at: OffsetDateTime,
    ) -> Result<Vec<CmpTransaction>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TRANSACTION_COLUMNS} FROM cmp_transactions
                 WHERE state = 'unconfirmed' AND confirm_by <= ?1 ORDER BY confirm_by LIMIT 1000"
            ))?;
            let rows = stmt.query_map([unix(at)], transaction_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(transaction_of(row?)?);
            }
            Ok(out)
        })
        .await
    }
}

/// Inserts a new transaction; a transactionID in use is refused as the limit
/// `cmp-transaction-id` (the issuance recording it with its certificate is refused whole).
pub(super) fn insert_transaction(
    conn: &rusqlite::Connection,
    t: &CmpTransaction,
) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO cmp_transactions ({TRANSACTION_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        t.transaction_id,
        t.state.as_str(),
        t.server_nonce,
        t.protection,
        t.device_serial,
        t.label,
        t.request_kind,
        t.request_der,
        t.certificate_serial,
        t.certificate_der,
        t.confirm_by.map(unix),
        unix(t.created_at),
        unix(t.updated_at),
    ])
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Limit {
            rule: "cmp-transaction-id".into(),
            reason: "CMP transactionID in use (a replayed or reused transaction)".into(),
        },
        other => other,
    })?;
    Ok(())
}
