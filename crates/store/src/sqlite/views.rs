//! The admin API's listings and statistics on SQLite. Listings build their WHERE clause
//! from the filters given (so the planner sees the index each shape needs) and continue
//! after the previous page's last key; statistics read the counts tables that triggers
//! keep (schema version 9).

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, Connection, Row};
use time::OffsetDateTime;

use super::rows::{account_from_row, certificate_from_row, unix, CERTIFICATE_COLUMNS};
use super::SqliteStore;
use crate::model::{AccountRecord, AuditRecord, CertificateRecord};
use crate::monitoring::AlertRecord;
use crate::policy::ApprovalRecord;
use crate::views::{
    AdminViews, AlertFilter, ApprovalFilter, AuditFilter, CertificateFilter, FleetStats, StatsRows,
    StatsWindow, DAY,
};
use crate::StoreError;

/// A WHERE clause built from the filters that are set, with numbered parameters.
#[derive(Default)]
struct Conditions {
    sql: String,
    args: Vec<Value>,
}

impl Conditions {
    /// Adds `template` with `{}` replaced by the next parameter, bound to `value`.
    fn add(&mut self, template: &str, value: impl Into<Value>) {
        self.args.push(value.into());
        let param = format!("?{}", self.args.len());
        self.sql.push_str(" AND ");
        self.sql.push_str(&template.replace("{}", &param));
    }

    /// Adds `template` if `value` is set.
    fn add_opt<V: Into<Value>>(&mut self, template: &str, value: Option<V>) {
        if let Some(v) = value {
            self.add(template, v);
        }
    }

    /// The next parameter's placeholder, bound to `value`.
    fn param(&mut self, value: impl Into<Value>) -> String {
        self.args.push(value.into());
        format!("?{}", self.args.len())
    }
}

fn collect<T>(
    conn: &Connection,
    sql: &str,
    args: Vec<Value>,
    map: fn(&Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), map)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

fn alert_from_row(r: &Row<'_>) -> rusqlite::Result<Result<AlertRecord, StoreError>> {
    let escalation = super::monitoring::escalation_from_row(r)?;
    let delivery: Option<String> = r.get(11)?;
    Ok((|| {
        Ok(AlertRecord {
            escalation: escalation?,
            delivery: delivery
                .map(|d| d.parse().map_err(StoreError::Corrupt))
                .transpose()?,
        })
    })())
}

/// Reads the statistics' rows in one read transaction (one snapshot for all of them).
fn stats_rows(conn: &Connection, w: StatsWindow) -> Result<StatsRows, StoreError> {
    conn.execute_batch("BEGIN")?;
    let rows = (|| {
        let mut rows = StatsRows::default();
        let mut stmt = conn.prepare_cached("SELECT status, n FROM device_counts")?;
        for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
            rows.devices.push(row?);
        }
        let mut stmt = conn.prepare_cached(
            "SELECT kind, profile, status, expiry_day, n FROM certificate_counts WHERE n <> 0",
        )?;
        for row in stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })? {
            rows.counted.push(row?);
        }
        // Today's valid certificates, split at `now`: a range of certificates_by_expiry.
        let mut stmt = conn.prepare_cached(
            "SELECT kind, profile, not_after >= ?1, COUNT(*) FROM certificates
             WHERE status = 'valid' AND not_after >= ?2 AND not_after < ?3
             GROUP BY 1, 2, 3",
        )?;
        let start = w.today_start();
        for row in stmt.query_map(params![w.now, start, start + DAY], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })? {
            rows.today.push(row?);
        }
        let mut stmt = conn.prepare_cached(
            "SELECT day, outcome, n FROM decision_counts WHERE day >= ?1 AND day <= ?2",
        )?;
        for row in stmt.query_map(params![w.first_request_day(), w.today], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })? {
            rows.decisions.push(row?);
        }
        Ok::<_, StoreError>(rows)
    })();
    conn.execute_batch("COMMIT")?;
    rows
}

#[async_trait]
impl AdminViews for SqliteStore {
    async fn certificate_page(
        &self,
        filter: &CertificateFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let f = filter.clone();
        self.read(move |conn| {
            let mut w = Conditions::default();
            w.add_opt("c.status = {}", f.status.map(|s| s.as_str().to_string()));
            w.add_opt("c.kind = {}", f.kind.map(|k| k.as_str().to_string()));
            w.add_opt("c.issuer = {}", f.issuer);
            w.add_opt("c.profile = {}", f.profile);
            w.add_opt("c.device_serial = {}", f.device_serial);
            if f.unrenewed {
                w.sql.push_str(
                    " AND NOT EXISTS (SELECT 1 FROM certificates s WHERE s.replaces = c.serial)",
                );
            }
            w.add_opt("c.not_after >= {}", f.not_after_from.map(unix));
            w.add_opt("c.not_after < {}", f.not_after_before.map(unix));
            if let Some((not_after, serial)) = f.after {
                let (a, s) = (w.param(unix(not_after)), w.param(serial));
                w.sql
                    .push_str(&format!(" AND (c.not_after, c.serial) > ({a}, {s})"));
            }
            let limit = w.param(i64::from(f.limit));
            let sql = format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates c WHERE 1 = 1{}
                 ORDER BY c.not_after, c.serial LIMIT {limit}",
                w.sql
            );
            collect(conn, &sql, w.args, certificate_from_row)
        })
        .await
    }

    async fn approval_page(
        &self,
        filter: &ApprovalFilter,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let f = filter.clone();
        self.read(move |conn| {
            let mut w = Conditions::default();
            w.add_opt("state = {}", f.state.map(|s| s.as_str().to_string()));
            w.add_opt("device_serial = {}", f.device_serial);
            w.add_opt("id > {}", f.after);
            let limit = w.param(i64::from(f.limit));
            let sql = format!(
                "SELECT {} FROM approvals WHERE 1 = 1{} ORDER BY id LIMIT {limit}",
                super::policy::APPROVAL_COLUMNS,
                w.sql
            );
            collect(conn, &sql, w.args, super::policy::approval_from_row)
        })
        .await
    }

    async fn alert_page(&self, filter: &AlertFilter) -> Result<Vec<AlertRecord>, StoreError> {
        let f = filter.clone();
        self.read(move |conn| {
            let mut w = Conditions::default();
            match f.open {
                Some(true) => w.sql.push_str(" AND e.resolved_at IS NULL"),
                Some(false) => w.sql.push_str(" AND e.resolved_at IS NOT NULL"),
                None => {}
            }
            w.add_opt("e.kind = {}", f.kind);
            w.add_opt("e.tier = {}", f.tier);
            w.add_opt("e.device_serial = {}", f.device_serial);
            w.add_opt("e.id < {}", f.before);
            let limit = w.param(i64::from(f.limit));
            // The delivery state as `alerts` reports it: the worst among the messages of
            // the scan that last notified the escalation, for its tier.
            let sql = format!(
                "SELECT {},
                   (SELECT CASE WHEN SUM(o.state = 'failed') > 0 THEN 'failed'
                                WHEN SUM(o.state = 'pending') > 0 THEN 'pending'
                                WHEN COUNT(*) > 0 THEN 'delivered' END
                    FROM outbox o
                    WHERE o.scan_id = e.notified_scan AND o.tier = e.tier AND o.event = 'firing')
                 FROM escalations e WHERE 1 = 1{} ORDER BY e.id DESC LIMIT {limit}",
                super::monitoring::ESCALATION_COLUMNS,
                w.sql
            );
            collect(conn, &sql, w.args, alert_from_row)
        })
        .await
    }

    async fn audit_search(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let f = filter.clone();
        self.read(move |conn| {
            let mut w = Conditions::default();
            w.add_opt("actor = {}", f.actor);
            w.add_opt("action = {}", f.action);
            w.add_opt("subject = {}", f.subject);
            w.add_opt("at >= {}", f.since.map(unix));
            w.add_opt("at < {}", f.until.map(unix));
            w.add_opt("id < {}", f.before);
            let limit = w.param(i64::from(f.limit));
            let sql = format!(
                "SELECT id, at, actor, action, subject, outcome, detail, prev_hash, hash
                 FROM audit WHERE 1 = 1{} ORDER BY id DESC LIMIT {limit}",
                w.sql
            );
            collect(conn, &sql, w.args, super::factory::audit_from_row)
        })
        .await
    }

    async fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        self.read(|conn| {
            collect(
                conn,
                "SELECT name, password_hash, label, serial_pattern, enabled, created_at,
                   any_serial, known_devices
                 FROM accounts ORDER BY name",
                Vec::new(),
                account_from_row,
            )
        })
        .await
    }

    async fn fleet_stats(
        &self,
        now: OffsetDateTime,
        days_ahead: u32,
        days_back: u32,
    ) -> Result<FleetStats, StoreError> {
        let window = StatsWindow::new(now, days_ahead, days_back);
        let rows = self.read(move |conn| stats_rows(conn, window)).await?;
        window.assemble(rows)
    }
}
