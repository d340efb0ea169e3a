//! OCSP answers: status lookup, signing, and the cache of answers without a nonce.

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;
use fleetca_pki::{
    ocsp_error_response, ocsp_internal_error, parse_ocsp_request, CertificateSerial, OcspStatus,
    RevocationReason,
};
use fleetca_store::CertificateStatus;
use time::OffsetDateTime;

use crate::Publisher;

/// Most cached answers; past it the cache is emptied (it refills from warm requests).
const CACHE_LIMIT: usize = 1_000_000;

#[derive(Clone)]
struct Cached {
    der: Bytes,
    refresh_at: OffsetDateTime,
    next_update: OffsetDateTime,
}

/// Signed answers per (responder, exact DER CertID), for requests without a nonce.
///
/// Keyed on the whole CertID, not the serial: an answer repeats the requester's CertID, and
/// a client asking with a SHA-1 CertID does not find its certificate in an answer naming a
/// SHA-256 one (issue 13). A certificate has at most four such keys (SHA-1 or SHA-256, with
/// or without NULL parameters), so the cache grows by that factor at most, and the cached
/// path stays a lookup without signing.
#[derive(Default)]
pub(crate) struct Cache {
    entries: RwLock<HashMap<CacheKey, Cached>>,
}

/// (responder index, DER of the CertID).
type CacheKey = (usize, Vec<u8>);

impl Cache {
    pub(crate) fn clear(&self) {
        if let Ok(mut e) = self.entries.write() {
            e.clear();
        }
    }

    fn get(&self, key: &CacheKey, now: OffsetDateTime) -> Option<Cached> {
        let entries = self.entries.read().ok()?;
        entries.get(key).filter(|c| c.refresh_at > now).cloned()
    }

    fn put(&self, key: CacheKey, value: Cached) {
        if let Ok(mut e) = self.entries.write() {
            if e.len() >= CACHE_LIMIT {
                e.clear();
            }
            e.insert(key, value);
        }
    }
}

/// An OCSP answer and how long HTTP caches may keep it (0: not at all).
pub(crate) struct Answer {
    pub(crate) der: Bytes,
    pub(crate) max_age: u64,
}

impl Publisher {
    /// Answers a DER OCSPRequest. Never fails: problems become OCSP error statuses.
    pub(crate) async fn answer(&self, request: &[u8]) -> Answer {
        let uncached = |der: Vec<u8>| Answer {
            der: Bytes::from(der),
            max_age: 0,
        };
        let responders = self.responders();
        let query = match parse_ocsp_request(request, &responders) {
            Ok(q) => q,
            Err(e) => {
                tracing::debug!(error = %e, "OCSP request refused");
                return uncached(ocsp_error_response(&e));
            }
        };
        let now = self.clock.now();
        let cache_key = query
            .shared_answer_key()
            .map(|cert_id| (query.responder, cert_id));
        if let Some(hit) = cache_key.as_ref().and_then(|k| self.ocsp_cache.get(k, now)) {
            return Answer {
                max_age: max_age(hit.next_update, now),
                der: hit.der,
            };
        }
        let Some(responder) = responders.get(query.responder) else {
            return uncached(ocsp_internal_error());
        };
        let mut statuses = Vec::with_capacity(query.certificates.len());
        for (_, serial) in &query.certificates {
            match self.status(responder.ca_name(), serial.as_ref()).await {
                Ok(s) => statuses.push(s),
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP status lookup failed");
                    return uncached(fleetca_pki::ocsp_try_later());
                }
            }
        }
        let next_update = now + self.settings.ocsp_validity;
        match responder.respond(&query, &statuses, now, next_update) {
            Ok(der) => {
                let der = Bytes::from(der);
                if let Some(key) = cache_key {
                    self.ocsp_cache.put(
                        key,
                        Cached {
                            der: der.clone(),
                            refresh_at: now + self.settings.ocsp_refresh,
                            next_update,
                        },
                    );
                    return Answer {
                        der,
                        max_age: max_age(next_update, now),
                    };
                }
                Answer { der, max_age: 0 }
            }
            Err(e) => {
                tracing::error!(error = %e, "OCSP signing failed");
                uncached(ocsp_internal_error())
            }
        }
    }

    async fn status(
        &self,
        ca: &str,
        serial: Option<&CertificateSerial>,
    ) -> Result<OcspStatus, fleetca_store::StoreError> {
        let Some(serial) = serial else {
            return Ok(OcspStatus::Unknown);
        };
        let Some(record) = self
            .inventory
            .certificate_standing(&serial.to_hex())
            .await?
        else {
            return Ok(OcspStatus::Unknown);
        };
        if record.issuer != ca {
            return Ok(OcspStatus::Unknown);
        }
        let revoked = |default: RevocationReason| OcspStatus::Revoked {
            at: record.revoked_at.unwrap_or(record.not_after),
            reason: record
                .revocation_reason
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or(default),
        };
        Ok(match record.status {
            CertificateStatus::Valid => OcspStatus::Good,
            CertificateStatus::OnHold => revoked(RevocationReason::CertificateHold),
            _ => revoked(RevocationReason::Unspecified),
        })
    }
}

/// Seconds an HTTP cache may keep an answer: until half way to its nextUpdate.
fn max_age(next_update: OffsetDateTime, now: OffsetDateTime) -> u64 {
    let remaining: time::Duration = next_update - now;
    u64::try_from(remaining.whole_seconds() / 2).unwrap_or(0)
}
