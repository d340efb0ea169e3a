//! The fleet view on SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use super::rows::{parsed, time_at};
use super::SqliteStore;
use crate::fleet::{DeviceQuery, DeviceSummary, FleetView, SUMMARY_COLUMNS};
use crate::StoreError;

fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<Result<DeviceSummary, StoreError>> {
    let (serial_number, status): (String, String) = (r.get(0)?, r.get(1)?);
    let (profile, birth_issuer, station, model, batch) =
        (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
    let (created_at, updated_at): (i64, i64) = (r.get(7)?, r.get(8)?);
    Ok((|| {
        Ok(DeviceSummary {
            serial_number,
            status: parsed(status)?,
            profile,
            birth_issuer,
            station,
            model,
            batch,
            created_at: time_at(created_at)?,
            updated_at: time_at(updated_at)?,
        })
    })())
}

#[async_trait]
impl FleetView for SqliteStore {
    async fn devices(&self, query: &DeviceQuery) -> Result<Vec<DeviceSummary>, StoreError> {
        let q = query.clone();
        self.read(move |conn| {
            // In serial order along the primary key; a prefix is compared as text (no LIKE
            // wildcards), and `after` continues where the previous page ended.
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM devices
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR profile = ?2)
                   AND (?3 IS NULL OR model = ?3) AND (?4 IS NULL OR batch = ?4)
                   AND (?5 IS NULL OR station = ?5)
                   AND (?6 IS NULL OR substr(serial_number, 1, length(?6)) = ?6)
                   AND (?7 IS NULL OR serial_number > ?7)
                 ORDER BY serial_number LIMIT ?8"
            ))?;
            let rows = stmt.query_map(
                params![
                    q.status.map(|s| s.as_str()),
                    q.profile,
                    q.model,
                    q.batch,
                    q.station,
                    q.serial_prefix,
                    q.after,
                    i64::from(q.limit)
                ],
                summary_from_row,
            )?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }

    async fn device_summary(&self, serial: &str) -> Result<Option<DeviceSummary>, StoreError> {
        self.read_now(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM devices WHERE serial_number = ?1"
            ))?
            .query_row([serial], summary_from_row)
            .optional()?
            .transpose()
        })
    }
}
