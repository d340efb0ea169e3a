//! CA generations on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};
use time::OffsetDateTime;

use super::rows::{time_at, unix};
use super::PostgresStore;
use crate::generations::{admissible, CaGeneration, CaGenerationStore, LinkCertificates};
use crate::StoreError;

async fn all(c: &impl GenericClient) -> Result<Vec<CaGeneration>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT ca, generation, certificate, key_ref, not_before, not_after, activate_at,
                    created_at, root_generation, link_new_with_old, link_old_with_new
             FROM ca_generations ORDER BY ca, generation",
        )
        .await?;
    let number =
        |n: i32| u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("CA generation {n}")));
    c.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            let new_with_old: Option<Vec<u8>> = r.try_get(9)?;
            let old_with_new: Option<Vec<u8>> = r.try_get(10)?;
            Ok(CaGeneration {
                ca: r.try_get(0)?,
                generation: number(r.try_get(1)?)?,
                certificate_der: r.try_get(2)?,
                key: r.try_get(3)?,
                not_before: time_at(r.try_get(4)?)?,
                not_after: time_at(r.try_get(5)?)?,
                activate_at: time_at(r.try_get(6)?)?,
                created_at: time_at(r.try_get(7)?)?,
                root_generation: r.try_get::<_, Option<i32>>(8)?.map(number).transpose()?,
                links: match (new_with_old, old_with_new) {
                    (Some(new_with_old), Some(old_with_new)) => Some(LinkCertificates {
                        new_with_old,
                        old_with_new,
                    }),
                    _ => None,
                },
            })
        })
        .collect()
}

/// Records new generations inside the caller's transaction. The table lock makes
/// rollovers from several nodes (or operators) take turns: the check sees every
/// generation recorded before it.
pub(super) async fn add_ca_generations_in(
    tx: &Transaction<'_>,
    new: &[CaGeneration],
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.batch_execute("LOCK TABLE ca_generations IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    admissible(&all(tx).await?, new, at)?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO ca_generations (ca, generation, certificate, key_ref, not_before,
                 not_after, activate_at, created_at, root_generation, link_new_with_old,
                 link_old_with_new)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .await?;
    let number = |n: u32| {
        i32::try_from(n).map_err(|_| StoreError::Refused(format!("CA generation {n} is too large")))
    };
    for g in new {
        let generation = number(g.generation)?;
        let root_generation = g.root_generation.map(number).transpose()?;
        tx.execute(
            &stmt,
            &[
                &g.ca,
                &generation,
                &g.certificate_der,
                &g.key,
                &unix(g.not_before),
                &unix(g.not_after),
                &unix(g.activate_at),
                &unix(g.created_at),
                &root_generation,
                &g.links.as_ref().map(|l| l.new_with_old.as_slice()),
                &g.links.as_ref().map(|l| l.old_with_new.as_slice()),
            ],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl CaGenerationStore for PostgresStore {
    async fn ca_generations(&self) -> Result<Vec<CaGeneration>, StoreError> {
        let client = self.client().await?;
        all(&client).await
    }
}
