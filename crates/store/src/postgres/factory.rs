//! Factory stations, birth-issuance checks and the audit chain for PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::rows::{time_at, unix};
use super::PostgresStore;
use crate::model::*;
use crate::sqlite::factory::{chain_hash, GENESIS};
use crate::{AuditLog, StationStore, StoreError};

const STATION_COLUMNS: &str = "name, serial_pattern, range_from, range_to, quota, issued, \
    valid_days, allow_reissue, status, credential_serial, created_at";

/// Transaction-level advisory lock key of the audit chain ("audit" in ASCII): appenders on
/// every node take it, so each reads the true head and ids follow the chain order.
const AUDIT_LOCK: i64 = 0x0061_7564_6974;

fn station_from_row(r: &Row) -> Result<StationRecord, StoreError> {
    let name: String = r.try_get(0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("station {name}: {what}"));
    let quota: Option<i64> = r.try_get(4)?;
    let issued: i64 = r.try_get(5)?;
    let valid_days: i64 = r.try_get(6)?;
    Ok(StationRecord {
        quota: quota
            .map(|q| u64::try_from(q).map_err(|_| corrupt("quota")))
            .transpose()?,
        issued: u64::try_from(issued).map_err(|_| corrupt("issued"))?,
        valid_days: u32::try_from(valid_days).map_err(|_| corrupt("valid_days"))?,
        status: r
            .try_get::<_, String>(8)?
            .parse()
            .map_err(StoreError::Corrupt)?,
        created_at: time_at(r.try_get(10)?)?,
        serial_pattern: r.try_get(1)?,
        range_from: r.try_get(2)?,
        range_to: r.try_get(3)?,
        allow_reissue: r.try_get(7)?,
        credential_serial: r.try_get(9)?,
        name,
    })
}

pub(super) async fn station(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<StationRecord>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {STATION_COLUMNS} FROM stations WHERE name = $1"
        ))
        .await?;
    c.query_opt(&stmt, &[&name])
        .await?
        .map(|r| station_from_row(&r))
        .transpose()
}

pub(super) async fn has_live_birth(
    c: &impl GenericClient,
    device: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM certificates WHERE device_serial = $1
               AND kind = 'birth' AND status = 'valid' AND not_after > $2)",
        )
        .await?;
    Ok(c.query_one(&stmt, &[&device, &at]).await?.try_get(0)?)
}

/// The birth checks the commit enforces (see [`BirthContext`]), inside the transaction
/// that records the certificate, after the device row was locked by its upsert. The
/// station row is locked (`FOR UPDATE`) before its quota is read, so concurrent requests
/// on any number of nodes are charged one at a time.
pub(super) async fn charge_birth(
    tx: &deadpool_postgres::Transaction<'_>,
    device: &str,
    ctx: &BirthContext,
    at: i64,
) -> Result<(), StoreError> {
    if let Some(name) = &ctx.station {
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {STATION_COLUMNS} FROM stations WHERE name = $1 FOR UPDATE"
            ))
            .await?;
        let s = tx
            .query_opt(&stmt, &[name])
            .await?
            .map(|r| station_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::Refused(format!("station {name} does not exist")))?;
        if s.status != StationStatus::Active {
            return Err(StoreError::Refused(format!(
                "station {name} is {}",
                s.status
            )));
        }
        if let Some(quota) = s.quota {
            if s.issued >= quota {
                return Err(StoreError::Limit {
                    rule: "station-quota".into(),
                    reason: format!(
                        "station '{name}' has used its quota of {quota} birth certificates"
                    ),
                });
            }
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE stations SET issued = issued + 1, updated_at = $2 WHERE name = $1",
            )
            .await?;
        tx.execute(&stmt, &[name, &at]).await?;
    }
    if !ctx.reissue && has_live_birth(tx, device, at).await? {
        return Err(StoreError::Refused(format!(
            "device {device} already has a live birth certificate"
        )));
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE devices SET station = COALESCE($2, station), model = COALESCE($3, model),
               batch = COALESCE($4, batch) WHERE serial_number = $1",
        )
        .await?;
    tx.execute(&stmt, &[&device, &ctx.station, &ctx.model, &ctx.batch])
        .await?;
    Ok(())
}

/// Locks station `name`'s row for the caller's transaction; a missing or removed station
/// is refused (a removed station never changes again).
async fn lock_live_station(
    tx: &deadpool_postgres::Transaction<'_>,
    name: &str,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("SELECT status FROM stations WHERE name = $1 FOR UPDATE")
        .await?;
    let current: StationStatus = tx
        .query_opt(&stmt, &[&name])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("station {name}")))?
        .try_get::<_, String>(0)?
        .parse()
        .map_err(StoreError::Corrupt)?;
    if current == StationStatus::Removed {
        return Err(StoreError::Refused(format!("station {name} was removed")));
    }
    Ok(())
}

/// Changes a station's status inside the caller's transaction.
pub(super) async fn set_station_status_in(
    tx: &deadpool_postgres::Transaction<'_>,
    name: &str,
    status: StationStatus,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    lock_live_station(tx, name).await?;
    let stmt = tx
        .prepare_cached("UPDATE stations SET status = $2, updated_at = $3 WHERE name = $1")
        .await?;
    tx.execute(&stmt, &[&name, &status.as_str(), &unix(at)])
        .await?;
    Ok(())
}

/// Appends an audit event, chained to the head, inside the caller's transaction (which
/// holds the chain's advisory lock until it ends).
pub(super) async fn append_in(
    tx: &deadpool_postgres::Transaction<'_>,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1)")
        .await?;
    tx.execute(&stmt, &[&AUDIT_LOCK]).await?;
    let stmt = tx
        .prepare_cached("SELECT hash FROM audit ORDER BY id DESC LIMIT 1")
        .await?;
    let prev: String = match tx.query_opt(&stmt, &[]).await? {
        Some(r) => r.try_get(0)?,
        None => GENESIS.to_string(),
    };
    let hash = chain_hash(&prev, event);
    let stmt = tx
        .prepare_cached(
            "INSERT INTO audit (at, actor, action, subject, outcome, detail, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &unix(event.at),
            &event.actor,
            &event.action,
            &event.subject,
            &event.outcome,
            &event.detail,
            &prev,
            &hash,
        ],
    )
    .await?;
    Ok(())
}

/// Adds a station (in the caller's transaction, if given one).
pub(super) async fn add_station_in(
    c: &impl GenericClient,
    s: &NewStation,
) -> Result<(), StoreError> {
    let quota = s
        .quota
        .map(i64::try_from)
        .transpose()
        .map_err(|_| StoreError::Refused("quota is too large".into()))?;
    let stmt = c
        .prepare_cached(&format!(
            "INSERT INTO stations ({STATION_COLUMNS}, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 0, $6, $7, 'active', $8, $9, $9)"
        ))
        .await?;
    c.execute(
        &stmt,
        &[
            &s.name,
            &s.serial_pattern,
            &s.range_from,
            &s.range_to,
            &quota,
            &i64::from(s.valid_days),
            &s.allow_reissue,
            &s.credential_serial,
            &unix(s.created_at),
        ],
    )
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("station '{}' (names are never reused)", s.name))
        }
        other => other,
    })?;
    Ok(())
}

/// Records a manufacturer CA's scope (in the caller's transaction, if given one).
pub(super) async fn set_manufacturer_in(
    c: &impl GenericClient,
    m: &ManufacturerRecord,
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO manufacturers (name, serial_pattern, added_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET serial_pattern = excluded.serial_pattern,
                   added_at = excluded.added_at",
        )
        .await?;
    c.execute(&stmt, &[&m.name, &m.serial_pattern, &unix(m.added_at)])
        .await?;
    Ok(())
}

/// Sets (or lifts, with `None`) a station's quota inside the caller's transaction.
pub(super) async fn set_station_quota_in(
    tx: &deadpool_postgres::Transaction<'_>,
    name: &str,
    quota: Option<u64>,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let quota = quota
        .map(i64::try_from)
        .transpose()
        .map_err(|_| StoreError::Refused("quota is too large".into()))?;
    lock_live_station(tx, name).await?;
    let stmt = tx
        .prepare_cached("UPDATE stations SET quota = $2, updated_at = $3 WHERE name = $1")
        .await?;
    tx.execute(&stmt, &[&name, &quota, &unix(at)]).await?;
    Ok(())
}

#[async_trait]
impl StationStore for PostgresStore {
    async fn add_station(&self, s: NewStation) -> Result<(), StoreError> {
        let client = self.client().await?;
        add_station_in(&client, &s).await
    }

    async fn stations(&self) -> Result<Vec<StationRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {STATION_COLUMNS} FROM stations ORDER BY name"
            ))
            .await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(station_from_row)
            .collect()
    }

    async fn set_manufacturer(&self, m: ManufacturerRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        set_manufacturer_in(&client, &m).await
    }

    async fn set_station_status(
        &self,
        name: &str,
        status: StationStatus,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let r = set_station_status_in(&tx, name, status, at).await?;
        tx.commit().await?;
        Ok(r)
    }
}

pub(super) fn audit_from_row(r: &Row) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: r.try_get(0)?,
        event: AuditEvent {
            at: time_at(r.try_get(1)?)?,
            actor: r.try_get(2)?,
            action: r.try_get(3)?,
            subject: r.try_get(4)?,
            outcome: r.try_get(5)?,
            detail: r.try_get(6)?,
        },
        prev_hash: r.try_get(7)?,
        hash: r.try_get(8)?,
    })
}

#[async_trait]
impl AuditLog for PostgresStore {
    async fn append(&self, event: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let r = append_in(&tx, &event).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn audit_events(
        &self,
        actor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let client = self.client().await?;
        let limit = i64::from(limit);
        // Two statements rather than `$1 IS NULL OR actor = $1`, which a generic plan could
        // not serve from `audit_by_actor`.
        let rows = match actor {
            Some(actor) => {
                let stmt = client
                    .prepare_cached(
                        "SELECT id, at, actor, action, subject, outcome, detail, prev_hash, hash
                         FROM audit WHERE actor = $1 ORDER BY id DESC LIMIT $2",
                    )
                    .await?;
                client.query(&stmt, &[&actor, &limit]).await?
            }
            None => {
                let stmt = client
                    .prepare_cached(
                        "SELECT id, at, actor, action, subject, outcome, detail, prev_hash, hash
                         FROM audit ORDER BY id DESC LIMIT $1",
                    )
                    .await?;
                client.query(&stmt, &[&limit]).await?
            }
        };
        rows.iter().map(audit_from_row).collect()
    }

    async fn verify_audit_chain(&self) -> Result<Result<u64, i64>, StoreError> {
        use futures_util::TryStreamExt;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, at, actor, action, subject, outcome, detail, prev_hash, hash
                 FROM audit ORDER BY id",
            )
            .await?;
        let rows = client.query_raw(&stmt, std::iter::empty::<i64>()).await?;
        futures_util::pin_mut!(rows);
        let mut prev = GENESIS.to_string();
        let mut count = 0u64;
        while let Some(row) = rows.try_next().await? {
            let record = audit_from_row(&row)?;
            if record.prev_hash != prev || chain_hash(&prev, &record.event) != record.hash {
                return Ok(Err(record.id));
            }
            prev = record.hash;
            count += 1;
        }
        Ok(Ok(count))
    }
}
