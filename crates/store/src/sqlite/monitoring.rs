//! [`MonitoringStore`] on SQLite. Candidate scans run on the blocking read pool and stream
//! rows in chunks over a bounded channel, so memory stays flat whatever the inventory size.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::rows::{time_at, unix};
use super::SqliteStore;
use crate::monitoring::*;
use crate::{LeaseStore, StoreError};

/// Rows per chunk sent to the scanner.
const CHUNK: usize = 1024;

/// The expiry candidates: valid operational certificates in the window, of active
/// devices, with no successor (renewal link) and no newer valid operational certificate.
/// A range scan of `certificates_by_expiry`, then three index probes per row.
const CANDIDATES: &str = "
    SELECT c.device_serial, c.serial, c.not_after, c.not_before
    FROM certificates c
    WHERE c.status = 'valid' AND c.not_after >= ?2 AND c.not_after < ?1
      AND c.kind = 'operational'
      AND NOT EXISTS (SELECT 1 FROM certificates s WHERE s.replaces = c.serial)
      AND NOT EXISTS (SELECT 1 FROM certificates n
                      WHERE n.device_serial = c.device_serial AND n.not_after > c.not_after
                        AND n.kind = 'operational' AND n.status = 'valid')
      AND EXISTS (SELECT 1 FROM devices d
                  WHERE d.serial_number = c.device_serial AND d.status = 'active')";

/// Failing devices: a range scan of the window on the covering partial index
/// `audit_refusals` (named: without statistics SQLite would rather walk all of the device
/// actors' history on `audit_by_actor`, which grows with time, not with the window) (device actors only: `'device:' <= actor < 'device;'`), each refusal
/// kept only if it is later than the device's newest issuance (a prefix probe of
/// `certificates_by_device_kind`), grouped by actor (SQLite's sorter spills to disk, so memory
/// stays bounded); then, per reported device, its last refusal through `audit_by_actor`.
/// `issued_at` has a resolution of one second: a refusal in the same second as an
/// issuance does not count, so a success is never reported as a failure.
const FAILING: &str = "
    WITH failing AS (
        SELECT a.actor AS actor, COUNT(*) AS n, MIN(a.at) AS first_at, MAX(a.at) AS last_at
        FROM audit a INDEXED BY audit_refusals
        WHERE a.outcome = 'refused' AND a.at >= ?1
          AND a.actor >= 'device:' AND a.actor < 'device;'
          AND a.at > COALESCE((SELECT MAX(c.issued_at) FROM certificates c
                               WHERE c.device_serial = substr(a.actor, 8)), -1)
        GROUP BY a.actor
        HAVING COUNT(*) >= ?2
    )
    SELECT substr(f.actor, 8), f.n, f.first_at, f.last_at, l.action, l.detail
    FROM failing f
    JOIN audit l ON l.id = (SELECT x.id FROM audit x
                            WHERE x.actor = f.actor AND x.outcome = 'refused'
                            ORDER BY x.id DESC LIMIT 1)
    WHERE NOT EXISTS (SELECT 1 FROM devices d
                      WHERE d.serial_number = substr(f.actor, 8)
                        AND d.status IN ('decommissioned', 'suspended'))";

pub(super) const ESCALATION_COLUMNS: &str =
    "e.id, e.kind, e.device_serial, e.certificate_serial, e.tier, \
    e.not_after, e.opened_at, e.notified_at, e.notified_scan, e.resolved_at, e.resolution";

pub(super) fn escalation_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<EscalationRecord, StoreError>> {
    let kind: String = r.get(1)?;
    let not_after: Option<i64> = r.get(5)?;
    let opened_at: i64 = r.get(6)?;
    let notified_at: Option<i64> = r.get(7)?;
    let resolved_at: Option<i64> = r.get(9)?;
    let resolution: Option<String> = r.get(10)?;
    let id: i64 = r.get(0)?;
    let device_serial: String = r.get(2)?;
    let certificate_serial: String = r.get(3)?;
    let tier: String = r.get(4)?;
    let notified_scan: Option<i64> = r.get(8)?;
    Ok((|| {
        Ok(EscalationRecord {
            id,
            kind: kind.parse().map_err(StoreError::Corrupt)?,
            device_serial,
            certificate_serial,
            tier,
            not_after: not_after.map(time_at).transpose()?,
            opened_at: time_at(opened_at)?,
            notified_at: notified_at.map(time_at).transpose()?,
            notified_scan,
            resolved: match resolved_at {
                Some(t) => Some((time_at(t)?, resolution.unwrap_or_default())),
                None => None,
            },
        })
    })())
}

/// Streams `sql` rows mapped by `map` in chunks; stops when the receiver is gone.
fn stream<T, P>(
    conn: &Connection,
    sql: &str,
    args: P,
    out: &mpsc::Sender<Vec<T>>,
    map: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
) -> Result<u64, StoreError>
where
    P: rusqlite::Params,
{
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut sent = 0u64;
    while let Some(row) = rows.next()? {
        chunk.push(map(row)??);
        if chunk.len() == CHUNK {
            sent += CHUNK as u64;
            if out
                .blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                .is_err()
            {
                return Ok(sent);
            }
        }
    }
    if !chunk.is_empty() {
        sent += chunk.len() as u64;
        let _ = out.blocking_send(chunk);
    }
    Ok(sent)
}

fn count_rows(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<(String, String, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (a, b, n) = row?;
        out.push((a, b, u64::try_from(n).unwrap_or(0)));
    }
    Ok(out)
}

#[async_trait]
impl MonitoringStore for SqliteStore {
    async fn expiry_candidates(
        &self,
        horizon: OffsetDateTime,
        expired_since: OffsetDateTime,
        out: mpsc::Sender<Vec<ExpiryCandidate>>,
    ) -> Result<u64, StoreError> {
        self.read(move |conn| {
            stream(
                conn,
                CANDIDATES,
                params![unix(horizon), unix(expired_since)],
                &out,
                |r| {
                    let device_serial: String = r.get(0)?;
                    let certificate_serial: String = r.get(1)?;
                    let not_after: i64 = r.get(2)?;
                    let not_before: i64 = r.get(3)?;
                    Ok(time_at(not_after).and_then(|not_after| {
                        Ok(ExpiryCandidate {
                            device_serial,
                            certificate_serial,
                            not_before: time_at(not_before)?,
                            not_after,
                        })
                    }))
                },
            )
        })
        .await
    }

    async fn birth_only_devices(
        &self,
        recorded_before: OffsetDateTime,
        out: mpsc::Sender<Vec<BirthOnlyDevice>>,
    ) -> Result<u64, StoreError> {
        self.read(move |conn| {
            stream(
                conn,
                "SELECT serial_number, created_at FROM devices
                 WHERE status = 'manufactured' AND created_at < ?1",
                params![unix(recorded_before)],
                &out,
                |r| {
                    let device_serial: String = r.get(0)?;
                    let since: i64 = r.get(1)?;
                    Ok(time_at(since).map(|since| BirthOnlyDevice {
                        device_serial,
                        since,
                    }))
                },
            )
        })
        .await
    }

    async fn failing_devices(
        &self,
        since: OffsetDateTime,
        threshold: u32,
        out: mpsc::Sender<Vec<FailingDevice>>,
    ) -> Result<u64, StoreError> {
        self.read(move |conn| {
            stream(
                conn,
                FAILING,
                params![unix(since), threshold.max(1)],
                &out,
                |r| {
                    let device_serial: String = r.get(0)?;
                    let refusals: i64 = r.get(1)?;
                    let first: i64 = r.get(2)?;
                    let last: i64 = r.get(3)?;
                    let last_action: String = r.get(4)?;
                    let last_error: String = r.get(5)?;
                    Ok((|| {
                        Ok(FailingDevice {
                            device_serial,
                            refusals: u64::try_from(refusals).unwrap_or(0),
                            first_refused_at: time_at(first)?,
                            last_refused_at: time_at(last)?,
                            last_action,
                            last_error,
                        })
                    })())
                },
            )
        })
        .await
    }

    async fn open_escalations(&self) -> Result<Vec<EscalationRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations e WHERE e.resolved_at IS NULL"
            ))?;
            let rows = stmt.query_map([], escalation_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }

    async fn stream_open_escalations(
        &self,
        out: mpsc::Sender<Vec<EscalationRecord>>,
    ) -> Result<u64, StoreError> {
        self.read(move |conn| {
            stream(
                conn,
                &format!(
                    "SELECT {ESCALATION_COLUMNS} FROM escalations e WHERE e.resolved_at IS NULL"
                ),
                [],
                &out,
                escalation_from_row,
            )
        })
        .await
    }

    async fn alerts(
        &self,
        include_resolved: bool,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        self.read(move |conn| {
            // The worst state among the messages of the scan that last notified the
            // escalation, for its tier: failed > pending > delivered.
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ESCALATION_COLUMNS},
                   (SELECT CASE WHEN SUM(o.state = 'failed') > 0 THEN 'failed'
                                WHEN SUM(o.state = 'pending') > 0 THEN 'pending'
                                WHEN COUNT(*) > 0 THEN 'delivered' END
                    FROM outbox o
                    WHERE o.scan_id = e.notified_scan AND o.tier = e.tier AND o.event = 'firing')
                 FROM escalations e
                 WHERE ?1 OR e.resolved_at IS NULL
                 ORDER BY e.resolved_at IS NOT NULL, e.resolved_at DESC, e.not_after, e.id
                 LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![include_resolved, limit], |r| {
                let delivery: Option<String> = r.get(11)?;
                Ok((escalation_from_row(r)?, delivery))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (escalation, delivery) = row?;
                out.push(AlertRecord {
                    escalation: escalation?,
                    delivery: delivery
                        .map(|d| d.parse().map_err(StoreError::Corrupt))
                        .transpose()?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn commit_scan(&self, scan: ScanCommit) -> Result<i64, StoreError> {
        self.inner
            .writer
            .write(move |conn| {
                let at = unix(scan.at);
                conn.prepare_cached("INSERT INTO monitor_scans (at) VALUES (?1)")?
                    .execute([at])?;
                let scan_id = conn.last_insert_rowid();
                for change in scan.changes {
                    match change {
                        EscalationChange::Open {
                            kind,
                            device_serial,
                            certificate_serial,
                            tier,
                            not_after,
                        } => {
                            conn.prepare_cached(
                                "INSERT INTO escalations (kind, device_serial, certificate_serial,
                                   tier, not_after, opened_at, notified_at, notified_scan)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
                            )?
                            .execute(params![
                                kind.as_str(),
                                device_serial,
                                certificate_serial,
                                tier,
                                not_after.map(unix),
                                at,
                                scan_id
                            ])?;
                        }
                        EscalationChange::Notify { id, tier } => {
                            let n = conn
                                .prepare_cached(
                                    "UPDATE escalations SET tier = ?2, notified_at = ?3,
                                       notified_scan = ?4
                                     WHERE id = ?1 AND resolved_at IS NULL",
                                )?
                                .execute(params![id, tier, at, scan_id])?;
                            if n == 0 {
                                return Err(StoreError::NotFound(format!("open escalation {id}")));
                            }
                        }
                        EscalationChange::Resolve { id, resolution } => {
                            let n = conn
                                .prepare_cached(
                                    "UPDATE escalations SET resolved_at = ?2, resolution = ?3
                                     WHERE id = ?1 AND resolved_at IS NULL",
                                )?
                                .execute(params![id, at, resolution])?;
                            if n == 0 {
                                return Err(StoreError::NotFound(format!("open escalation {id}")));
                            }
                        }
                    }
                }
                for n in scan.notifications {
                    conn.prepare_cached(
                        "INSERT INTO outbox (scan_id, channel, tier, event, payload, created_at,
                           next_attempt_at, state)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 'pending')",
                    )?
                    .execute(params![scan_id, n.channel, n.tier, n.event, n.payload, at])?;
                }
                Ok(scan_id)
            })
            .await
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.inner
            .writer
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "UPDATE outbox SET lease_until = ?2
                     WHERE id IN (SELECT id FROM outbox
                                  WHERE state = 'pending' AND next_attempt_at <= ?1
                                    AND (lease_until IS NULL OR lease_until <= ?1)
                                  ORDER BY next_attempt_at, id LIMIT ?3)
                     RETURNING id, scan_id, channel, tier, event, payload, created_at, attempts",
                )?;
                let rows = stmt.query_map(params![unix(now), unix(lease_until), limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, scan_id, channel, tier, event, payload, created_at, attempts) = row?;
                    out.push(OutboxMessage {
                        id,
                        scan_id,
                        channel,
                        tier,
                        event,
                        payload,
                        created_at: time_at(created_at)?,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    });
                }
                out.sort_by_key(|m| m.id);
                Ok(out)
            })
            .await
    }

    async fn record_delivery(
        &self,
        id: i64,
        outcome: DeliveryOutcome,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner
            .writer
            .write(move |conn| {
                let at = unix(at);
                let (state, next, error, delivered) = match outcome {
                    DeliveryOutcome::Delivered => ("delivered", at, None, Some(at)),
                    DeliveryOutcome::Retry { at: next, error } => {
                        ("pending", unix(next), Some(error), None)
                    }
                    DeliveryOutcome::Failed { error } => ("failed", at, Some(error), None),
                };
                let n = conn
                    .prepare_cached(
                        "UPDATE outbox SET state = ?2, next_attempt_at = ?3,
                           last_error = COALESCE(?4, last_error), delivered_at = ?5,
                           attempts = attempts + 1, lease_until = NULL
                         WHERE id = ?1 AND state = 'pending'",
                    )?
                    .execute(params![id, state, next, error, delivered])?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("pending notification {id}")));
                }
                Ok(())
            })
            .await
    }

    async fn inventory_summary(
        &self,
        now: OffsetDateTime,
        horizons: &[i64],
    ) -> Result<InventorySummary, StoreError> {
        let horizons = horizons.to_vec();
        self.read(move |conn| {
            let now = unix(now);
            // From the counts the schema's triggers keep (not a scan of every certificate:
            // this runs within seconds of every issuance).
            let certificates = count_rows(
                conn,
                "SELECT kind, status, SUM(n) FROM certificate_counts
                 GROUP BY kind, status HAVING SUM(n) > 0",
                [],
            )?;
            let mut expiring = Vec::new();
            for h in horizons {
                let n: i64 = conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM certificates
                         WHERE status = 'valid' AND not_after >= ?1 AND not_after < ?2",
                    )?
                    .query_row(params![now, now.saturating_add(h)], |r| r.get(0))?;
                expiring.push((h, u64::try_from(n).unwrap_or(0)));
            }
            let birth_only: i64 = conn
                .prepare_cached(
                    "SELECT COALESCE((SELECT n FROM device_counts WHERE status = 'manufactured'), 0)",
                )?
                .query_row([], |r| r.get(0))?;
            let outbox = count_rows(
                conn,
                "SELECT state, channel, COUNT(*) FROM outbox GROUP BY state, channel",
                [],
            )?;
            let escalations = count_rows(
                conn,
                "SELECT kind, tier, COUNT(*) FROM escalations WHERE resolved_at IS NULL
                 GROUP BY kind, tier",
                [],
            )?;
            Ok(InventorySummary {
                certificates,
                expiring,
                birth_only_devices: u64::try_from(birth_only).unwrap_or(0),
                outbox,
                escalations,
            })
        })
        .await
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.inner
            .writer
            .write(move |conn| {
                let taken = conn
                    .prepare_cached(
                        "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?4)
                         ON CONFLICT(name) DO UPDATE SET holder = excluded.holder,
                           until = excluded.until
                         WHERE leases.holder = excluded.holder OR leases.until <= ?3
                         RETURNING holder",
                    )?
                    .query_row(params![name, holder, unix(now), unix(until)], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()?;
                Ok(taken.is_some())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    // The monitoring conformance suite runs from sqlite/tests.rs with the others.
    use super::super::tests::fresh;

    /// The failing-devices query scans the refusal index over the window, never the
    /// audit table, and finds each device's last refusal through `audit_by_actor`.
    #[test]
    fn the_failing_devices_query_uses_the_refusal_index() {
        let (_dir, store) = fresh();
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", super::FAILING))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map([0, 3], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let plan = plan.join("; ");
        assert!(plan.contains("COVERING INDEX audit_refusals"), "{plan}");
        assert!(plan.contains("audit_by_actor"), "{plan}");
        assert!(!plan.contains("SCAN a "), "{plan}");
    }

    /// The candidate scan is a range scan of the expiry index, never a table scan.
    #[test]
    fn the_candidate_scan_uses_the_expiry_index() {
        let (_dir, store) = fresh();
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", super::CANDIDATES))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map([1, 0], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let plan = plan.join("; ");
        assert!(plan.contains("certificates_by_expiry"), "{plan}");
        assert!(!plan.contains("SCAN c "), "{plan}");
    }
}
