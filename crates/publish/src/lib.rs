//! Certificate status for relying parties, over plain HTTP (RFC 5280 §4.2.1.13 and RFC 6960
//! Appendix A expect `http:` URLs; both formats are signed, so TLS adds nothing):
//!
//! - `GET /crl/<ca>.crl`: the CA's current CRL (DER), rebuilt when a status changes
//!   (debounced) and well before `nextUpdate`;
//! - `POST /ocsp` and `GET /ocsp/<base64>`: OCSP answers signed by each CA's delegated
//!   responder. Answers without a nonce are cached per certificate and re-signed before
//!   they go stale; any status change empties the cache.
//!
//! Status changes made by another process (the admin CLI, another node) are noticed
//! through the store's status revision, polled every second.

mod crl;
mod http;
mod ocsp;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use fleetca_pki::{Clock, Issuer, OcspResponder};
use fleetca_store::{InventoryReader, RevocationStore};

pub use http::serve;

/// Timing of what is published.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// CRL validity (thisUpdate to nextUpdate).
    pub crl_validity: time::Duration,
    /// Rebuild a CRL at the latest this long after its thisUpdate.
    pub crl_refresh: time::Duration,
    /// OCSP answer validity (thisUpdate to nextUpdate).
    pub ocsp_validity: time::Duration,
    /// Re-sign a cached OCSP answer this long after its thisUpdate.
    pub ocsp_refresh: time::Duration,
}

impl Default for PublishSettings {
    fn default() -> Self {
        Self {
            crl_validity: time::Duration::days(7),
            crl_refresh: time::Duration::days(1),
            ocsp_validity: time::Duration::hours(1),
            ocsp_refresh: time::Duration::minutes(30),
        }
    }
}

/// One CA whose status is published.
pub struct PublishedCa {
    /// The CA (signs its CRL).
    pub issuer: Arc<Issuer>,
    /// Its delegated OCSP responder (replaceable: see [`Publisher::replace_responders`]).
    pub responder: Arc<OcspResponder>,
}

/// Errors of the publisher.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] fleetca_store::StoreError),
    /// Building or signing failed.
    #[error(transparent)]
    Pki(#[from] fleetca_pki::PkiError),
}

/// The status publisher: CRLs, the OCSP cache and what keeps them fresh.
pub struct Publisher {
    cas: Vec<PublishedCa>,
    /// One per CA, in the order of `cas`; swapped whole when responder certificates renew.
    responders: RwLock<Arc<Vec<Arc<OcspResponder>>>>,
    inventory: Arc<dyn InventoryReader>,
    revocations: Arc<dyn RevocationStore>,
    clock: Arc<dyn Clock>,
    settings: PublishSettings,
    crls: RwLock<HashMap<String, crl::PublishedCrl>>,
    ocsp_cache: ocsp::Cache,
    revision: AtomicI64,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.cas.iter().map(|c| c.issuer.name()).collect();
        f.debug_struct("Publisher")
            .field("cas", &names)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher for `cas`. Call [`Publisher::start`] before serving.
    pub fn new(
        cas: Vec<PublishedCa>,
        inventory: Arc<dyn InventoryReader>,
        revocations: Arc<dyn RevocationStore>,
        clock: Arc<dyn Clock>,
        settings: PublishSettings,
    ) -> Self {
        let responders = cas.iter().map(|c| Arc::clone(&c.responder)).collect();
        Self {
            cas,
            responders: RwLock::new(Arc::new(responders)),
            inventory,
            revocations,
            clock,
            settings,
            crls: RwLock::new(HashMap::new()),
            ocsp_cache: ocsp::Cache::default(),
            revision: AtomicI64::new(i64::MIN),
        }
    }

    /// Installs renewed OCSP responders (one per CA, in the order given to `new`). Cached
    /// answers signed by the previous ones are dropped.
    pub fn replace_responders(&self, responders: Vec<Arc<OcspResponder>>) {
        if let Ok(mut r) = self.responders.write() {
            *r = Arc::new(responders);
        }
        self.ocsp_cache.clear();
    }

    fn responders(&self) -> Arc<Vec<Arc<OcspResponder>>> {
        self.responders
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_default()
    }

    /// The CAs, in publication order.
    pub fn issuers(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.cas.iter().map(|c| &c.issuer)
    }

    /// Builds the first CRLs. Call once before serving.
    pub async fn start(&self) -> Result<(), PublishError> {
        let revision = self.revocations.status_revision().await?;
        self.revision.store(revision, Ordering::SeqCst);
        self.refresh_crls().await
    }

    /// Notices status changes (from any process): empties the OCSP cache and rebuilds the
    /// CRLs when the revision moved, and rebuilds CRLs that are due. Returns whether the
    /// revision changed. Call it about once a second.
    pub async fn tick(&self) -> Result<bool, PublishError> {
        let revision = self.revocations.status_revision().await?;
        let changed = self.revision.swap(revision, Ordering::SeqCst) != revision;
        if changed {
            self.ocsp_cache.clear();
            self.refresh_crls().await?;
        } else {
            let now = self.clock.now();
            let due = self
                .crls
                .read()
                .map(|crls| {
                    self.cas.iter().any(|ca| {
                        crls.get(ca.issuer.name())
                            .is_none_or(|c| c.this_update + self.settings.crl_refresh <= now)
                    })
                })
                .unwrap_or(true);
            if due {
                self.refresh_crls().await?;
            }
        }
        Ok(changed)
    }

    /// Runs [`Publisher::tick`] every second until `shutdown` completes. A burst of
    /// revocations within a second produces one CRL per CA.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = interval.tick() => {
                    if let Err(e) = self.tick().await {
                        tracing::error!(error = %e, "status publication failed; retrying in 1 s");
                    }
                }
            }
        }
    }
}
