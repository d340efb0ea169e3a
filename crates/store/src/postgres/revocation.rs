//! Revocation, device lifecycle and CRL bookkeeping for PostgreSQL. Each change is one
//! transaction that locks the rows it changes (the device row for lifecycle changes, the
//! certificate row for a revocation), so concurrent changes from several nodes apply one
//! after the other; every change bumps the status revision in the same transaction.

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{GenericClient, Transaction};
use futures_util::TryStreamExt;
use time::OffsetDateTime;

use super::rows::{certificate_from_row, params, time_at, unix, CERTIFICATE_COLUMNS};
use super::PostgresStore;
use crate::model::*;
use crate::revoked::{RevokedBatch, RevokedStream, BATCH};
use crate::{RevocationStore, StoreError};

async fn bump_revision(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("UPDATE status_revision SET revision = revision + 1 WHERE id = 1")
        .await?;
    tx.execute(&stmt, &[]).await?;
    Ok(())
}

async fn set_device_status(
    tx: &Transaction<'_>,
    device: &str,
    status: DeviceStatus,
    at: i64,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("UPDATE devices SET status = $2, updated_at = $3 WHERE serial_number = $1")
        .await?;
    tx.execute(&stmt, &[&device, &status.as_str(), &at]).await?;
    Ok(())
}

/// Sets the status of a device's unexpired certificates that are in `from` (one of
/// `valid`, `on-hold`); returns their serials.
async fn move_live(
    tx: &Transaction<'_>,
    device: &str,
    from: &[&str],
    to: CertificateStatus,
    reason: Option<&str>,
    at: i64,
) -> Result<Vec<String>, StoreError> {
    let from: Vec<String> = from.iter().map(|s| s.to_string()).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE certificates SET status = $3,
               revoked_at = CASE WHEN $3 = 'valid' THEN NULL ELSE $4 END,
               revocation_reason = CASE WHEN $3 = 'valid' THEN NULL ELSE $5 END
             WHERE device_serial = $1 AND status = ANY($2) AND not_after > $4
             RETURNING serial",
        )
        .await?;
    let rows = tx
        .query(&stmt, &[&device, &from, &to.as_str(), &at, &reason])
        .await?;
    rows.iter()
        .map(|r| r.try_get::<_, String>(0).map_err(StoreError::from))
        .collect()
}

/// Revokes (or holds) one certificate inside the caller's transaction.
pub(super) async fn revoke_in(
    tx: &Transaction<'_>,
    serial: &str,
    reason: &str,
    at: OffsetDateTime,
) -> Result<CertificateRecord, StoreError> {
    let serial = serial.to_ascii_lowercase();
    let stmt = tx
        .prepare_cached("SELECT status FROM certificates WHERE serial = $1 FOR UPDATE")
        .await?;
    let status: CertificateStatus = tx
        .query_opt(&stmt, &[&serial])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("certificate {serial}")))?
        .try_get::<_, String>(0)?
        .parse()
        .map_err(StoreError::Corrupt)?;
    let new_status = if reason == "certificateHold" {
        if status != CertificateStatus::Valid {
            return Err(StoreError::Refused(format!(
                "certificate {serial} is {status}; only a valid certificate can be put on hold"
            )));
        }
        CertificateStatus::OnHold
    } else {
        if status == CertificateStatus::Revoked {
            return Err(StoreError::Refused(format!(
                "certificate {serial} is already revoked"
            )));
        }
        CertificateStatus::Revoked
    };
    let stmt = tx
        .prepare_cached(
            "UPDATE certificates SET status = $2, revoked_at = $3, revocation_reason = $4
                 WHERE serial = $1",
        )
        .await?;
    tx.execute(&stmt, &[&serial, &new_status.as_str(), &unix(at), &reason])
        .await?;
    bump_revision(tx).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {CERTIFICATE_COLUMNS} FROM certificates c WHERE c.serial = $1"
        ))
        .await?;
    let record = certificate_from_row(&tx.query_one(&stmt, &[&serial]).await?)?;
    Ok(record)
}

/// Applies a lifecycle change inside the caller's transaction.
pub(super) async fn change_lifecycle_in(
    tx: &Transaction<'_>,
    device: &str,
    change: LifecycleChange,
    at: OffsetDateTime,
) -> Result<Vec<String>, StoreError> {
    let now = unix(at);
    // Locks the device: issuances for it (which upsert the row) wait for this change.
    let stmt = tx
        .prepare_cached("SELECT status FROM devices WHERE serial_number = $1 FOR UPDATE")
        .await?;
    let current: DeviceStatus = tx
        .query_opt(&stmt, &[&device])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("device {device}")))?
        .try_get::<_, String>(0)?
        .parse()
        .map_err(StoreError::Corrupt)?;
    if current == DeviceStatus::Decommissioned {
        return Err(StoreError::Refused(format!(
            "device {device} is decommissioned"
        )));
    }
    let changed = match change {
        LifecycleChange::Decommission { reason } => {
            let serials = move_live(
                tx,
                device,
                &["valid", "on-hold"],
                CertificateStatus::Revoked,
                Some(&reason),
                now,
            )
            .await?;
            set_device_status(tx, device, DeviceStatus::Decommissioned, now).await?;
            serials
        }
        LifecycleChange::Suspend => {
            if current == DeviceStatus::Suspended {
                return Err(StoreError::Refused(format!(
                    "device {device} is already suspended"
                )));
            }
            let serials = move_live(
                tx,
                device,
                &["valid"],
                CertificateStatus::OnHold,
                Some("certificateHold"),
                now,
            )
            .await?;
            set_device_status(tx, device, DeviceStatus::Suspended, now).await?;
            serials
        }
        LifecycleChange::Resume => {
            if current != DeviceStatus::Suspended {
                return Err(StoreError::Refused(format!(
                    "device {device} is {current}, not suspended"
                )));
            }
            let serials = move_live(
                tx,
                device,
                &["on-hold"],
                CertificateStatus::Valid,
                None,
                now,
            )
            .await?;
            let stmt = tx
                .prepare_cached(
                    "SELECT EXISTS(SELECT 1 FROM certificates
                                       WHERE device_serial = $1 AND kind = 'operational')",
                )
                .await?;
            let has_operational: bool = tx.query_one(&stmt, &[&device]).await?.try_get(0)?;
            let status = if has_operational {
                DeviceStatus::Active
            } else {
                DeviceStatus::Manufactured
            };
            set_device_status(tx, device, status, now).await?;
            serials
        }
    };
    bump_revision(tx).await?;
    Ok(changed)
}

#[async_trait]
impl RevocationStore for PostgresStore {
    async fn revoke(
        &self,
        serial: &str,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<CertificateRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let r = revoke_in(&tx, serial, reason, at).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn change_lifecycle(
        &self,
        device_serial: &str,
        change: LifecycleChange,
        at: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let r = change_lifecycle_in(&tx, device_serial, change, at).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn revoke_superseded(
        &self,
        renewed_before: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE certificates old SET status = 'revoked', revoked_at = $2,
                   revocation_reason = 'superseded'
                 WHERE old.status = 'valid' AND old.kind = 'operational' AND old.not_after > $2
                   AND EXISTS (SELECT 1 FROM certificates new
                               WHERE new.replaces = old.serial AND new.issued_at < $1)
                 RETURNING old.serial",
            )
            .await?;
        let serials = tx
            .query(&stmt, &[&unix(renewed_before), &unix(at)])
            .await?
            .iter()
            .map(|r| r.try_get::<_, String>(0).map_err(StoreError::from))
            .collect::<Result<Vec<_>, _>>()?;
        if !serials.is_empty() {
            bump_revision(&tx).await?;
        }
        tx.commit().await?;
        Ok(serials)
    }

    async fn revoked_stream(
        &self,
        issuer: &str,
        at: OffsetDateTime,
    ) -> Result<RevokedStream, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT serial, revoked_at, revocation_reason FROM certificates
                 WHERE issuer = $1 AND status <> 'valid' AND not_after > $2
                 ORDER BY serial",
            )
            .await?;
        let issuer = issuer.to_string();
        let (tx, stream) = RevokedStream::channel();
        // Rows stream from the server (`query_raw`) into batches on a task of their own,
        // while the consumer converts the previous batches.
        tokio::spawn(async move {
            let read = async {
                let at = unix(at);
                let rows = client.query_raw(&stmt, params(&[&issuer, &at])).await?;
                futures_util::pin_mut!(rows);
                let mut batch = RevokedBatch::with_capacity(BATCH);
                while let Some(r) = rows.try_next().await? {
                    let serial: &str = r.try_get(0)?;
                    let revoked_at: Option<i64> = r.try_get(1)?;
                    let reason: Option<&str> = r.try_get(2)?;
                    let revoked_at = time_at(revoked_at.ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "certificate {serial} is revoked without a time"
                        ))
                    })?)?;
                    batch.push(serial, revoked_at, reason.unwrap_or("unspecified"));
                    if batch.len() == BATCH {
                        let full =
                            std::mem::replace(&mut batch, RevokedBatch::with_capacity(BATCH));
                        if !tx.send(full).await {
                            return Ok::<bool, StoreError>(false);
                        }
                    }
                }
                Ok(batch.is_empty() || tx.send(batch).await)
            };
            match read.await {
                Ok(true) => tx.finish(Ok(())).await,
                Ok(false) => {}
                Err(e) => tx.finish(Err(e)).await,
            }
        });
        Ok(stream)
    }

    async fn status_revision(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT revision FROM status_revision WHERE id = 1")
            .await?;
        Ok(client.query_one(&stmt, &[]).await?.try_get(0)?)
    }

    async fn allocate_crl_number(&self, issuer: &str) -> Result<u64, StoreError> {
        let client = self.client().await?;
        // One statement: the conflict path locks the row, so no number is handed out twice.
        let stmt = client
            .prepare_cached(
                "INSERT INTO crls (issuer, number, this_update, next_update) VALUES ($1, 1, 0, 0)
                 ON CONFLICT (issuer) DO UPDATE SET number = crls.number + 1
                 RETURNING number",
            )
            .await?;
        let number: i64 = client.query_one(&stmt, &[&issuer]).await?.try_get(0)?;
        u64::try_from(number).map_err(|_| StoreError::Corrupt(format!("CRL number {number}")))
    }

    async fn store_crl(
        &self,
        issuer: &str,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        der: Bytes,
    ) -> Result<(), StoreError> {
        let number = i64::try_from(number)
            .map_err(|_| StoreError::Refused(format!("CRL number {number} is too large")))?;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE crls SET this_update = $3, next_update = $4, der = $5, der_number = $2
                 WHERE issuer = $1 AND (der_number IS NULL OR der_number < $2)",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &issuer,
                    &number,
                    &unix(this_update),
                    &unix(next_update),
                    &der.as_ref(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn stored_crl(
        &self,
        issuer: &str,
        newer_than: u64,
    ) -> Result<Option<StoredCrl>, StoreError> {
        let newer_than = i64::try_from(newer_than).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT der_number, this_update, next_update, der FROM crls
                 WHERE issuer = $1 AND der_number > $2 AND der IS NOT NULL",
            )
            .await?;
        let Some(r) = client.query_opt(&stmt, &[&issuer, &newer_than]).await? else {
            return Ok(None);
        };
        let number: i64 = r.try_get(0)?;
        Ok(Some(StoredCrl {
            number: u64::try_from(number)
                .map_err(|_| StoreError::Corrupt(format!("CRL number {number}")))?,
            this_update: time_at(r.try_get(1)?)?,
            next_update: time_at(r.try_get(2)?)?,
            der: r.try_get(3)?,
        }))
    }
}
