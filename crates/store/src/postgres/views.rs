//! The admin API's listings and statistics on PostgreSQL. Listings build their WHERE
//! clause from the filters given (so the planner sees the index each shape needs) and
//! continue after the previous page's last key; statistics fold the count deltas that
//! triggers append (schema version 4) into the counts, then read the counts.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::rows::{account_from_row, certificate_from_row, parsed, unix, CERTIFICATE_COLUMNS};
use super::PostgresStore;
use crate::model::{AccountRecord, AuditRecord, CertificateRecord};
use crate::monitoring::AlertRecord;
use crate::policy::ApprovalRecord;
use crate::views::{
    AdminViews, AlertFilter, ApprovalFilter, AuditFilter, CertificateFilter, FleetStats, StatsRows,
    StatsWindow, DAY,
};
use crate::StoreError;

/// Transaction-level advisory lock of the count roll-up ("counts" in ASCII): one session
/// folds the deltas at a time.
const COUNTS_LOCK: i64 = 0x636f_756e_7473;

/// Each statement moves the deltas its snapshot sees into the counts (deltas of
/// transactions still running stay for the next fold).
const FOLD_DELTAS: [&str; 3] = [
    "WITH moved AS (DELETE FROM certificate_count_deltas
                    RETURNING kind, profile, status, expiry_day, n)
     INSERT INTO certificate_counts (kind, profile, status, expiry_day, n)
     SELECT kind, profile, status, expiry_day, SUM(n)::BIGINT FROM moved GROUP BY 1, 2, 3, 4
     ON CONFLICT (kind, profile, status, expiry_day)
     DO UPDATE SET n = certificate_counts.n + excluded.n",
    "WITH moved AS (DELETE FROM device_count_deltas RETURNING status, n)
     INSERT INTO device_counts (status, n)
     SELECT status, SUM(n)::BIGINT FROM moved GROUP BY 1
     ON CONFLICT (status) DO UPDATE SET n = device_counts.n + excluded.n",
    "WITH moved AS (DELETE FROM decision_count_deltas RETURNING day, outcome, n)
     INSERT INTO decision_counts (day, outcome, n)
     SELECT day, outcome, SUM(n)::BIGINT FROM moved GROUP BY 1, 2
     ON CONFLICT (day, outcome) DO UPDATE SET n = decision_counts.n + excluded.n",
];

/// Folds the count deltas committed so far into the counts (one session at a time; a
/// second one waits, then finds little left). Readers of the counts call it first, so the
/// deltas stay as few as the writes between two reads, and the counts they read then miss
/// at most what committed after the fold (milliseconds of enrollments).
pub(super) async fn fold_counts(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1)")
        .await?;
    tx.execute(&stmt, &[&COUNTS_LOCK]).await?;
    for sql in FOLD_DELTAS {
        let stmt = tx.prepare_cached(sql).await?;
        tx.execute(&stmt, &[]).await?;
    }
    tx.commit().await?;
    Ok(())
}

const DEVICES_SQL: &str = "SELECT status, n FROM device_counts WHERE n <> 0";

const COUNTED_SQL: &str =
    "SELECT kind, profile, status, expiry_day, n FROM certificate_counts WHERE n <> 0";

/// Today's valid certificates, split at `now` ($1): a range of certificates_by_expiry.
const TODAY_SQL: &str = "SELECT kind, profile, not_after >= $1, COUNT(*) FROM certificates
     WHERE status = 'valid' AND not_after >= $2 AND not_after < $3 GROUP BY 1, 2, 3";

/// Decisions per UTC day and outcome, days $1 to $2.
const DECISIONS_SQL: &str =
    "SELECT day, outcome, n FROM decision_counts WHERE day BETWEEN $1 AND $2 AND n <> 0";

type Param = Box<dyn ToSql + Sync + Send>;

/// A WHERE clause built from the filters that are set, with numbered parameters.
#[derive(Default)]
struct Conditions {
    sql: String,
    args: Vec<Param>,
}

impl Conditions {
    /// Adds `template` with `{}` replaced by the next parameter, bound to `value`.
    fn add_opt<V: ToSql + Sync + Send + 'static>(&mut self, template: &str, value: Option<V>) {
        if let Some(v) = value {
            let param = self.param(v);
            self.sql.push_str(" AND ");
            self.sql.push_str(&template.replace("{}", &param));
        }
    }

    /// The next parameter's placeholder, bound to `value`.
    fn param<V: ToSql + Sync + Send + 'static>(&mut self, value: V) -> String {
        self.args.push(Box::new(value));
        format!("${}", self.args.len())
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

impl PostgresStore {
    async fn listing<T>(
        &self,
        sql: &str,
        w: &Conditions,
        map: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        client
            .query(&stmt, &w.params())
            .await?
            .iter()
            .map(map)
            .collect()
    }
}

fn alert_from_row(r: &Row) -> Result<AlertRecord, StoreError> {
    let delivery: Option<String> = r.try_get(11)?;
    Ok(AlertRecord {
        escalation: super::monitoring::escalation_from_row(r)?,
        delivery: delivery.map(parsed).transpose()?,
    })
}

#[async_trait]
impl AdminViews for PostgresStore {
    async fn certificate_page(
        &self,
        f: &CertificateFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let mut w = Conditions::default();
        w.add_opt("c.status = {}", f.status.map(|s| s.as_str()));
        w.add_opt("c.kind = {}", f.kind.map(|k| k.as_str()));
        w.add_opt("c.issuer = {}", f.issuer.clone());
        w.add_opt("c.profile = {}", f.profile.clone());
        w.add_opt("c.device_serial = {}", f.device_serial.clone());
        if f.unrenewed {
            w.sql.push_str(
                " AND NOT EXISTS (SELECT 1 FROM certificates s WHERE s.replaces = c.serial)",
            );
        }
        w.add_opt("c.not_after >= {}", f.not_after_from.map(unix));
        w.add_opt("c.not_after < {}", f.not_after_before.map(unix));
        if let Some((not_after, serial)) = &f.after {
            let (a, s) = (w.param(unix(*not_after)), w.param(serial.clone()));
            w.sql
                .push_str(&format!(" AND (c.not_after, c.serial) > ({a}, {s})"));
        }
        let limit = w.param(i64::from(f.limit));
        let sql = format!(
            "SELECT {CERTIFICATE_COLUMNS} FROM certificates c WHERE TRUE{}
             ORDER BY c.not_after, c.serial LIMIT {limit}",
            w.sql
        );
        self.listing(&sql, &w, certificate_from_row).await
    }

    async fn approval_page(&self, f: &ApprovalFilter) -> Result<Vec<ApprovalRecord>, StoreError> {
        let mut w = Conditions::default();
        w.add_opt("state = {}", f.state.map(|s| s.as_str()));
        w.add_opt("device_serial = {}", f.device_serial.clone());
        w.add_opt("id > {}", f.after);
        let limit = w.param(i64::from(f.limit));
        let sql = format!(
            "SELECT {} FROM approvals WHERE TRUE{} ORDER BY id LIMIT {limit}",
            super::policy::APPROVAL_COLUMNS,
            w.sql
        );
        self.listing(&sql, &w, super::policy::approval_from_row)
            .await
    }

    async fn alert_page(&self, f: &AlertFilter) -> Result<Vec<AlertRecord>, StoreError> {
        let mut w = Conditions::default();
        match f.open {
            Some(true) => w.sql.push_str(" AND e.resolved_at IS NULL"),
            Some(false) => w.sql.push_str(" AND e.resolved_at IS NOT NULL"),
            None => {}
        }
        w.add_opt("e.kind = {}", f.kind.clone());
        w.add_opt("e.tier = {}", f.tier.clone());
        w.add_opt("e.device_serial = {}", f.device_serial.clone());
        w.add_opt("e.id < {}", f.before);
        let limit = w.param(i64::from(f.limit));
        // The delivery state as `alerts` reports it: the worst among the messages of the
        // scan that last notified the escalation, for its tier.
        let sql = format!(
            "SELECT {},
               (SELECT CASE WHEN bool_or(o.state = 'failed') THEN 'failed'
                            WHEN bool_or(o.state = 'pending') THEN 'pending'
                            WHEN COUNT(*) > 0 THEN 'delivered' END
                FROM outbox o
                WHERE o.scan_id = e.notified_scan AND o.tier = e.tier AND o.event = 'firing')
             FROM escalations e WHERE TRUE{} ORDER BY e.id DESC LIMIT {limit}",
            super::monitoring::ESCALATION_COLUMNS,
            w.sql
        );
        self.listing(&sql, &w, alert_from_row).await
    }

    async fn audit_search(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut w = Conditions::default();
        w.add_opt("actor = {}", f.actor.clone());
        w.add_opt("action = {}", f.action.clone());
        w.add_opt("subject = {}", f.subject.clone());
        w.add_opt("at >= {}", f.since.map(unix));
        w.add_opt("at < {}", f.until.map(unix));
        w.add_opt("id < {}", f.before);
        let limit = w.param(i64::from(f.limit));
        let sql = format!(
            "SELECT id, at, actor, action, subject, outcome, detail, prev_hash, hash
             FROM audit WHERE TRUE{} ORDER BY id DESC LIMIT {limit}",
            w.sql
        );
        self.listing(&sql, &w, super::factory::audit_from_row).await
    }

    async fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        let w = Conditions::default();
        self.listing(
            "SELECT name, password_hash, label, serial_pattern, enabled, created_at,
               any_serial, known_devices
             FROM accounts ORDER BY name",
            &w,
            account_from_row,
        )
        .await
    }

    async fn fleet_stats(
        &self,
        now: OffsetDateTime,
        days_ahead: u32,
        days_back: u32,
    ) -> Result<FleetStats, StoreError> {
        let window = StatsWindow::new(now, days_ahead, days_back);
        let mut client = self.client().await?;
        fold_counts(&mut client).await?;
        // Every count from one snapshot.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut rows = StatsRows::default();
        let stmt = tx.prepare_cached(DEVICES_SQL).await?;
        for r in tx.query(&stmt, &[]).await? {
            rows.devices.push((r.try_get(0)?, r.try_get(1)?));
        }
        let stmt = tx.prepare_cached(COUNTED_SQL).await?;
        for r in tx.query(&stmt, &[]).await? {
            rows.counted.push((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ));
        }
        let start = window.today_start();
        let stmt = tx.prepare_cached(TODAY_SQL).await?;
        for r in tx
            .query(&stmt, &[&window.now, &start, &(start + DAY)])
            .await?
        {
            rows.today
                .push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
        }
        let stmt = tx.prepare_cached(DECISIONS_SQL).await?;
        let days = (window.first_request_day(), window.today);
        for r in tx.query(&stmt, &[&days.0, &days.1]).await? {
            rows.decisions
                .push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
        }
        tx.commit().await?;
        window.assemble(rows)
    }
}
