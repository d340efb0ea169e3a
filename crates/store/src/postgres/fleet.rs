//! The fleet view on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::rows::{parsed, time_at};
use super::PostgresStore;
use crate::fleet::{DeviceQuery, DeviceSummary, FleetView, SUMMARY_COLUMNS};
use crate::StoreError;

fn summary_from_row(r: &Row) -> Result<DeviceSummary, StoreError> {
    Ok(DeviceSummary {
        serial_number: r.try_get(0)?,
        status: parsed(r.try_get(1)?)?,
        profile: r.try_get(2)?,
        birth_issuer: r.try_get(3)?,
        station: r.try_get(4)?,
        model: r.try_get(5)?,
        batch: r.try_get(6)?,
        created_at: time_at(r.try_get(7)?)?,
        updated_at: time_at(r.try_get(8)?)?,
    })
}

#[async_trait]
impl FleetView for PostgresStore {
    async fn devices(&self, q: &DeviceQuery) -> Result<Vec<DeviceSummary>, StoreError> {
        let client = self.client().await?;
        // In serial order along the primary key; a prefix is compared as text (no LIKE
        // wildcards), and `after` continues where the previous page ended.
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM devices
                 WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR profile = $2)
                   AND ($3::text IS NULL OR model = $3) AND ($4::text IS NULL OR batch = $4)
                   AND ($5::text IS NULL OR station = $5)
                   AND ($6::text IS NULL OR left(serial_number, length($6)) = $6)
                   AND ($7::text IS NULL OR serial_number > $7)
                 ORDER BY serial_number LIMIT $8"
            ))
            .await?;
        let status = q.status.map(|s| s.as_str());
        let rows = client
            .query(
                &stmt,
                &[
                    &status,
                    &q.profile,
                    &q.model,
                    &q.batch,
                    &q.station,
                    &q.serial_prefix,
                    &q.after,
                    &i64::from(q.limit),
                ],
            )
            .await?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn device_summary(&self, serial: &str) -> Result<Option<DeviceSummary>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM devices WHERE serial_number = $1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&serial])
            .await?
            .map(|r| summary_from_row(&r))
            .transpose()
    }
}
