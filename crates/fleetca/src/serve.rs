//! `fleetca serve`: wires the store, RA, CA and EST front end together and runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use fleetca_ca::CertificateAuthority;
use fleetca_est::{ConnectionLimits, EstService, Limits};
use fleetca_listener::{Admission, AdmissionLimits, AdmittedListener, RefusalObserver};
use fleetca_pki::{Clock, SystemClock};
use fleetca_publish::{PublishSettings, Publisher};
use fleetca_store::{
    AccountStore, AuditLog, CertificateLedger, Database, InventoryReader, LeaseStore,
    RevocationStore, Store,
};

use crate::config::Config;
use crate::files::read_certificates;
use crate::generation_watch::{self, Served};
use crate::keys::KeySource;
use crate::pki_setup::{
    check_trust_permissions, ensure_ocsp_responders_for, load_manufacturer_cas,
    load_ocsp_responder, renew_server_certificate_if_due,
};
use crate::reload::{routing, Reloader, SharedCaCertificates};

/// Everything `serve` needs, built and checked (also what `--check-config` checks).
pub struct Prepared {
    config: Config,
    tls: Arc<rustls::ServerConfig>,
    service: Arc<EstService>,
    publisher: Option<Arc<Publisher>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<fleetca_monitor::Metrics>,
    keys: KeySource,
    cas: SharedCaCertificates,
    ca: Arc<CertificateAuthority>,
    manufacturers: Vec<(String, Vec<u8>)>,
    signature: generation_watch::Signature,
    /// The admin API's TLS: the server certificate, no client certificate requested.
    admin_tls: Arc<rustls::ServerConfig>,
    /// The registration CA's issuing generation at start-up (None: this data directory
    /// has none yet), or why it cannot be loaded.
    registration: Result<Option<Arc<fleetca_pki::Issuer>>, String>,
    /// The CMP front end (`[cmp] enabled`), for its background work.
    cmp: Option<Arc<fleetca_cmp::CmpFrontEnd>>,
    /// SCEP on the EST listener (and its plain-HTTP one), when `[scep]` enables it.
    scep: Option<Arc<fleetca_scep::ScepFrontEnd>>,
}

/// Loads keys, certificates and the database and assembles the service.
pub fn prepare(config: Config) -> anyhow::Result<Prepared> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    check_trust_permissions(&config)?;
    let keys = KeySource::new(&config)?;
    let store = fleetca_store::open(&config.database)?;
    let manufacturers = load_manufacturer_cas(&config.manufacturer_cas)?;
    // The CA generations in force now, from the database (generation 1 from the files
    // of [ca] until a rollover records it); the watcher follows them from here on.
    let served = tokio::runtime::Handle::current().block_on(generation_watch::load(
        &config,
        &keys,
        store.as_ref(),
        &manufacturers,
        clock.now(),
    ))?;
    // The registration CA signs station credentials (admin API): its issuing generation.
    let registration = if config.registration_certificate.exists() {
        tokio::runtime::Handle::current()
            .block_on(crate::ca_cmd::issuing_issuer_now(
                &config,
                &keys,
                store.as_ref(),
                "registration",
            ))
            .map(|i| Some(Arc::new(i)))
            .map_err(|e| format!("{e:#}"))
    } else {
        Ok(None)
    };
    let operational = served
        .issuing
        .iter()
        .find(|i| i.name() == "operational")
        .cloned()
        .context("no issuing operational CA generation")?;
    renew_server_certificate_if_due(&config, &operational, clock.now())?;
    let chain = read_certificates(&config.tls_certificate)?;
    // The same 0600 check as the CA keys.
    let key = fleetca_pki::private_key_der(&crate::files::read_key(&config.tls_key)?)
        .with_context(|| format!("server key {}", config.tls_key.display()))?;
    let admin_tls = fleetca_admin::http::tls_config(chain.clone(), key.clone_key())
        .context("admin API TLS configuration (the server certificate and key)")?;
    let groups: Vec<_> = config
        .key_exchange_groups
        .iter()
        .filter_map(|g| fleetca_est::key_exchange_group(g))
        .collect();
    let tls =
        fleetca_est::server_config(chain, key, subject_hints(&served, &manufacturers), &groups)?;
    let ca_certificates = served.cacerts.clone();
    let routing = routing(&config, &ca_certificates, &store, &clock)?;
    let publisher = match &config.publication {
        None => None,
        Some(p) => {
            let publisher = Publisher::new(
                generation_watch::published(&config, &keys, &served)?,
                Arc::clone(&store) as Arc<dyn InventoryReader>,
                Arc::clone(&store) as Arc<dyn RevocationStore>,
                Arc::clone(&clock),
                PublishSettings {
                    crl_validity: p.crl_validity,
                    crl_refresh: p.crl_refresh,
                    ocsp_validity: p.ocsp_validity,
                    ocsp_refresh: p.ocsp_refresh,
                },
            );
            // A shared database may have several nodes: one builds the CRLs, the others
            // serve what it recorded. SQLite has one server per file.
            let publisher = match &config.database {
                Database::Postgres(_) => publisher.with_lease(
                    Arc::clone(&store) as Arc<dyn LeaseStore>,
                    crate::monitor_cmd::node_id(&config.base_dir),
                ),
                _ => publisher,
            };
            Some(Arc::new(publisher))
        }
    };
    let ca = Arc::new(CertificateAuthority::new(
        served.issuing.iter().cloned(),
        Arc::clone(&store) as Arc<dyn CertificateLedger>,
        Arc::clone(&clock),
    ));
    let service = EstService::new(
        routing.default_label,
        routing.labels,
        routing.ra,
        Arc::clone(&ca),
        served.trust,
        Arc::clone(&store) as Arc<dyn AccountStore>,
        Arc::clone(&clock),
        Limits {
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.body_timeout,
        },
    )
    .with_audit(Arc::clone(&store) as Arc<dyn AuditLog>);
    let cmp = crate::cmp_setup::front_end(&config, &keys, &operational, &store, &ca, clock.now())
        .context("CMP front end ([cmp])")?;
    let service = match &cmp {
        Some(front_end) => {
            service.with_front_end(Arc::clone(front_end) as Arc<dyn fleetca_est::FrontEnd>)
        }
        None => service,
    };
    let scep = scep_front_end(&config, &operational, &ca, &store, clock.now())?;
    let service = match &scep {
        Some(f) => service.with_front_end(Arc::clone(f) as Arc<dyn fleetca_est::FrontEnd>),
        None => service,
    };
    // Prometheus: EST requests by endpoint and status, latency histograms.
    let metrics = Arc::new(fleetca_monitor::Metrics::new());
    let service =
        service.with_observer(Arc::clone(&metrics) as Arc<dyn fleetca_est::RequestObserver>);
    Ok(Prepared {
        config,
        tls: Arc::new(tls),
        service: Arc::new(service),
        publisher,
        store,
        clock,
        metrics,
        keys,
        cas: Arc::new(std::sync::RwLock::new(ca_certificates)),
        ca,
        manufacturers,
        signature: served.signature,
        admin_tls: Arc::new(admin_tls),
        registration,
        cmp,
        scep,
    })
}

/// The SCEP front end with its RA credential (issued or renewed first), if `[scep]` is on.
fn scep_front_end(
    config: &Config,
    operational: &fleetca_pki::Issuer,
    ca: &Arc<CertificateAuthority>,
    store: &Arc<dyn Store>,
    now: time::OffsetDateTime,
) -> anyhow::Result<Option<Arc<fleetca_scep::ScepFrontEnd>>> {
    let Some(scep) = &config.scep else {
        return Ok(None);
    };
    crate::scep_setup::ensure_scep_ra(config, scep, operational, now)?;
    let credential = crate::scep_setup::load_scep_ra(config)?;
    let stores = fleetca_scep::ScepStores {
        scep: Arc::clone(store) as Arc<dyn fleetca_store::ScepStore>,
        inventory: Arc::clone(store) as Arc<dyn InventoryReader>,
        revocation: Arc::clone(store) as Arc<dyn RevocationStore>,
        audit: Some(Arc::clone(store) as Arc<dyn AuditLog>),
    };
    Ok(Some(Arc::new(fleetca_scep::ScepFrontEnd::new(
        Arc::clone(ca),
        stores,
        credential,
        scep.settings.clone(),
    ))))
}

/// What the admin API serves from: the store, the session settings, the registration CA
/// (when this data directory has one: it issues station credentials) and the monitoring
/// tiers of the expiring report (they follow SIGHUP reloads).
fn admin_api(
    prepared: &Prepared,
    monitoring: tokio::sync::watch::Receiver<Arc<fleetca_monitor::MonitorSettings>>,
) -> fleetca_admin::http::AdminApi {
    let config = &prepared.config;
    let registration = match &prepared.registration {
        Ok(issuer) => issuer.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "admin API: the registration CA cannot be loaded; POST /api/v1/stations is refused");
            None
        }
    };
    let failing_threshold = monitoring
        .borrow()
        .failing_renewals
        .as_ref()
        .map_or(3, |f| f.threshold);
    let tiers = monitoring.clone();
    let tier_of: fleetca_admin::TierOf = Arc::new(move |left, lifetime| {
        let m = tiers.borrow();
        m.tier_for(left, lifetime)
            .and_then(|i| m.tiers.get(i))
            .map(|t| t.name.clone())
    });
    fleetca_admin::http::AdminApi {
        store: Arc::clone(&prepared.store),
        sessions: fleetca_admin::SessionSettings {
            idle: config.admin.session_idle,
            lifetime: config.admin.session_lifetime,
        },
        limiter: fleetca_admin::FailureLimiter::new(
            config.admin.auth_failures_per_minute,
            std::time::Duration::from_secs(60),
        ),
        registration,
        organization: config.organization.clone(),
        est_labels: config.est_labels.keys().cloned().collect(),
        tier_of: Some(tier_of),
        failing_threshold,
    }
}

/// What the web console draws from the configuration: per operational profile, the
/// renewal window (a third of the validity: the agent renews at two thirds by default).
fn console_settings(config: &Config) -> fleetca_admin::console::ConsoleSettings {
    let renewal_windows = config
        .profiles
        .iter()
        .filter(|(_, p)| !p.no_expiry && p.issuer == "operational")
        .map(|(name, p)| (name.clone(), p.validity / 3))
        .collect();
    fleetca_admin::console::ConsoleSettings { renewal_windows }
}

/// DER subjects of the CAs whose certificates clients should present.
fn subject_hints(served: &Served, manufacturers: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    let ours = served
        .cacerts
        .operational
        .iter()
        .chain(&served.cacerts.manufacturing)
        .filter_map(|der| fleetca_pki::CertificateInfo::from_der(der).ok())
        .map(|i| i.subject_der);
    let theirs = manufacturers
        .iter()
        .filter_map(|(_, der)| fleetca_pki::CertificateInfo::from_der(der).ok())
        .map(|i| i.subject_der);
    ours.chain(theirs).collect()
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(
    prepared: Prepared,
    listen_override: Option<SocketAddr>,
    status_listen_override: Option<SocketAddr>,
    metrics_listen_override: Option<SocketAddr>,
    admin_listen_override: Option<SocketAddr>,
    data_dir: &Path,
    config_file: PathBuf,
) -> anyhow::Result<()> {
    // SIGHUP reloads the configuration (registered before anything is announced, so that a
    // SIGHUP never finds the default action, which ends the process).
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    let addr = listen_override.unwrap_or(prepared.config.listen);
    let listener =
        crate::listeners::bind(crate::listeners::EST, addr, listen_override.is_some()).await?;
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_watch = stop_rx.clone();
    // Monitoring settings, replaced by a SIGHUP reload.
    let monitoring = Arc::new(crate::monitor_cmd::settings_of(&prepared.config));
    // Every series of the configured tiers and channels exists before the first scrape.
    prepared.metrics.declare(&monitoring);
    let (monitoring_tx, monitoring_rx) = tokio::sync::watch::channel(Arc::clone(&monitoring));
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut background = tokio::task::JoinSet::new();
    let refusals: Arc<dyn RefusalObserver> = Arc::clone(&prepared.metrics) as _;

    if let (Some(publisher), Some(publication)) =
        (&prepared.publisher, &prepared.config.publication)
    {
        publisher
            .start()
            .await
            .context("cannot build the initial CRLs")?;
        let status_addr = status_listen_override.unwrap_or(publication.listen);
        let status_listener = crate::listeners::bind(
            crate::listeners::STATUS,
            status_addr,
            status_listen_override.is_some(),
        )
        .await?;
        // Port 0 (any free port, for tests and tools) is a choice no base URL can name.
        if status_listen_override.is_some_and(|a| a.port() != 0) {
            let bound = status_listener.local_addr()?;
            if let Some(warning) = crate::listeners::base_url_mismatch(&publication.base_url, bound)
            {
                tracing::warn!(base_url = %publication.base_url, listen = %bound, "{warning}");
            }
        }
        println!(
            "fleetca: CRL and OCSP on http://{}/ (certificates name {})",
            status_listener.local_addr()?,
            publication.base_url
        );
        background.spawn(Arc::clone(publisher).run(stopped()));
        background.spawn(renew_ocsp_responders(
            prepared.config.clone(),
            prepared.keys.clone(),
            Arc::clone(publisher),
            Arc::clone(&prepared.clock),
            stopped(),
        ));
        let publisher = Arc::clone(publisher);
        let stop = stopped();
        let status_listener = AdmittedListener::new(
            status_listener,
            Admission::new(
                "status",
                publication.admission.clone(),
                Some(refusals.clone()),
            ),
        );
        let header_timeout = publication.header_timeout;
        let readiness = readiness_check(
            Arc::clone(&prepared.store),
            Arc::clone(&prepared.metrics),
            monitoring_rx.clone(),
        );
        background.spawn(async move {
            if let Err(e) = fleetca_publish::serve(
                status_listener,
                publisher,
                Some(readiness),
                header_timeout,
                stop,
            )
            .await
            {
                tracing::error!(error = %e, "status listener failed");
            }
        });
    }
    if let Some(addr) = metrics_listen_override.or(monitoring.metrics_listen) {
        let metrics_listener = crate::listeners::bind(
            crate::listeners::METRICS,
            addr,
            metrics_listen_override.is_some(),
        )
        .await?;
        println!(
            "fleetca: metrics on http://{}/metrics",
            metrics_listener.local_addr()?
        );
        let (metrics, stop) = (Arc::clone(&prepared.metrics), stopped());
        // Meant for one scraper on a private network: small fixed limits.
        let metrics_listener = AdmittedListener::new(
            metrics_listener,
            Admission::new(
                "metrics",
                AdmissionLimits {
                    max_connections: 64,
                    max_connections_per_source: 16,
                    ..AdmissionLimits::default()
                },
                Some(refusals.clone()),
            ),
        );
        background.spawn(async move {
            if let Err(e) = fleetca_monitor::metrics::serve(metrics_listener, metrics, stop).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    if let Some(addr) = admin_listen_override.or(prepared.config.admin.listen) {
        let admin_listener = crate::listeners::bind(
            crate::listeners::ADMIN,
            addr,
            admin_listen_override.is_some(),
        )
        .await?;
        println!(
            "fleetca: admin API on https://{}/api/v1/",
            admin_listener.local_addr()?
        );
        let admin_listener = AdmittedListener::new(
            admin_listener,
            Admission::new(
                "admin",
                prepared.config.admin.admission.clone(),
                Some(refusals.clone()),
            ),
        );
        println!(
            "fleetca: web console on https://{}/",
            admin_listener.local_addr()?
        );
        // The console at `/`, the API under `/api/v1/`, on the same listener.
        let router = fleetca_admin::console::router(
            Arc::new(admin_api(&prepared, monitoring_rx.clone())),
            console_settings(&prepared.config),
        );
        let (tls, stop) = (Arc::clone(&prepared.admin_tls), stopped());
        let limits = fleetca_admin::http::ConnectionLimits {
            handshake_timeout: prepared.config.handshake_timeout,
            header_timeout: prepared.config.header_timeout,
            max_connection_lifetime: prepared.config.max_connection_lifetime,
            max_header_bytes: prepared.config.max_header_bytes,
        };
        background.spawn(async move {
            if let Err(e) =
                fleetca_admin::http::serve(admin_listener, tls, router, limits, stop).await
            {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    if let Some(front_end) = &prepared.scep {
        background.spawn(crate::scep_setup::renew_scep_ra(
            prepared.config.clone(),
            Arc::clone(front_end),
            Arc::clone(&prepared.ca),
            Arc::clone(&prepared.clock),
            stopped(),
        ));
        if let Some(addr) = prepared.config.scep.as_ref().and_then(|s| s.http_listen) {
            let plain = crate::listeners::bind(crate::listeners::SCEP_HTTP, addr, false).await?;
            println!("fleetca: SCEP on http://{}/scep", plain.local_addr()?);
            let plain = AdmittedListener::new(
                plain,
                Admission::new(
                    "scep-http",
                    prepared.config.admission.clone(),
                    Some(refusals.clone()),
                ),
            );
            let limits = ConnectionLimits {
                handshake_timeout: prepared.config.handshake_timeout,
                header_timeout: prepared.config.header_timeout,
                max_connection_lifetime: prepared.config.max_connection_lifetime,
                max_header_bytes: prepared.config.max_header_bytes,
            };
            let (service, stop) = (Arc::clone(&prepared.service), stopped());
            background.spawn(async move {
                if let Err(e) = fleetca_est::serve_plain(plain, service, limits, stop).await {
                    tracing::error!(error = %e, "SCEP plain-HTTP listener failed");
                }
            });
        }
    }
    background.spawn(keep_inventory_gauges_current(
        Arc::clone(&prepared.store),
        Arc::clone(&prepared.clock),
        Arc::clone(&prepared.metrics),
        stopped(),
    ));
    background.spawn(crate::monitor_cmd::supervise(
        Arc::clone(&prepared.store),
        Arc::clone(&prepared.clock),
        Arc::clone(&prepared.metrics),
        crate::monitor_cmd::node_id(&prepared.config.base_dir),
        monitoring_rx.clone(),
        stop_watch,
    ));
    if let Some(grace) = prepared.config.revoke_superseded_after {
        background.spawn(revoke_superseded(
            Arc::clone(&prepared.store),
            Arc::clone(&prepared.clock),
            grace,
            stopped(),
        ));
    }

    println!("fleetca: EST listening on https://{local}/.well-known/est/");
    if let Some(front_end) = &prepared.cmp {
        println!("fleetca: CMP on https://{local}/.well-known/cmp");
        background.spawn(crate::cmp_setup::maintain(
            prepared.config.clone(),
            prepared.keys.clone(),
            Arc::clone(&prepared.ca),
            Arc::clone(&prepared.store),
            Arc::clone(front_end),
            Arc::clone(&prepared.clock),
            stopped(),
        ));
    }
    println!(
        "fleetca: trust anchor {}",
        prepared.config.root_certificate.display()
    );
    tracing::info!(%local, data_dir = %data_dir.display(), "fleetca serving");
    let limits = ConnectionLimits {
        handshake_timeout: prepared.config.handshake_timeout,
        header_timeout: prepared.config.header_timeout,
        max_connection_lifetime: prepared.config.max_connection_lifetime,
        max_header_bytes: prepared.config.max_header_bytes,
    };
    let listener = AdmittedListener::new(
        listener,
        Admission::new("est", prepared.config.admission.clone(), Some(refusals)),
    );
    #[cfg(unix)]
    background.spawn(
        Reloader {
            config_file,
            service: Arc::clone(&prepared.service),
            cas: Arc::clone(&prepared.cas),
            store: Arc::clone(&prepared.store),
            clock: Arc::clone(&prepared.clock),
            running: prepared.config.clone(),
            monitoring: monitoring_tx,
        }
        .on_sighup(hup, stopped()),
    );
    background.spawn(
        generation_watch::Watcher {
            config: prepared.config.clone(),
            keys: prepared.keys.clone(),
            store: Arc::clone(&prepared.store),
            clock: Arc::clone(&prepared.clock),
            manufacturers: prepared.manufacturers.clone(),
            ca: Arc::clone(&prepared.ca),
            service: Arc::clone(&prepared.service),
            publisher: prepared.publisher.clone(),
            cas: Arc::clone(&prepared.cas),
            signature: prepared.signature.clone(),
        }
        .run(stopped()),
    );
    background.spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    fleetca_est::serve(listener, prepared.tls, prepared.service, limits, stopped()).await?;
    // Let background jobs see the stop and hand their leases over (bounded wait).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while background.join_next().await.is_some() {}
    })
    .await;
    background.abort_all();
    tracing::info!("fleetca stopped");
    Ok(())
}

/// `GET /readyz` on the status listener: the database answers (within 2 s), the CA keys
/// are loaded (they are, or `serve` would not have started), and the age of this node's
/// last successful expiry scan. Only an unreachable database makes the node not ready: a
/// late scan does not stop it from serving (it is a warning, `fleetca_expiry_scan_overdue`).
fn readiness_check(
    store: Arc<dyn Store>,
    metrics: Arc<fleetca_monitor::Metrics>,
    monitoring: tokio::sync::watch::Receiver<Arc<fleetca_monitor::MonitorSettings>>,
) -> fleetca_publish::ReadinessCheck {
    Arc::new(move || {
        let store = Arc::clone(&store);
        let metrics = Arc::clone(&metrics);
        let (interval, scanning) = {
            let m = monitoring.borrow();
            (m.scan_interval.as_secs(), m.enabled)
        };
        Box::pin(async move {
            let database =
                tokio::time::timeout(std::time::Duration::from_secs(2), store.status_revision())
                    .await;
            let (db_ok, db_line) = match database {
                Ok(Ok(_)) => (true, "database: ok".to_string()),
                Ok(Err(e)) => (false, format!("database: unreachable ({e})")),
                Err(_) => (false, "database: no answer within 2 s".to_string()),
            };
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let scan_line = match (scanning, metrics.last_scan_timestamp()) {
                (false, _) => "expiry scan: monitoring disabled".to_string(),
                (true, Some(at)) => format!(
                    "expiry scan: last success on this node {}s ago (every {interval}s)",
                    now.saturating_sub(at)
                ),
                (true, None) => format!(
                    "expiry scan: none on this node since start (another node may hold the lease; every {interval}s)"
                ),
            };
            (db_ok, format!("{db_line}\nkeys: loaded\n{scan_line}"))
        })
    })
}

/// Renews the delegated OCSP signing certificates of a long-running server (hourly check;
/// renewal once two thirds of their lifetime have passed) and installs them.
async fn renew_ocsp_responders(
    config: Config,
    keys: KeySource,
    publisher: Arc<Publisher>,
    clock: Arc<dyn Clock>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(3600));
    interval.tick().await; // start-up already ensured them
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = interval.tick() => {
                let issuers: Vec<Arc<fleetca_pki::Issuer>> = publisher.issuers();
                let renewed = ensure_ocsp_responders_for(&config, &keys, &issuers, clock.now()).and_then(|changed| {
                    if !changed {
                        return Ok(None);
                    }
                    issuers
                        .iter()
                        .map(|i| load_ocsp_responder(&config, &keys, i).map(Arc::new))
                        .collect::<anyhow::Result<Vec<_>>>()
                        .map(Some)
                });
                match renewed {
                    Ok(Some(responders)) => {
                        publisher.replace_responders(responders);
                        tracing::info!("OCSP responder certificates renewed");
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "OCSP responder renewal failed; retrying in an hour"),
                }
            }
        }
    }
}

/// Keeps the inventory gauges (`fleetca_certificates` and friends) current between expiry
/// scans: every 2 s, recounts when this node issued a certificate (the EST observer marks
/// it) or a status changed anywhere (the store's status revision: revocations, holds,
/// decommissioning, from the CLI or another node). At most one recount per 2 s, on the
/// read pool, however many certificates were issued meanwhile.
async fn keep_inventory_gauges_current(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<fleetca_monitor::Metrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(2));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut revision = None;
    let mut pending = false;
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = interval.tick() => {
                let now_revision = store.status_revision().await.ok();
                let status_changed = now_revision.is_some() && now_revision != revision;
                revision = now_revision.or(revision);
                pending |= metrics.take_inventory_change() | status_changed;
                if pending {
                    match metrics.refresh_inventory(&*store, clock.now()).await {
                        Ok(()) => pending = false,
                        Err(e) => tracing::warn!(error = %e, "inventory gauges: recount failed; retrying in 2 s"),
                    }
                }
            }
        }
    }
}

/// Revokes renewed certificates as superseded once their grace period has passed, every
/// ten minutes.
async fn revoke_superseded(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    grace: time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = interval.tick() => {
                let now = clock.now();
                match store.revoke_superseded(now - grace, now).await {
                    Ok(serials) if !serials.is_empty() => {
                        tracing::info!(count = serials.len(), "renewed certificates revoked as superseded");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "revoking superseded certificates failed"),
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
