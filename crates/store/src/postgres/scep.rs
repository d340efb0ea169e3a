//! SCEP challenges and transactions on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::rows::{time_at, unix};
use super::PostgresStore;
use crate::scep::{NewScepChallenge, ScepStore, ScepTransaction};
use crate::StoreError;

const TRANSACTION_COLUMNS: &str =
    "transaction_id, key_sha256, label, secret_device, csr, created_at, certificate_serial";

fn transaction_from_row(r: &Row) -> Result<ScepTransaction, StoreError> {
    Ok(ScepTransaction {
        transaction_id: r.try_get(0)?,
        key_sha256: r.try_get(1)?,
        label: r.try_get(2)?,
        secret_device: r.try_get(3)?,
        csr: r.try_get(4)?,
        created_at: time_at(r.try_get(5)?)?,
        certificate_serial: r.try_get(6)?,
    })
}

pub(super) async fn create_challenge_in(
    tx: &Transaction<'_>,
    c: &NewScepChallenge,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO scep_challenges (secret_sha256, device_serial, created_at, expires_at,
               created_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &c.secret_sha256,
            &c.device_serial,
            &unix(c.created_at),
            &unix(c.expires_at),
            &c.created_by,
        ],
    )
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict("SCEP challenge".into()),
        other => other,
    })?;
    Ok(())
}

async fn transaction_in(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<ScepTransaction>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TRANSACTION_COLUMNS} FROM scep_transactions WHERE transaction_id = $1"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .map(|r| transaction_from_row(&r))
        .transpose()
}

#[async_trait]
impl ScepStore for PostgresStore {
    async fn consume_scep_challenge(
        &self,
        secret_sha256: &str,
        at: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE scep_challenges SET used_at = $2
                 WHERE secret_sha256 = $1 AND used_at IS NULL AND expires_at > $2
                 RETURNING device_serial",
            )
            .await?;
        Ok(client
            .query_opt(&stmt, &[&secret_sha256, &unix(at)])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    async fn record_scep_transaction(
        &self,
        t: ScepTransaction,
    ) -> Result<ScepTransaction, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO scep_transactions (transaction_id, key_sha256, label,
                   secret_device, csr, created_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (transaction_id) DO NOTHING",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &t.transaction_id,
                    &t.key_sha256,
                    &t.label,
                    &t.secret_device,
                    &t.csr,
                    &unix(t.created_at),
                ],
            )
            .await?;
        let known = transaction_in(&client, &t.transaction_id)
            .await?
            .ok_or_else(|| StoreError::Database("SCEP transaction vanished".into()))?;
        if known.key_sha256 == t.key_sha256 {
            Ok(known)
        } else {
            Err(StoreError::Conflict(format!(
                "SCEP transaction {} was started with another key",
                t.transaction_id
            )))
        }
    }

    async fn complete_scep_transaction(
        &self,
        transaction_id: &str,
        certificate_serial: &str,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE scep_transactions SET certificate_serial = $2 WHERE transaction_id = $1",
            )
            .await?;
        client
            .execute(&stmt, &[&transaction_id, &certificate_serial])
            .await?;
        Ok(())
    }

    async fn scep_transaction(
        &self,
        transaction_id: &str,
    ) -> Result<Option<ScepTransaction>, StoreError> {
        let client = self.client().await?;
        transaction_in(&client, transaction_id).await
    }
}
