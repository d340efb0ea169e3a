//! Factory stations, birth-issuance checks and the audit chain for SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use super::rows::{time_at, unix};
use super::SqliteStore;
use crate::model::*;
use crate::{AuditLog, StationStore, StoreError};

const STATION_COLUMNS: &str = "name, serial_pattern, range_from, range_to, quota, issued, \
    valid_days, allow_reissue, status, credential_serial, created_at";

fn station_from_row(r: &Row<'_>) -> rusqlite::Result<Result<StationRecord, StoreError>> {
    let quota: Option<i64> = r.get(4)?;
    let issued: i64 = r.get(5)?;
    let valid_days: i64 = r.get(6)?;
    let status: String = r.get(8)?;
    let created_at: i64 = r.get(10)?;
    let name: String = r.get(0)?;
    let serial_pattern: String = r.get(1)?;
    let range_from: Option<String> = r.get(2)?;
    let range_to: Option<String> = r.get(3)?;
    let allow_reissue: bool = r.get(7)?;
    let credential_serial: String = r.get(9)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("station {name}: {what}"));
    Ok((|| {
        Ok(StationRecord {
            quota: quota
                .map(|q| u64::try_from(q).map_err(|_| corrupt("quota")))
                .transpose()?,
            issued: u64::try_from(issued).map_err(|_| corrupt("issued"))?,
            valid_days: u32::try_from(valid_days).map_err(|_| corrupt("valid_days"))?,
            status: status.parse().map_err(StoreError::Corrupt)?,
            created_at: time_at(created_at)?,
            serial_pattern,
            range_from,
            range_to,
            allow_reissue,
            credential_serial,
            name: name.clone(),
        })
    })())
}

pub(super) fn station(conn: &Connection, name: &str) -> Result<Option<StationRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {STATION_COLUMNS} FROM stations WHERE name = ?1"
    ))?
    .query_row([name], station_from_row)
    .optional()?
    .transpose()
}

pub(super) fn has_live_birth(conn: &Connection, device: &str, at: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            // The unary + keeps the planner on the device index: the expiry index would
            // scan every valid certificate (no ANALYZE statistics guide it otherwise).
            "SELECT EXISTS(SELECT 1 FROM certificates WHERE device_serial = ?1 AND kind = 'birth'
               AND +status = 'valid' AND +not_after > ?2)",
        )?
        .query_row(params![device, at], |r| r.get(0))?)
}

/// The birth checks the commit enforces (see [`BirthContext`]); runs inside the
/// transaction that records the certificate.
pub(super) fn charge_birth(
    conn: &Connection,
    device: &str,
    ctx: &BirthContext,
    at: i64,
) -> Result<(), StoreError> {
    if let Some(name) = &ctx.station {
        let s = station(conn, name)?
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
        conn.prepare_cached(
            "UPDATE stations SET issued = issued + 1, updated_at = ?2 WHERE name = ?1",
        )?
        .execute(params![name, at])?;
    }
    if !ctx.reissue && has_live_birth(conn, device, at)? {
        return Err(StoreError::Refused(format!(
            "device {device} already has a live birth certificate"
        )));
    }
    conn.prepare_cached(
        "UPDATE devices SET station = COALESCE(?2, station), model = COALESCE(?3, model),
           batch = COALESCE(?4, batch) WHERE serial_number = ?1",
    )?
    .execute(params![device, ctx.station, ctx.model, ctx.batch])?;
    Ok(())
}

/// Adds a station inside the caller's transaction.
pub(super) fn add_station_in(conn: &Connection, s: &NewStation) -> Result<(), StoreError> {
    let quota = s
        .quota
        .map(i64::try_from)
        .transpose()
        .map_err(|_| StoreError::Refused("quota is too large".into()))?;
    conn.prepare_cached(&format!(
        "INSERT INTO stations ({STATION_COLUMNS}, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, 'active', ?8, ?9, ?9)"
    ))?
    .execute(params![
        s.name,
        s.serial_pattern,
        s.range_from,
        s.range_to,
        quota,
        i64::from(s.valid_days),
        s.allow_reissue,
        s.credential_serial,
        unix(s.created_at),
    ])
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("station '{}' (names are never reused)", s.name))
        }
        other => other,
    })?;
    Ok(())
}

/// Records a manufacturer CA's scope inside the caller's transaction.
pub(super) fn set_manufacturer_in(
    conn: &Connection,
    m: &ManufacturerRecord,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO manufacturers (name, serial_pattern, added_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET serial_pattern = excluded.serial_pattern,
                       added_at = excluded.added_at",
    )?
    .execute(params![m.name, m.serial_pattern, unix(m.added_at)])?;
    Ok(())
}

/// Refuses a missing or removed station (a removed station never changes again). The
/// caller's write transaction holds SQLite's single writer lock.
fn live_station(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let current =
        station(conn, name)?.ok_or_else(|| StoreError::NotFound(format!("station {name}")))?;
    if current.status == StationStatus::Removed {
        return Err(StoreError::Refused(format!("station {name} was removed")));
    }
    Ok(())
}

/// Changes a station's status inside the caller's transaction.
pub(super) fn set_station_status_in(
    conn: &Connection,
    name: &str,
    status: StationStatus,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    live_station(conn, name)?;
    conn.prepare_cached("UPDATE stations SET status = ?2, updated_at = ?3 WHERE name = ?1")?
        .execute(params![name, status.as_str(), unix(at)])?;
    Ok(())
}

/// Sets (or lifts, with `None`) a station's quota inside the caller's transaction.
pub(super) fn set_station_quota_in(
    conn: &Connection,
    name: &str,
    quota: Option<u64>,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    live_station(conn, name)?;
    let quota = quota
        .map(i64::try_from)
        .transpose()
        .map_err(|_| StoreError::Refused("quota is too large".into()))?;
    conn.prepare_cached("UPDATE stations SET quota = ?2, updated_at = ?3 WHERE name = ?1")?
        .execute(params![name, quota, unix(at)])?;
    Ok(())
}

/// Appends an audit event, chained to the head, inside the caller's transaction.
pub(super) fn append_in(conn: &Connection, event: &AuditEvent) -> Result<(), StoreError> {
    let prev: String = conn
        .prepare_cached("SELECT hash FROM audit ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or_else(|| GENESIS.to_string());
    let hash = chain_hash(&prev, event);
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, action, subject, outcome, detail, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        unix(event.at),
        event.actor,
        event.action,
        event.subject,
        event.outcome,
        event.detail,
        prev,
        hash
    ])?;
    Ok(())
}

#[async_trait]
impl StationStore for SqliteStore {
    async fn add_station(&self, s: NewStation) -> Result<(), StoreError> {
        self.inner
            .writer
            .write(move |conn| add_station_in(conn, &s))
            .await
    }

    async fn stations(&self) -> Result<Vec<StationRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {STATION_COLUMNS} FROM stations ORDER BY name"
            ))?;
            let rows = stmt.query_map([], station_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }

    async fn set_manufacturer(&self, m: ManufacturerRecord) -> Result<(), StoreError> {
        self.inner
            .writer
            .write(move |conn| set_manufacturer_in(conn, &m))
            .await
    }

    async fn set_station_status(
        &self,
        name: &str,
        status: StationStatus,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let name = name.to_string();
        self.inner
            .writer
            .write(move |conn| set_station_status_in(conn, &name, status, at))
            .await
    }
}

pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn chain_hash(prev: &str, e: &AuditEvent) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for field in [
        prev,
        &unix(e.at).to_string(),
        &e.actor,
        &e.action,
        &e.subject,
        &e.outcome,
        &e.detail,
    ] {
        // Length-prefixed, so that no two different events hash the same bytes.
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field.as_bytes());
    }
    hex::encode(ctx.finish())
}

pub(super) fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<Result<AuditRecord, StoreError>> {
    let id: i64 = r.get(0)?;
    let at: i64 = r.get(1)?;
    let event = |at| AuditEvent {
        at,
        actor: String::new(),
        action: String::new(),
        subject: String::new(),
        outcome: String::new(),
        detail: String::new(),
    };
    let (actor, action, subject, outcome, detail): (String, String, String, String, String) =
        (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
    let prev_hash: String = r.get(7)?;
    let hash: String = r.get(8)?;
    Ok(time_at(at).map(|at| AuditRecord {
        id,
        event: AuditEvent {
            actor,
            action,
            subject,
            outcome,
            detail,
            ..event(at)
        },
        prev_hash,
        hash,
    }))
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.inner
            .writer
            .write(move |conn| append_in(conn, &event))
            .await
    }

    async fn audit_events(
        &self,
        actor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let actor = actor.map(str::to_string);
        self.read(move |conn| {
            let sql =
                "SELECT id, at, actor, action, subject, outcome, detail, prev_hash, hash FROM audit
                       WHERE ?1 IS NULL OR actor = ?1 ORDER BY id DESC LIMIT ?2";
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params![actor, i64::from(limit)], audit_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }

    async fn verify_audit_chain(&self) -> Result<Result<u64, i64>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor, action, subject, outcome, detail, prev_hash, hash FROM audit ORDER BY id",
            )?;
            let rows = stmt.query_map([], audit_from_row)?;
            let mut prev = GENESIS.to_string();
            let mut count = 0u64;
            for row in rows {
                let record = row??;
                if record.prev_hash != prev || chain_hash(&prev, &record.event) != record.hash {
                    return Ok(Err(record.id));
                }
                prev = record.hash;
                count += 1;
            }
            Ok(Ok(count))
        })
        .await
    }
}
