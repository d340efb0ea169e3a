//! Certificate status for relying parties, over plain HTTP (RFC 5280 §4.2.1.13 and RFC 6960
//! Appendix A expect `http:` URLs; both formats are signed, so TLS adds nothing):
//!
//! - `GET /crl/<ca>.crl`: the CA's current CRL (DER), rebuilt when a status changes
//!   (debounced) and well before `nextUpdate`;
//! - `POST /ocsp` and `GET /ocsp/<base64>`: OCSP answers signed by each CA's delegated
//!   responder. Answers without a nonce are cached per exact CertID (an answer repeats the
//!   requester's CertID, so it is only ever reused for the same one) and re-signed before
//!   they go stale; any status change empties the cache.
//!
//! Status changes made by another process (the admin CLI, another node) are noticed
//! through the store's status revision, polled every second.
//!
//! With several nodes on one database ([`Publisher::with_lease`]), only the node holding
//! the `crl-publication` lease builds, numbers and records CRLs; the others serve the CRL
//! recorded in the database, polled every second. The holder renews the lease every
//! second for [`CRL_LEASE`]; if it dies, another node takes over at most `CRL_LEASE` plus
//! one second later (and rebuilds at once). OCSP answers are signed by every node.

mod crl;
mod http;
mod ocsp;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use fleetca_pki::{Clock, Issuer, OcspResponder};
use fleetca_store::{InventoryReader, LeaseStore, RevocationStore};

pub use http::{ocsp_get_request, serve, ReadinessCheck};

/// How long the CRL builder's lease lasts without renewal (it renews every second).
pub const CRL_LEASE: time::Duration = time::Duration::seconds(15);

const CRL_LEASE_NAME: &str = "crl-publication";

/// The shared-database mode: who we are, and whether we held the lease at the last tick.
struct CrlLease {
    store: Arc<dyn LeaseStore>,
    holder: String,
    held: std::sync::atomic::AtomicBool,
}

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

/// One CA generation whose status is published.
pub struct PublishedCa {
    /// The CA generation (signs its CRL, served at `/crl/<generation name>.crl`).
    pub issuer: Arc<Issuer>,
    /// Its delegated OCSP responder (replaceable: see [`Publisher::replace_responders`]).
    pub responder: Arc<OcspResponder>,
    /// Whether it is the issuing generation of its CA: its CRL is also served at
    /// `/crl/<ca>.crl`.
    pub active: bool,
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
    /// The thread that builds a CRL failed (panicked or was cancelled).
    #[error("CRL build task failed: {0}")]
    Task(String),
}

/// The status publisher: CRLs, the OCSP cache and what keeps them fresh.
pub struct Publisher {
    /// Replaced whole when CA generations change ([`Publisher::replace_cas`]).
    cas: RwLock<Arc<Vec<PublishedCa>>>,
    /// One per CA, in the order of `cas`; swapped whole when responder certificates renew.
    responders: RwLock<Arc<Vec<Arc<OcspResponder>>>>,
    inventory: Arc<dyn InventoryReader>,
    revocations: Arc<dyn RevocationStore>,
    clock: Arc<dyn Clock>,
    settings: PublishSettings,
    crls: RwLock<HashMap<String, crl::PublishedCrl>>,
    ocsp_cache: ocsp::Cache,
    revision: AtomicI64,
    lease: Option<CrlLease>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .cas()
            .iter()
            .map(|c| c.issuer.generation_name())
            .collect();
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
            cas: RwLock::new(Arc::new(cas)),
            responders: RwLock::new(Arc::new(responders)),
            inventory,
            revocations,
            clock,
            settings,
            crls: RwLock::new(HashMap::new()),
            ocsp_cache: ocsp::Cache::default(),
            revision: AtomicI64::new(i64::MIN),
            lease: None,
        }
    }

    /// Several nodes share the database: build CRLs only while holding the
    /// `crl-publication` lease (as `holder`, unique per process), otherwise serve the
    /// recorded ones.
    pub fn with_lease(mut self, store: Arc<dyn LeaseStore>, holder: String) -> Self {
        self.lease = Some(CrlLease {
            store,
            holder,
            held: std::sync::atomic::AtomicBool::new(false),
        });
        self
    }

    /// Whether this node builds CRLs now (always without a lease), and whether it just
    /// took the lease (a new holder rebuilds at once). Takes or renews the lease.
    async fn builds_crls(&self) -> Result<(bool, bool), PublishError> {
        let Some(lease) = &self.lease else {
            return Ok((true, false));
        };
        let now = self.clock.now();
        let held = lease
            .store
            .acquire_lease(CRL_LEASE_NAME, &lease.holder, now, now + CRL_LEASE)
            .await?;
        let before = lease.held.swap(held, Ordering::SeqCst);
        if held != before {
            tracing::info!(
                holder = %lease.holder,
                held,
                "CRL publication lease {}",
                if held { "taken: this node builds CRLs" } else { "lost: serving recorded CRLs" }
            );
        }
        Ok((held, held && !before))
    }

    /// Gives the lease up (clean shutdown), so another node takes over at its next tick.
    async fn release_lease(&self) {
        if let Some(lease) = &self.lease {
            if lease.held.load(Ordering::SeqCst) {
                let now = self.clock.now();
                let _ = lease
                    .store
                    .acquire_lease(CRL_LEASE_NAME, &lease.holder, now, now)
                    .await;
            }
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

    /// The CA generations, in publication order.
    pub fn issuers(&self) -> Vec<Arc<Issuer>> {
        self.cas().iter().map(|c| Arc::clone(&c.issuer)).collect()
    }

    pub(crate) fn cas(&self) -> Arc<Vec<PublishedCa>> {
        match self.cas.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the published CA generations (one activated, one expired) with their
    /// responders, and builds (or loads) their CRLs at once.
    pub async fn replace_cas(&self, cas: Vec<PublishedCa>) -> Result<(), PublishError> {
        let responders: Vec<Arc<OcspResponder>> =
            cas.iter().map(|c| Arc::clone(&c.responder)).collect();
        match self.cas.write() {
            Ok(mut c) => *c = Arc::new(cas),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(cas),
        }
        self.replace_responders(responders);
        if self.builds_crls().await?.0 {
            self.refresh_crls().await
        } else {
            self.load_recorded_crls().await
        }
    }

    /// Builds the first CRLs (or, on a node without the lease, loads the recorded ones).
    /// Call once before serving.
    pub async fn start(&self) -> Result<(), PublishError> {
        let revision = self.revocations.status_revision().await?;
        self.revision.store(revision, Ordering::SeqCst);
        if self.builds_crls().await?.0 {
            self.refresh_crls().await
        } else {
            self.load_recorded_crls().await
        }
    }

    /// Notices status changes (from any process): empties the OCSP cache and rebuilds the
    /// CRLs when the revision moved, and rebuilds CRLs that are due. Returns whether the
    /// revision changed. Call it about once a second.
    pub async fn tick(&self) -> Result<bool, PublishError> {
        let revision = self.revocations.status_revision().await?;
        let previous = self.revision.swap(revision, Ordering::SeqCst);
        let changed = previous != revision;
        if changed {
            self.ocsp_cache.clear();
        }
        let (builds, just_taken) = match self.builds_crls().await {
            Ok(builds) => builds,
            Err(e) => return Err(self.unseen(revision, previous, e)),
        };
        if !builds {
            self.load_recorded_crls().await?;
        } else if changed || just_taken {
            if let Err(e) = self.refresh_crls().await {
                return Err(self.unseen(revision, previous, e));
            }
        } else {
            let now = self.clock.now();
            let due = self
                .crls
                .read()
                .map(|crls| {
                    self.cas().iter().any(|ca| {
                        crls.get(&ca.issuer.generation_name())
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

    /// A tick that saw `revision` failed before its CRLs were rebuilt: forget the revision,
    /// so the next tick sees the change again and rebuilds. Otherwise the revocation would
    /// wait for the next scheduled refresh (`crl_refresh`, a day) to reach the CRL.
    fn unseen(&self, revision: i64, previous: i64, e: PublishError) -> PublishError {
        let _ =
            self.revision
                .compare_exchange(revision, previous, Ordering::SeqCst, Ordering::SeqCst);
        e
    }

    /// Runs [`Publisher::tick`] every second until `shutdown` completes. A burst of
    /// revocations within a second produces one CRL per CA.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    self.release_lease().await;
                    break;
                }
                _ = interval.tick() => {
                    if let Err(e) = self.tick().await {
                        tracing::error!(error = %e, "status publication failed; retrying in 1 s");
                    }
                }
            }
        }
    }
}
