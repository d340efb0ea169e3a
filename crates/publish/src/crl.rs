//! CRL building and serving.

use bytes::Bytes;
use fleetca_pki::{CertificateSerial, RevocationReason, RevokedEntry};
use time::OffsetDateTime;

use crate::{PublishError, Publisher};

/// A CRL as served.
#[derive(Debug, Clone)]
pub(crate) struct PublishedCrl {
    pub(crate) number: u64,
    pub(crate) this_update: OffsetDateTime,
    pub(crate) next_update: OffsetDateTime,
    pub(crate) der: Bytes,
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
            let records = self.revocations.revoked(ca.issuer.name(), now).await?;
            let entries: Vec<RevokedEntry> = records
                .iter()
                .filter_map(|r| {
                    let serial = CertificateSerial::from_hex(&r.serial);
                    if serial.is_none() {
                        tracing::error!(serial = %r.serial, "inventory serial is not hex; left out of the CRL");
                    }
                    Some(RevokedEntry {
                        serial: serial?,
                        revoked_at: r.revoked_at,
                        reason: r.reason.parse().unwrap_or(RevocationReason::Unspecified),
                    })
                })
                .collect();
            let number = self.revocations.allocate_crl_number(name).await?;
            let next_update = now + self.settings.crl_validity;
            let started = std::time::Instant::now();
            let der = ca.issuer.crl(number, now, next_update, &entries)?;
            self.revocations
                .store_crl(name, number, now, next_update, der.clone())
                .await?;
            tracing::info!(
                ca = name,
                number,
                entries = entries.len(),
                build_millis = started.elapsed().as_millis() as u64,
                total_millis = refresh_started.elapsed().as_millis() as u64,
                "CRL published"
            );
            if let Ok(mut crls) = self.crls.write() {
                crls.insert(
                    name.to_string(),
                    PublishedCrl {
                        number,
                        this_update: now,
                        next_update,
                        der: Bytes::from(der),
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
