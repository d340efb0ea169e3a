//! CA generations on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection};
use time::OffsetDateTime;

use super::rows::{time_at, unix};
use super::SqliteStore;
use crate::generations::{admissible, CaGeneration, CaGenerationStore, LinkCertificates};
use crate::StoreError;

fn all(conn: &Connection) -> Result<Vec<CaGeneration>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT ca, generation, certificate, key_ref, not_before, not_after, activate_at,
                created_at, root_generation, link_new_with_old, link_old_with_new
         FROM ca_generations ORDER BY ca, generation",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            (
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
            ),
            (
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ),
            (
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, Option<Vec<u8>>>(9)?,
                r.get::<_, Option<Vec<u8>>>(10)?,
            ),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (
            (ca, generation, certificate_der, key),
            (not_before, not_after, activate_at, created_at),
            (root_generation, new_with_old, old_with_new),
        ) = row?;
        let number = |n: i64| {
            u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("CA generation {n}")))
        };
        out.push(CaGeneration {
            ca,
            generation: number(generation)?,
            certificate_der,
            key,
            not_before: time_at(not_before)?,
            not_after: time_at(not_after)?,
            activate_at: time_at(activate_at)?,
            created_at: time_at(created_at)?,
            root_generation: root_generation.map(number).transpose()?,
            links: match (new_with_old, old_with_new) {
                (Some(new_with_old), Some(old_with_new)) => Some(LinkCertificates {
                    new_with_old,
                    old_with_new,
                }),
                _ => None,
            },
        });
    }
    Ok(out)
}

/// Records new generations inside the caller's write transaction (SQLite's single
/// writer: the check and the insert cannot interleave with another rollover).
pub(super) fn add_ca_generations_in(
    conn: &Connection,
    new: &[CaGeneration],
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    admissible(&all(conn)?, new, at)?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO ca_generations (ca, generation, certificate, key_ref, not_before,
             not_after, activate_at, created_at, root_generation, link_new_with_old,
             link_old_with_new)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for g in new {
        stmt.execute(params![
            g.ca,
            g.generation,
            g.certificate_der,
            g.key,
            unix(g.not_before),
            unix(g.not_after),
            unix(g.activate_at),
            unix(g.created_at),
            g.root_generation,
            g.links.as_ref().map(|l| &l.new_with_old),
            g.links.as_ref().map(|l| &l.old_with_new),
        ])?;
    }
    Ok(())
}

#[async_trait]
impl CaGenerationStore for SqliteStore {
    async fn ca_generations(&self) -> Result<Vec<CaGeneration>, StoreError> {
        self.read_now(all)
    }
}
