//! The CA generations a running server uses, read from the database: at start-up, and
//! every few seconds after, so that every node switches to a new generation at its
//! activation time (and drops an expired one) without a restart or a SIGHUP.
//!
//! What a set of generations puts in force: the issuing generation of the manufacturing
//! and operational CAs signs new certificates; every valid generation (issuing or
//! retiring) is trusted for EST client authentication, listed in `/cacerts`, publishes its
//! own CRL and answers OCSP through its own delegated responder.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetca_ca::{state_of, CertificateAuthority, GenerationState};
use fleetca_est::{ClientTrust, EstService};
use fleetca_pki::{Clock, Issuer, Publication};
use fleetca_publish::{PublishedCa, Publisher};
use fleetca_store::{CaGeneration, Store};
use time::OffsetDateTime;

use crate::ca_cmd::{all_generations, key_of};
use crate::config::Config;
use crate::keys::KeySource;
use crate::pki_setup::{ensure_ocsp_responders_for, load_ocsp_responder};
use crate::reload::{CaCertificates, SharedCaCertificates};

/// How often a server reads the generations.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Which generations are in force, and which of them issue: what decides whether
/// anything must be rebuilt.
pub type Signature = Vec<(String, u32, bool)>;

/// The generations a server uses at one time.
pub struct Served {
    pub signature: Signature,
    /// The issuing generation of the manufacturing and operational CAs.
    pub issuing: Vec<Arc<Issuer>>,
    /// Every valid generation of those CAs, with whether it issues.
    pub published: Vec<(Arc<Issuer>, bool)>,
    /// Client certificates of every valid generation authenticate.
    pub trust: ClientTrust,
    /// `/cacerts`.
    pub cacerts: CaCertificates,
}

/// The valid generations of the CAs a server uses, issuing one first per CA, and the
/// signature of that set.
fn in_force(all: &[CaGeneration], now: OffsetDateTime) -> (Vec<(&CaGeneration, bool)>, Signature) {
    let mut valid: Vec<(&CaGeneration, bool)> = all
        .iter()
        .filter_map(|g| match state_of(g, all, now) {
            GenerationState::Active => Some((g, true)),
            GenerationState::Retiring => Some((g, false)),
            _ => None,
        })
        .collect();
    // Issuing first, then newest first.
    valid.sort_by(|(a, a_active), (b, b_active)| {
        (a.ca.as_str(), !a_active, std::cmp::Reverse(a.generation)).cmp(&(
            b.ca.as_str(),
            !b_active,
            std::cmp::Reverse(b.generation),
        ))
    });
    let mut signature: Signature = valid
        .iter()
        .map(|(g, active)| (g.ca.clone(), g.generation, *active))
        .collect();
    // A pending root is published (with its links) before it activates.
    signature.extend(
        pending_roots(all, now).map(|g| ("root (pending)".to_string(), g.generation, false)),
    );
    (valid, signature)
}

/// Root generations recorded but not active yet.
fn pending_roots(all: &[CaGeneration], now: OffsetDateTime) -> impl Iterator<Item = &CaGeneration> {
    all.iter()
        .filter(move |g| g.ca == "root" && state_of(g, all, now) == GenerationState::Pending)
}

/// The signature of the generations in force at `now`.
pub async fn signature(
    config: &Config,
    store: &dyn Store,
    now: OffsetDateTime,
) -> anyhow::Result<Signature> {
    let all = all_generations(config, store).await?;
    Ok(in_force(&all, now).1)
}

/// Loads the generations in force at `now`: their keys, OCSP responders (issued when
/// missing) and what the front ends need.
pub async fn load(
    config: &Config,
    keys: &KeySource,
    store: &dyn Store,
    manufacturers: &[(String, Vec<u8>)],
    now: OffsetDateTime,
) -> anyhow::Result<Served> {
    let all = all_generations(config, store).await?;
    let (valid, signature) = in_force(&all, now);
    let root = valid
        .iter()
        .find(|(g, active)| g.ca == "root" && *active)
        .map(|(g, _)| g.certificate_der.clone())
        .context("no valid root CA generation")?;
    let mut issuing = Vec::new();
    let mut published = Vec::new();
    // Every other root generation that is valid or pending, with the links of each root
    // generation that has them.
    let mut root_update = Vec::new();
    let roots = valid
        .iter()
        .filter(|(g, _)| g.ca == "root")
        .map(|(g, _)| *g)
        .chain(pending_roots(&all, now));
    for g in roots {
        if g.certificate_der != root {
            root_update.push(g.certificate_der.clone());
        }
        if let Some(links) = &g.links {
            root_update.push(links.new_with_old.clone());
            root_update.push(links.old_with_new.clone());
        }
    }
    let mut cacerts = CaCertificates {
        manufacturing: Vec::new(),
        operational: Vec::new(),
        root,
        root_update,
    };
    for (g, active) in &valid {
        let ca = g.ca.as_str();
        if ca != "manufacturing" && ca != "operational" {
            continue;
        }
        let signer = keys
            .signer(
                &format!("CA '{ca}' generation {}", g.generation),
                &key_of(g, config),
            )
            .with_context(|| format!("{ca} CA generation {}", g.generation))?;
        let mut issuer = Issuer::new(ca, g.certificate_der.clone(), signer)
            .with_context(|| format!("{ca} CA generation {}", g.generation))?
            .with_generation(g.generation);
        if let Some(p) = &config.publication {
            let name = issuer.generation_name();
            issuer = issuer.with_publication(Publication {
                crl_url: format!("{}/crl/{name}.crl", p.base_url),
                ocsp_url: format!("{}/ocsp", p.base_url),
            });
        }
        let issuer = Arc::new(issuer);
        if *active {
            issuing.push(Arc::clone(&issuer));
        }
        published.push((issuer, *active));
        let list = if ca == "manufacturing" {
            &mut cacerts.manufacturing
        } else {
            &mut cacerts.operational
        };
        list.push(g.certificate_der.clone());
    }
    // The issuing generations anchor the trust; the older valid ones (and every valid
    // registration generation) are added to it.
    let issuing_certificate = |ca: &str| {
        valid
            .iter()
            .find(|(g, active)| g.ca == ca && *active)
            .map(|(g, _)| g.certificate_der.as_slice())
            .with_context(|| format!("no valid {ca} CA generation"))
    };
    let mut trust = ClientTrust::new(
        issuing_certificate("operational")?,
        issuing_certificate("manufacturing")?,
        manufacturers,
    )
    .map_err(anyhow::Error::msg)?;
    for (g, active) in &valid {
        let older = !active && (g.ca == "operational" || g.ca == "manufacturing");
        if older || g.ca == "registration" {
            trust = trust
                .with_generation(&g.ca, &g.certificate_der)
                .map_err(anyhow::Error::msg)?;
        }
    }
    if config.publication.is_some() {
        let issuers: Vec<Arc<Issuer>> = published.iter().map(|(i, _)| Arc::clone(i)).collect();
        ensure_ocsp_responders_for(config, keys, &issuers, now)?;
    }
    Ok(Served {
        signature,
        issuing,
        published,
        trust,
        cacerts,
    })
}

/// The status publisher's CAs for `served`.
pub fn published(
    config: &Config,
    keys: &KeySource,
    served: &Served,
) -> anyhow::Result<Vec<PublishedCa>> {
    served
        .published
        .iter()
        .map(|(issuer, active)| {
            Ok(PublishedCa {
                responder: Arc::new(load_ocsp_responder(config, keys, issuer)?),
                issuer: Arc::clone(issuer),
                active: *active,
            })
        })
        .collect()
}

/// What the watcher replaces when the generations change.
pub struct Watcher {
    pub config: Config,
    pub keys: KeySource,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub manufacturers: Vec<(String, Vec<u8>)>,
    pub ca: Arc<CertificateAuthority>,
    pub service: Arc<EstService>,
    pub publisher: Option<Arc<Publisher>>,
    pub cas: SharedCaCertificates,
    /// The signature in force.
    pub signature: Signature,
}

impl Watcher {
    /// Reads the generations; when the set in force changed, puts the new one in force.
    async fn check(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let signature = signature(&self.config, self.store.as_ref(), now).await?;
        if signature == self.signature {
            return Ok(());
        }
        let served = load(
            &self.config,
            &self.keys,
            self.store.as_ref(),
            &self.manufacturers,
            now,
        )
        .await?;
        if let Some(publisher) = &self.publisher {
            publisher
                .replace_cas(published(&self.config, &self.keys, &served)?)
                .await?;
        }
        self.ca.replace_issuers(served.issuing.iter().cloned());
        self.service.replace_client_trust(served.trust);
        match self.cas.write() {
            Ok(mut c) => *c = served.cacerts.clone(),
            Err(poisoned) => *poisoned.into_inner() = served.cacerts.clone(),
        }
        let cacerts = served.cacerts;
        self.service
            .replace_cacerts(|profile| cacerts.cacerts_for(profile).ok());
        let issuing: Vec<String> = served
            .issuing
            .iter()
            .map(|i| format!("{} generation {}", i.name(), i.generation()))
            .collect();
        tracing::info!(
            issuing = %issuing.join(", "),
            in_force = served.published.len(),
            "CA generations changed: now issuing with the newest active generation"
        );
        self.signature = served.signature;
        Ok(())
    }

    /// Checks every few seconds until `stop`.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut interval = tokio::time::interval(CHECK_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await; // start-up loaded them
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = interval.tick() => {
                    if let Err(e) = self.check().await {
                        tracing::error!(error = %format!("{e:#}"), "CA generations: update failed; the generations in force stay, retrying");
                    }
                }
            }
        }
    }
}
