//! Keyset pages of the audit trail and the decision log on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use super::PostgresStore;
use crate::model::AuditRecord;
use crate::pages::HistoryPages;
use crate::policy::DecisionRecord;
use crate::StoreError;

const AUDIT_COLUMNS: &str = "id, at, actor, action, subject, outcome, detail, prev_hash, hash";

#[async_trait]
impl HistoryPages for PostgresStore {
    async fn audit_page(
        &self,
        actor: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let client = self.client().await?;
        let (before, limit) = (before.unwrap_or(i64::MAX), i64::from(limit));
        // One statement per shape, so each is served by its index (see audit_events).
        let rows = match actor {
            Some(actor) => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit WHERE actor = $1 AND id < $2
                         ORDER BY id DESC LIMIT $3"
                    ))
                    .await?;
                client.query(&stmt, &[&actor, &before, &limit]).await?
            }
            None => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit WHERE id < $1 ORDER BY id DESC LIMIT $2"
                    ))
                    .await?;
                client.query(&stmt, &[&before, &limit]).await?
            }
        };
        rows.iter().map(super::factory::audit_from_row).collect()
    }

    async fn decision_page(
        &self,
        device_serial: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let client = self.client().await?;
        let (before, limit) = (before.unwrap_or(i64::MAX), i64::from(limit));
        let columns = super::policy::DECISION_COLUMNS;
        let rows = match device_serial {
            Some(device) => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {columns} FROM decisions WHERE device_serial = $1 AND id < $2
                         ORDER BY id DESC LIMIT $3"
                    ))
                    .await?;
                client.query(&stmt, &[&device, &before, &limit]).await?
            }
            None => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {columns} FROM decisions WHERE id < $1 ORDER BY id DESC LIMIT $2"
                    ))
                    .await?;
                client.query(&stmt, &[&before, &limit]).await?
            }
        };
        rows.iter().map(super::policy::decision_from_row).collect()
    }
}
