//! [`MonitoringStore`] on PostgreSQL. Candidate scans stream rows (`query_raw`) in chunks
//! over a bounded channel; outbox claims use `FOR UPDATE SKIP LOCKED`, so several nodes
//! delivering at once never send a message twice; leases are one upsert each.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use futures_util::TryStreamExt;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::rows::{count, opt_time, params, parsed, time_at, unix};
use super::PostgresStore;
use crate::monitoring::*;
use crate::{LeaseStore, StoreError};

/// Rows per chunk sent to the scanner.
const CHUNK: usize = 1024;

/// Same question as the SQLite backend's: valid operational certificates in the window, of
/// active devices, with no successor and no newer valid operational certificate.
const CANDIDATES: &str = "
    SELECT c.device_serial, c.serial, c.not_after, c.not_before
    FROM certificates c
    WHERE c.status = 'valid' AND c.not_after >= $2 AND c.not_after < $1
      AND c.kind = 'operational'
      AND NOT EXISTS (SELECT 1 FROM certificates s WHERE s.replaces = c.serial)
      AND NOT EXISTS (SELECT 1 FROM certificates n
                      WHERE n.device_serial = c.device_serial AND n.not_after > c.not_after
                        AND n.kind = 'operational' AND n.status = 'valid')
      AND EXISTS (SELECT 1 FROM devices d
                  WHERE d.serial_number = c.device_serial AND d.status = 'active')";

/// Failing devices: refusals in the window (partial index `audit_refusals`) later than
/// the device's newest issuance, grouped by actor, with the last refusal's details.
const FAILING: &str = "
    WITH failing AS (
        SELECT a.actor AS actor, COUNT(*) AS n, MIN(a.at) AS first_at, MAX(a.at) AS last_at
        FROM audit a
        WHERE a.outcome = 'refused' AND a.at >= $1
          AND a.actor >= 'device:' AND a.actor < 'device;'
          AND a.at > COALESCE((SELECT MAX(c.issued_at) FROM certificates c
                               WHERE c.device_serial = substr(a.actor, 8)), -1)
        GROUP BY a.actor
        HAVING COUNT(*) >= $2
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

pub(super) fn escalation_from_row(r: &Row) -> Result<EscalationRecord, StoreError> {
    let resolved_at: Option<i64> = r.try_get(9)?;
    let resolution: Option<String> = r.try_get(10)?;
    Ok(EscalationRecord {
        id: r.try_get(0)?,
        kind: parsed(r.try_get(1)?)?,
        device_serial: r.try_get(2)?,
        certificate_serial: r.try_get(3)?,
        tier: r.try_get(4)?,
        not_after: opt_time(r.try_get(5)?)?,
        opened_at: time_at(r.try_get(6)?)?,
        notified_at: opt_time(r.try_get(7)?)?,
        notified_scan: r.try_get(8)?,
        resolved: match resolved_at {
            Some(t) => Some((time_at(t)?, resolution.unwrap_or_default())),
            None => None,
        },
    })
}

impl PostgresStore {
    /// Streams `sql` rows mapped by `map` in chunks; stops when the receiver is gone.
    async fn stream<T>(
        &self,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
        out: &mpsc::Sender<Vec<T>>,
        map: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        let rows = client.query_raw(&stmt, params(args)).await?;
        futures_util::pin_mut!(rows);
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut sent = 0u64;
        while let Some(row) = rows.try_next().await? {
            chunk.push(map(&row)?);
            if chunk.len() == CHUNK {
                sent += CHUNK as u64;
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if out.send(full).await.is_err() {
                    return Ok(sent);
                }
            }
        }
        if !chunk.is_empty() {
            sent += chunk.len() as u64;
            let _ = out.send(chunk).await;
        }
        Ok(sent)
    }
}

async fn count_rows(
    c: &impl GenericClient,
    sql: &str,
) -> Result<Vec<(String, String, u64)>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    c.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<_, String>(0)?,
                r.try_get::<_, String>(1)?,
                count(r.try_get(2)?),
            ))
        })
        .collect()
}

#[async_trait]
impl MonitoringStore for PostgresStore {
    async fn expiry_candidates(
        &self,
        horizon: OffsetDateTime,
        expired_since: OffsetDateTime,
        out: mpsc::Sender<Vec<ExpiryCandidate>>,
    ) -> Result<u64, StoreError> {
        let (h, s) = (unix(horizon), unix(expired_since));
        self.stream(CANDIDATES, &[&h, &s], &out, |r| {
            Ok(ExpiryCandidate {
                device_serial: r.try_get(0)?,
                certificate_serial: r.try_get(1)?,
                not_after: time_at(r.try_get(2)?)?,
                not_before: time_at(r.try_get(3)?)?,
            })
        })
        .await
    }

    async fn birth_only_devices(
        &self,
        recorded_before: OffsetDateTime,
        out: mpsc::Sender<Vec<BirthOnlyDevice>>,
    ) -> Result<u64, StoreError> {
        let before = unix(recorded_before);
        self.stream(
            "SELECT serial_number, created_at FROM devices
             WHERE status = 'manufactured' AND created_at < $1",
            &[&before],
            &out,
            |r| {
                Ok(BirthOnlyDevice {
                    device_serial: r.try_get(0)?,
                    since: time_at(r.try_get(1)?)?,
                })
            },
        )
        .await
    }

    async fn failing_devices(
        &self,
        since: OffsetDateTime,
        threshold: u32,
        out: mpsc::Sender<Vec<FailingDevice>>,
    ) -> Result<u64, StoreError> {
        let (since, threshold) = (unix(since), i64::from(threshold.max(1)));
        self.stream(FAILING, &[&since, &threshold], &out, |r| {
            Ok(FailingDevice {
                device_serial: r.try_get(0)?,
                refusals: count(r.try_get(1)?),
                first_refused_at: time_at(r.try_get(2)?)?,
                last_refused_at: time_at(r.try_get(3)?)?,
                last_action: r.try_get(4)?,
                last_error: r.try_get(5)?,
            })
        })
        .await
    }

    async fn open_escalations(&self) -> Result<Vec<EscalationRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations e WHERE e.resolved_at IS NULL"
            ))
            .await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(escalation_from_row)
            .collect()
    }

    async fn stream_open_escalations(
        &self,
        out: mpsc::Sender<Vec<EscalationRecord>>,
    ) -> Result<u64, StoreError> {
        self.stream(
            &format!("SELECT {ESCALATION_COLUMNS} FROM escalations e WHERE e.resolved_at IS NULL"),
            &[],
            &out,
            escalation_from_row,
        )
        .await
    }

    async fn alerts(
        &self,
        include_resolved: bool,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let client = self.client().await?;
        // The worst state among the messages of the scan that last notified the
        // escalation, for its tier: failed > pending > delivered.
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {ESCALATION_COLUMNS},
                   (SELECT CASE WHEN bool_or(o.state = 'failed') THEN 'failed'
                                WHEN bool_or(o.state = 'pending') THEN 'pending'
                                WHEN COUNT(*) > 0 THEN 'delivered' END
                    FROM outbox o
                    WHERE o.scan_id = e.notified_scan AND o.tier = e.tier AND o.event = 'firing')
                 FROM escalations e
                 WHERE $1 OR e.resolved_at IS NULL
                 ORDER BY e.resolved_at IS NOT NULL, e.resolved_at DESC, e.not_after, e.id
                 LIMIT $2"
            ))
            .await?;
        client
            .query(&stmt, &[&include_resolved, &i64::from(limit)])
            .await?
            .iter()
            .map(|r| {
                let delivery: Option<String> = r.try_get(11)?;
                Ok(AlertRecord {
                    escalation: escalation_from_row(r)?,
                    delivery: delivery.map(parsed).transpose()?,
                })
            })
            .collect()
    }

    async fn commit_scan(&self, scan: ScanCommit) -> Result<i64, StoreError> {
        let at = unix(scan.at);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached("INSERT INTO monitor_scans (at) VALUES ($1) RETURNING id")
            .await?;
        let scan_id: i64 = tx.query_one(&stmt, &[&at]).await?.try_get(0)?;
        for change in scan.changes {
            match change {
                EscalationChange::Open {
                    kind,
                    device_serial,
                    certificate_serial,
                    tier,
                    not_after,
                } => {
                    let stmt = tx
                        .prepare_cached(
                            "INSERT INTO escalations (kind, device_serial, certificate_serial,
                               tier, not_after, opened_at, notified_at, notified_scan)
                             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
                        )
                        .await?;
                    tx.execute(
                        &stmt,
                        &[
                            &kind.as_str(),
                            &device_serial,
                            &certificate_serial,
                            &tier,
                            &not_after.map(unix),
                            &at,
                            &scan_id,
                        ],
                    )
                    .await?;
                }
                EscalationChange::Notify { id, tier } => {
                    let stmt = tx
                        .prepare_cached(
                            "UPDATE escalations SET tier = $2, notified_at = $3, notified_scan = $4
                             WHERE id = $1 AND resolved_at IS NULL",
                        )
                        .await?;
                    if tx.execute(&stmt, &[&id, &tier, &at, &scan_id]).await? == 0 {
                        return Err(StoreError::NotFound(format!("open escalation {id}")));
                    }
                }
                EscalationChange::Resolve { id, resolution } => {
                    let stmt = tx
                        .prepare_cached(
                            "UPDATE escalations SET resolved_at = $2, resolution = $3
                             WHERE id = $1 AND resolved_at IS NULL",
                        )
                        .await?;
                    if tx.execute(&stmt, &[&id, &at, &resolution]).await? == 0 {
                        return Err(StoreError::NotFound(format!("open escalation {id}")));
                    }
                }
            }
        }
        for n in scan.notifications {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO outbox (scan_id, channel, tier, event, payload, created_at,
                       next_attempt_at, state)
                     VALUES ($1, $2, $3, $4, $5, $6, $6, 'pending')",
                )
                .await?;
            tx.execute(
                &stmt,
                &[&scan_id, &n.channel, &n.tier, &n.event, &n.payload, &at],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(scan_id)
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE outbox SET lease_until = $2
                 WHERE id IN (SELECT id FROM outbox
                              WHERE state = 'pending' AND next_attempt_at <= $1
                                AND (lease_until IS NULL OR lease_until <= $1)
                              ORDER BY next_attempt_at, id LIMIT $3
                              FOR UPDATE SKIP LOCKED)
                 RETURNING id, scan_id, channel, tier, event, payload, created_at, attempts",
            )
            .await?;
        let mut out = client
            .query(&stmt, &[&unix(now), &unix(lease_until), &i64::from(limit)])
            .await?
            .iter()
            .map(|r| {
                let attempts: i64 = r.try_get(7)?;
                Ok(OutboxMessage {
                    id: r.try_get(0)?,
                    scan_id: r.try_get(1)?,
                    channel: r.try_get(2)?,
                    tier: r.try_get(3)?,
                    event: r.try_get(4)?,
                    payload: r.try_get(5)?,
                    created_at: time_at(r.try_get(6)?)?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    async fn record_delivery(
        &self,
        id: i64,
        outcome: DeliveryOutcome,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = unix(at);
        let (state, next, error, delivered) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", at, None, Some(at)),
            DeliveryOutcome::Retry { at: next, error } => {
                ("pending", unix(next), Some(error), None)
            }
            DeliveryOutcome::Failed { error } => ("failed", at, Some(error), None),
        };
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE outbox SET state = $2, next_attempt_at = $3,
                   last_error = COALESCE($4, last_error), delivered_at = $5,
                   attempts = attempts + 1, lease_until = NULL
                 WHERE id = $1 AND state = 'pending'",
            )
            .await?;
        let n = client
            .execute(&stmt, &[&id, &state, &next, &error, &delivered])
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("pending notification {id}")));
        }
        Ok(())
    }

    async fn inventory_summary(
        &self,
        now: OffsetDateTime,
        horizons: &[i64],
    ) -> Result<InventorySummary, StoreError> {
        let now = unix(now);
        let mut client = self.client().await?;
        // The gauges are refreshed by every expiry scan: the fold keeps the count deltas
        // few even where nobody reads the statistics.
        super::views::fold_counts(&mut client).await?;
        // From the folded counts (not a scan of every certificate: this runs within seconds
        // of every issuance).
        let certificates = count_rows(
            &client,
            "SELECT kind, status, SUM(n)::BIGINT FROM certificate_counts
             GROUP BY kind, status HAVING SUM(n) > 0",
        )
        .await?;
        let mut expiring = Vec::new();
        let stmt = client
            .prepare_cached(
                "SELECT COUNT(*) FROM certificates
                 WHERE status = 'valid' AND not_after >= $1 AND not_after < $2",
            )
            .await?;
        for &h in horizons {
            let n: i64 = client
                .query_one(&stmt, &[&now, &now.saturating_add(h)])
                .await?
                .try_get(0)?;
            expiring.push((h, count(n)));
        }
        let stmt = client
            .prepare_cached(
                "SELECT COALESCE((SELECT n FROM device_counts WHERE status = 'manufactured'), 0)",
            )
            .await?;
        let birth_only: i64 = client.query_one(&stmt, &[]).await?.try_get(0)?;
        let outbox = count_rows(
            &client,
            "SELECT state, channel, COUNT(*) FROM outbox GROUP BY state, channel",
        )
        .await?;
        let escalations = count_rows(
            &client,
            "SELECT kind, tier, COUNT(*) FROM escalations WHERE resolved_at IS NULL
             GROUP BY kind, tier",
        )
        .await?;
        Ok(InventorySummary {
            certificates,
            expiring,
            birth_only_devices: count(birth_only),
            outbox,
            escalations,
        })
    }
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        // The conflict path locks the row: of two nodes racing for a free lease, the
        // second sees the first's row and gets nothing back.
        let stmt = client
            .prepare_cached(
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $4)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.holder = excluded.holder OR leases.until <= $3
                 RETURNING holder",
            )
            .await?;
        let taken = client
            .query_opt(&stmt, &[&name, &holder, &unix(now), &unix(until)])
            .await?;
        Ok(taken.is_some())
    }
}
