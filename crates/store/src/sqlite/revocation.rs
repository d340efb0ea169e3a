//! Revocation, device lifecycle and CRL bookkeeping for SQLite.

use async_trait::async_trait;
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use super::rows::{certificate_from_row, time_at, unix, CERTIFICATE_COLUMNS};
use super::{read_pooled, SqliteStore};
use crate::model::*;
use crate::revoked::{RevokedBatch, RevokedStream, BATCH};
use crate::{RevocationStore, StoreError};

/// A text column read in place (no copy), for bulk reads.
fn text_column<'r>(row: &'r Row<'_>, index: usize, name: &str) -> Result<&'r str, StoreError> {
    row.get_ref(index)?
        .as_str()
        .map_err(|e| StoreError::Corrupt(format!("certificates.{name}: {e}")))
}

fn bump_revision(conn: &Connection) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE status_revision SET revision = revision + 1 WHERE id = 1")?
        .execute([])?;
    Ok(())
}

fn device_status(conn: &Connection, device: &str) -> Result<DeviceStatus, StoreError> {
    conn.prepare_cached("SELECT status FROM devices WHERE serial_number = ?1")?
        .query_row([device], |r| r.get::<_, String>(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("device {device}")))?
        .parse()
        .map_err(StoreError::Corrupt)
}

fn set_device_status(
    conn: &Connection,
    device: &str,
    status: DeviceStatus,
    at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE devices SET status = ?2, updated_at = ?3 WHERE serial_number = ?1",
    )?
    .execute(params![device, status.as_str(), at])?;
    Ok(())
}

/// Serials of a device's certificates in `status` that have not expired at `at`.
fn live_serials(
    conn: &Connection,
    device: &str,
    status: &str,
    at: i64,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT serial FROM certificates WHERE device_serial = ?1 AND +status = ?2 AND +not_after > ?3",
    )?;
    let rows = stmt.query_map(params![device, status, at], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes (or holds) one certificate inside the caller's transaction.
pub(super) fn revoke_in(
    conn: &Connection,
    serial: &str,
    reason: &str,
    at: OffsetDateTime,
) -> Result<CertificateRecord, StoreError> {
    let serial = serial.to_ascii_lowercase();
    let serial = serial.as_str();
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM certificates WHERE serial = ?1")?
        .query_row([serial], |r| r.get(0))
        .optional()?;
    let status: CertificateStatus = status
        .ok_or_else(|| StoreError::NotFound(format!("certificate {serial}")))?
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
    conn.prepare_cached(
            "UPDATE certificates SET status = ?2, revoked_at = ?3, revocation_reason = ?4 WHERE serial = ?1",
        )?
        .execute(params![serial, new_status.as_str(), unix(at), reason])?;
    bump_revision(conn)?;
    conn.prepare_cached(&format!(
        "SELECT {CERTIFICATE_COLUMNS} FROM certificates c WHERE c.serial = ?1"
    ))?
    .query_row([serial], certificate_from_row)?
}

/// Applies a lifecycle change inside the caller's transaction.
pub(super) fn change_lifecycle_in(
    conn: &Connection,
    device: &str,
    change: LifecycleChange,
    at: OffsetDateTime,
) -> Result<Vec<String>, StoreError> {
    let now = unix(at);
    let current = device_status(conn, device)?;
    if current == DeviceStatus::Decommissioned {
        return Err(StoreError::Refused(format!(
            "device {device} is decommissioned"
        )));
    }
    let changed = match change {
        LifecycleChange::Decommission { reason } => {
            let mut serials = live_serials(conn, device, "valid", now)?;
            serials.extend(live_serials(conn, device, "on-hold", now)?);
            for s in &serials {
                conn.prepare_cached(
                        "UPDATE certificates SET status = 'revoked', revoked_at = ?2, revocation_reason = ?3 WHERE serial = ?1",
                    )?
                    .execute(params![s, now, reason])?;
            }
            set_device_status(conn, device, DeviceStatus::Decommissioned, now)?;
            serials
        }
        LifecycleChange::Suspend => {
            if current == DeviceStatus::Suspended {
                return Err(StoreError::Refused(format!(
                    "device {device} is already suspended"
                )));
            }
            let serials = live_serials(conn, device, "valid", now)?;
            for s in &serials {
                conn.prepare_cached(
                        "UPDATE certificates SET status = 'on-hold', revoked_at = ?2, revocation_reason = 'certificateHold' WHERE serial = ?1",
                    )?
                    .execute(params![s, now])?;
            }
            set_device_status(conn, device, DeviceStatus::Suspended, now)?;
            serials
        }
        LifecycleChange::Resume => {
            if current != DeviceStatus::Suspended {
                return Err(StoreError::Refused(format!(
                    "device {device} is {current}, not suspended"
                )));
            }
            let serials = live_serials(conn, device, "on-hold", now)?;
            for s in &serials {
                conn.prepare_cached(
                        "UPDATE certificates SET status = 'valid', revoked_at = NULL, revocation_reason = NULL WHERE serial = ?1",
                    )?
                    .execute([s])?;
            }
            let has_operational: bool = conn
                    .prepare_cached("SELECT EXISTS(SELECT 1 FROM certificates WHERE device_serial = ?1 AND kind = 'operational')")?
                    .query_row([device], |r| r.get(0))?;
            let status = if has_operational {
                DeviceStatus::Active
            } else {
                DeviceStatus::Manufactured
            };
            set_device_status(conn, device, status, now)?;
            serials
        }
    };
    bump_revision(conn)?;
    Ok(changed)
}

/// Every unexpired revoked (or held) certificate of an issuer, in serial order: read from
/// the covering index `certificates_revoked_by_serial` alone (see the plan test).
pub(crate) const REVOKED_SQL: &str =
    "SELECT serial, revoked_at, revocation_reason FROM certificates
     WHERE issuer = ?1 AND status != 'valid' AND not_after > ?2
     ORDER BY serial";

#[async_trait]
impl RevocationStore for SqliteStore {
    async fn revoke(
        &self,
        serial: &str,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<CertificateRecord, StoreError> {
        let serial = serial.to_ascii_lowercase();
        let reason = reason.to_string();
        self.inner
            .writer
            .write(move |conn| revoke_in(conn, &serial, &reason, at))
            .await
    }

    async fn change_lifecycle(
        &self,
        device_serial: &str,
        change: LifecycleChange,
        at: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let device = device_serial.to_string();
        self.inner
            .writer
            .write(move |conn| change_lifecycle_in(conn, &device, change, at))
            .await
    }

    async fn revoke_superseded(
        &self,
        renewed_before: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        self.inner
            .writer
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT old.serial FROM certificates old
                     JOIN certificates new ON new.replaces = old.serial
                     WHERE old.status = 'valid' AND old.kind = 'operational'
                       AND old.not_after > ?2 AND new.issued_at < ?1",
                )?;
                let serials: Vec<String> = stmt
                    .query_map(params![unix(renewed_before), unix(at)], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for s in &serials {
                    conn.prepare_cached(
                        "UPDATE certificates SET status = 'revoked', revoked_at = ?2, revocation_reason = 'superseded' WHERE serial = ?1",
                    )?
                    .execute(params![s, unix(at)])?;
                }
                if !serials.is_empty() {
                    bump_revision(conn)?;
                }
                Ok(serials)
            })
            .await
    }

    async fn revoked_stream(
        &self,
        issuer: &str,
        at: OffsetDateTime,
    ) -> Result<RevokedStream, StoreError> {
        let issuer = issuer.to_string();
        let inner = Arc::clone(&self.inner);
        let (tx, stream) = RevokedStream::channel();
        // A blocking thread reads and sends batches while the consumer converts the
        // previous ones; the query is one statement, so one consistent snapshot.
        tokio::task::spawn_blocking(move || {
            let result = read_pooled(&inner, |conn| {
                let mut stmt = conn.prepare_cached(REVOKED_SQL)?;
                let mut rows = stmt.query(params![issuer, unix(at)])?;
                let mut batch = RevokedBatch::with_capacity(BATCH);
                while let Some(row) = rows.next()? {
                    let serial = text_column(row, 0, "serial")?;
                    let revoked_at: Option<i64> = row.get(1)?;
                    let revoked_at = time_at(revoked_at.ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "certificate {serial} is revoked without a time"
                        ))
                    })?)?;
                    let reason = match row.get_ref(2)? {
                        ValueRef::Null => "unspecified",
                        _ => text_column(row, 2, "revocation_reason")?,
                    };
                    batch.push(serial, revoked_at, reason);
                    if batch.len() == BATCH {
                        let full =
                            std::mem::replace(&mut batch, RevokedBatch::with_capacity(BATCH));
                        if !tx.blocking_send(full) {
                            // The consumer is gone; nobody reads the rest.
                            return Ok(false);
                        }
                    }
                }
                Ok(batch.is_empty() || tx.blocking_send(batch))
            });
            match result {
                Ok(true) => tx.blocking_finish(Ok(())),
                Ok(false) => {}
                Err(e) => tx.blocking_finish(Err(e)),
            }
        });
        Ok(stream)
    }

    async fn status_revision(&self) -> Result<i64, StoreError> {
        self.read_now(|conn| {
            Ok(conn
                .prepare_cached("SELECT revision FROM status_revision WHERE id = 1")?
                .query_row([], |r| r.get(0))?)
        })
    }

    async fn allocate_crl_number(&self, issuer: &str) -> Result<u64, StoreError> {
        let issuer = issuer.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let number: i64 = conn
                    .prepare_cached(
                        "INSERT INTO crls (issuer, number, this_update, next_update) VALUES (?1, 1, 0, 0)
                         ON CONFLICT(issuer) DO UPDATE SET number = number + 1
                         RETURNING number",
                    )?
                    .query_row([issuer], |r| r.get(0))?;
                u64::try_from(number).map_err(|_| StoreError::Corrupt(format!("CRL number {number}")))
            })
            .await
    }

    async fn store_crl(
        &self,
        issuer: &str,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        der: Bytes,
    ) -> Result<(), StoreError> {
        let issuer = issuer.to_string();
        let number = i64::try_from(number)
            .map_err(|_| StoreError::Refused(format!("CRL number {number} is too large")))?;
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE crls SET this_update = ?3, next_update = ?4, der = ?5, der_number = ?2
                     WHERE issuer = ?1 AND (der_number IS NULL OR der_number < ?2)",
                )?
                .execute(params![
                    issuer,
                    number,
                    unix(this_update),
                    unix(next_update),
                    der.as_ref()
                ])?;
                Ok(())
            })
            .await
    }

    async fn stored_crl(
        &self,
        issuer: &str,
        newer_than: u64,
    ) -> Result<Option<StoredCrl>, StoreError> {
        let newer_than = i64::try_from(newer_than).unwrap_or(i64::MAX);
        self.read_now(|conn| {
            let row = conn
                .prepare_cached(
                    "SELECT der_number, this_update, next_update, der FROM crls
                     WHERE issuer = ?1 AND der_number > ?2 AND der IS NOT NULL",
                )?
                .query_row(params![issuer, newer_than], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .optional()?;
            row.map(|(number, this_update, next_update, der)| {
                Ok(StoredCrl {
                    number: u64::try_from(number)
                        .map_err(|_| StoreError::Corrupt(format!("CRL number {number}")))?,
                    this_update: time_at(this_update)?,
                    next_update: time_at(next_update)?,
                    der,
                })
            })
            .transpose()
        })
    }
}
