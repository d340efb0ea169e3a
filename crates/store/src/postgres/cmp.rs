//! CMP secrets and transactions on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::rows::{time_at, unix};
use super::PostgresStore;
use crate::cmp::{CmpSecretRecord, CmpStore, CmpTransaction, CmpTransactionState, NewCmpSecret};
use crate::StoreError;

const SECRET_COLUMNS: &str = "reference, device_serial, secret_sha256, created_at, expires_at,
    created_by, consumed_at, consumed_by";
const TRANSACTION_COLUMNS: &str = "transaction_id, state, server_nonce, protection,
    device_serial, label, request_kind, request_der, certificate_serial, certificate_der,
    confirm_by, created_at, updated_at";

pub(super) async fn create_secret_in(
    c: &impl GenericClient,
    s: &NewCmpSecret,
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO cmp_secrets (reference, device_serial, secret_sha256, created_at,
                 expires_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    c.execute(
        &stmt,
        &[
            &s.reference,
            &s.device_serial,
            &s.secret_sha256,
            &unix(s.created_at),
            &unix(s.expires_at),
            &s.created_by,
        ],
    )
    .await?;
    Ok(())
}

fn secret_of(r: &Row) -> Result<CmpSecretRecord, StoreError> {
    Ok(CmpSecretRecord {
        secret: NewCmpSecret {
            reference: r.try_get(0)?,
            device_serial: r.try_get(1)?,
            secret_sha256: r.try_get(2)?,
            created_at: time_at(r.try_get(3)?)?,
            expires_at: time_at(r.try_get(4)?)?,
            created_by: r.try_get(5)?,
        },
        consumed_at: r.try_get::<_, Option<i64>>(6)?.map(time_at).transpose()?,
        consumed_by: r.try_get(7)?,
    })
}

fn transaction_of(r: &Row) -> Result<CmpTransaction, StoreError> {
    Ok(CmpTransaction {
        transaction_id: r.try_get(0)?,
        state: CmpTransactionState::parse(r.try_get(1)?)?,
        server_nonce: r.try_get(2)?,
        protection: r.try_get(3)?,
        device_serial: r.try_get(4)?,
        label: r.try_get(5)?,
        request_kind: r.try_get(6)?,
        request_der: r.try_get(7)?,
        certificate_serial: r.try_get(8)?,
        certificate_der: r.try_get(9)?,
        confirm_by: r.try_get::<_, Option<i64>>(10)?.map(time_at).transpose()?,
        created_at: time_at(r.try_get(11)?)?,
        updated_at: time_at(r.try_get(12)?)?,
    })
}

#[async_trait]
impl CmpStore for PostgresStore {
    async fn cmp_secret(&self, reference: &str) -> Result<Option<CmpSecretRecord>, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {SECRET_COLUMNS} FROM cmp_secrets WHERE reference = $1"
            ))
            .await?;
        c.query_opt(&stmt, &[&reference])
            .await?
            .as_ref()
            .map(secret_of)
            .transpose()
    }

    async fn consume_cmp_secret(
        &self,
        reference: &str,
        transaction_id: &[u8],
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE cmp_secrets SET consumed_at = $2, consumed_by = $3
                 WHERE reference = $1 AND consumed_at IS NULL AND expires_at > $2",
            )
            .await?;
        let n = c
            .execute(&stmt, &[&reference, &unix(at), &transaction_id])
            .await?;
        Ok(n == 1)
    }

    async fn begin_cmp_transaction(&self, t: CmpTransaction) -> Result<(), StoreError> {
        let c = self.client().await?;
        if insert_transaction(&c, &t).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict("CMP transactionID in use".into()))
        }
    }

    async fn cmp_transaction(&self, id: &[u8]) -> Result<Option<CmpTransaction>, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {TRANSACTION_COLUMNS} FROM cmp_transactions WHERE transaction_id = $1"
            ))
            .await?;
        c.query_opt(&stmt, &[&id])
            .await?
            .as_ref()
            .map(transaction_of)
            .transpose()
    }

    async fn advance_cmp_transaction(
        &self,
        expected_nonce: &[u8],
        t: CmpTransaction,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE cmp_transactions SET state = $3, server_nonce = $4, request_der = $5,
                     certificate_serial = $6, certificate_der = $7, confirm_by = $8,
                     updated_at = $9
                 WHERE transaction_id = $1 AND server_nonce = $2",
            )
            .await?;
        let n = c
            .execute(
                &stmt,
                &[
                    &t.transaction_id,
                    &expected_nonce,
                    &t.state.as_str(),
                    &t.server_nonce,
                    &t.request_der,
                    &t.certificate_serial,
                    &t.certificate_der,
                    &t.confirm_by.map(unix),
                    &unix(t.updated_at),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn overdue_cmp_confirmations(
        &self,
        at: OffsetDateTime,
    ) -> Result<Vec<CmpTransaction>, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {TRANSACTION_COLUMNS} FROM cmp_transactions
                 WHERE state = 'unconfirmed' AND confirm_by <= $1 ORDER BY confirm_by LIMIT 1000"
            ))
            .await?;
        c.query(&stmt, &[&unix(at)])
            .await?
            .iter()
            .map(transaction_of)
            .collect()
    }
}

/// Inserts a new transaction; false if its transactionID is in use.
pub(super) async fn insert_transaction(
    c: &impl GenericClient,
    t: &CmpTransaction,
) -> Result<bool, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "INSERT INTO cmp_transactions ({TRANSACTION_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (transaction_id) DO NOTHING"
        ))
        .await?;
    let n = c
        .execute(
            &stmt,
            &[
                &t.transaction_id,
                &t.state.as_str(),
                &t.server_nonce,
                &t.protection,
                &t.device_serial,
                &t.label,
                &t.request_kind,
                &t.request_der,
                &t.certificate_serial,
                &t.certificate_der,
                &t.confirm_by.map(unix),
                &unix(t.created_at),
                &unix(t.updated_at),
            ],
        )
        .await?;
    Ok(n == 1)
}
