//! CRL building and serving.

use std::sync::Arc;

use bytes::Bytes;
use fleetca_pki::{CertificateSerial, CrlEntries, Issuer, RevocationReason, SignedCrl};
use fleetca_store::RevokedStream;
use time::OffsetDateTime;

use crate::{PublishError, Publisher};

/// A CRL as served.
#[derive(Debug, Clone)]
pub(crate) struct PublishedCrl {
    pub(crate) number: u64,
    pub(crate) this_update: OffsetDateTime,
    pub(crate) next_update: OffsetDateTime,
    pub(crate) der: Bytes,
    /// How many entries it lists (0 when loaded from the store): the next build's
    /// capacity hint.
    pub(crate) entries: usize,
}

/// What one CRL build produced, with the time its entries took to read.
struct Built {
    der: SignedCrl,
    entries: usize,
    read: std::time::Duration,
}

/// Reads the CA's revoked certificates from `stream` batch by batch (the store reads the
/// next batch meanwhile) into the encoder's entries, then encodes and signs the CRL. Runs
/// on a blocking thread: a CRL of a million entries is a few hundred milliseconds of CPU.
fn build_crl(
    issuer: &Issuer,
    mut stream: RevokedStream,
    capacity: usize,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Built, PublishError> {
    let started = std::time::Instant::now();
    let mut entries = CrlEntries::with_capacity(capacity);
    // The few distinct reason names, parsed once each.
    let mut reasons: Vec<(String, RevocationReason)> = Vec::new();
    while let Some(batch) = stream.blocking_next_batch()? {
        for e in batch.iter() {
            let Some(serial) = CertificateSerial::from_hex(e.serial) else {
                tracing::error!(serial = %e.serial, "inventory serial is not hex; left out of the CRL");
                continue;
            };
            let reason = match reasons.iter().find(|(name, _)| name == e.reason) {
                Some((_, reason)) => *reason,
                None => {
                    let reason = e.reason.parse().unwrap_or(RevocationReason::Unspecified);
                    reasons.push((e.reason.to_string(), reason));
                    reason
                }
            };
            entries.push(&serial, e.revoked_at, reason)?;
        }
    }
    let read = started.elapsed();
    let count = entries.len();
    let der = issuer.sign_crl(number, this_update, next_update, entries)?;
    Ok(Built {
        der,
        entries: count,
        read,
    })
}

impl Publisher {
    /// Builds, records and publishes a fresh CRL for every CA.
    pub async fn refresh_crls(&self) -> Result<(), PublishError> {
        for ca in self.cas().iter() {
            // Numbers and recorded CRLs per generation: each generation is its own CRL
            // issuer. The entries are the CA's revoked certificates, of every generation
            // (the inventory records the CA, not the generation): a relying party looks up
            // a certificate only in its own issuer's CRL, so the extra serials change no
            // answer.
            let generation_name = ca.issuer.generation_name();
            let name = generation_name.as_str();
            let now = self.clock.now();
            let refresh_started = std::time::Instant::now();
            // The number is allocated (a write transaction of its own) while the entries
            // are read; a number whose CRL then fails is skipped, never reused.
            let (stream, number) = tokio::join!(
                self.revocations.revoked_stream(ca.issuer.name(), now),
                self.revocations.allocate_crl_number(name),
            );
            let (stream, number) = (stream?, number?);
            let next_update = now + self.settings.crl_validity;
            // Room for as many entries as last time, and some.
            let capacity = self
                .crls
                .read()
                .ok()
                .and_then(|crls| crls.get(name).map(|c| c.entries))
                .map_or(0, |n| n + n / 16);
            let issuer = Arc::clone(&ca.issuer);
            let built = tokio::task::spawn_blocking(move || {
                build_crl(&issuer, stream, capacity, number, now, next_update)
            })
            .await
            .map_err(|e| PublishError::Task(e.to_string()))??;
            let built_at = refresh_started.elapsed();
            let der = Bytes::from_owner(built.der);
            // Recorded (durably) before it is served.
            self.revocations
                .store_crl(name, number, now, next_update, der.clone())
                .await?;
            let total = refresh_started.elapsed();
            tracing::info!(
                ca = name,
                number,
                entries = built.entries,
                bytes = der.len(),
                read_millis = built.read.as_millis() as u64,
                build_millis = built_at.saturating_sub(built.read).as_millis() as u64,
                record_millis = total.saturating_sub(built_at).as_millis() as u64,
                total_millis = total.as_millis() as u64,
                "CRL published"
            );
            if let Ok(mut crls) = self.crls.write() {
                crls.insert(
                    name.to_string(),
                    PublishedCrl {
                        number,
                        this_update: now,
                        next_update,
                        der,
                        entries: built.entries,
                    },
                );
            }
        }
        Ok(())
    }

    /// Installs CRLs recorded by the node that builds them, when newer than ours.
    pub(crate) async fn load_recorded_crls(&self) -> Result<(), PublishError> {
        for ca in self.cas().iter() {
            let generation_name = ca.issuer.generation_name();
            let name = generation_name.as_str();
            let ours = self
                .crls
                .read()
                .ok()
                .and_then(|crls| crls.get(name).map(|c| c.number))
                .unwrap_or(0);
            let Some(stored) = self.revocations.stored_crl(name, ours).await? else {
                continue;
            };
            tracing::info!(ca = name, number = stored.number, "recorded CRL installed");
            if let Ok(mut crls) = self.crls.write() {
                crls.insert(
                    name.to_string(),
                    PublishedCrl {
                        number: stored.number,
                        this_update: stored.this_update,
                        next_update: stored.next_update,
                        der: Bytes::from(stored.der),
                        entries: 0,
                    },
                );
            }
        }
        Ok(())
    }

    /// The current CRL served at `/crl/<name>.crl`, with the generation name it belongs
    /// to: `<ca>` is the issuing generation's, `<ca>-<n>` generation n's (`<ca>-1` the
    /// first generation's, also known as `<ca>` before any rollover).
    pub(crate) fn crl(&self, name: &str) -> Option<(String, PublishedCrl)> {
        let cas = self.cas();
        let generation_name = cas
            .iter()
            .find(|ca| ca.active && ca.issuer.name() == name)
            .or_else(|| {
                cas.iter()
                    .find(|ca| format!("{}-{}", ca.issuer.name(), ca.issuer.generation()) == name)
            })
            .map(|ca| ca.issuer.generation_name())?;
        let crl = self.crls.read().ok()?.get(&generation_name).cloned()?;
        Some((generation_name, crl))
    }
}
