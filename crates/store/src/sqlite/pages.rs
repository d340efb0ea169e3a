//! Keyset pages of the audit trail and the decision log on SQLite.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::model::AuditRecord;
use crate::pages::HistoryPages;
use crate::policy::DecisionRecord;
use crate::StoreError;

#[async_trait]
impl HistoryPages for SqliteStore {
    async fn audit_page(
        &self,
        actor: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let actor = actor.map(str::to_string);
        let before = before.unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor, action, subject, outcome, detail, prev_hash, hash FROM audit
                 WHERE (?1 IS NULL OR actor = ?1) AND id < ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![actor, before, i64::from(limit)],
                super::factory::audit_from_row,
            )?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }

    async fn decision_page(
        &self,
        device_serial: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let device = device_serial.map(str::to_string);
        let before = before.unwrap_or(i64::MAX);
        self.read(move |conn| {
            let columns = super::policy::DECISION_COLUMNS;
            let mut stmt = match device {
                Some(_) => conn.prepare_cached(&format!(
                    "SELECT {columns} FROM decisions WHERE device_serial = ?1 AND id < ?2
                     ORDER BY id DESC LIMIT ?3"
                ))?,
                None => conn.prepare_cached(&format!(
                    "SELECT {columns} FROM decisions WHERE ?1 IS NULL AND id < ?2
                     ORDER BY id DESC LIMIT ?3"
                ))?,
            };
            let rows = stmt.query_map(
                params![device, before, i64::from(limit)],
                super::policy::decision_from_row,
            )?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }
}
