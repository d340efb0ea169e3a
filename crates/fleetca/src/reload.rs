//! Configuration reload on SIGHUP.
//!
//! The file is loaded and validated as `serve --check-config` validates it; a file that
//! fails is refused, said so in the log, and the running configuration stays in force.
//! What a running server can take over safely is replaced at once: the profiles (and
//! their configured rules, CEL included), the EST labels, the inventory connectors, the
//! monitoring settings (tiers, channels, intervals: the scan and delivery restart with
//! them) and the log level. Everything else (listeners, TLS, database, CA keys,
//! publication, limits) is compared and, where it changed, logged as needing a restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use fleetca_est::{EstService, LabelProfile};
use fleetca_pki::{certs_only, csr_attributes, CertificateProfile, Clock};
use fleetca_ra::{Policy, RegistrationAuthority};
use fleetca_store::{InventoryReader, PolicyStore, Store};

use crate::config::Config;

/// The DER certificates a label's `/cacerts` is built from.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificates {
    /// The manufacturing CA: the issuing generation first, then the older ones still valid.
    pub manufacturing: Vec<Vec<u8>>,
    /// The operational CA, in the same order.
    pub operational: Vec<Vec<u8>>,
    /// The root.
    pub root: Vec<u8>,
    /// The other root generations still valid or pending (a root rollover), and the link
    /// certificates between them (RFC 7030 section 4.1.3): how devices that trust one
    /// root learn the other.
    pub root_update: Vec<Vec<u8>>,
}

impl CaCertificates {
    /// The certs-only `/cacerts` answer for a profile: its CA's generations, then the root.
    pub fn cacerts_for(&self, profile: &CertificateProfile) -> anyhow::Result<Vec<u8>> {
        let issuer = if profile.issuer == "manufacturing" {
            &self.manufacturing
        } else {
            &self.operational
        };
        let mut chain: Vec<&[u8]> = issuer.iter().map(Vec::as_slice).collect();
        chain.push(self.root.as_slice());
        chain.extend(self.root_update.iter().map(Vec::as_slice));
        Ok(certs_only(&chain)?)
    }
}

/// The CA certificates in force, shared by the SIGHUP reload and the generation watcher.
pub type SharedCaCertificates = Arc<std::sync::RwLock<CaCertificates>>;

/// The profiles by label and the RA that a configuration asks for.
pub struct Routing {
    /// Served at `/.well-known/est/`.
    pub default_label: LabelProfile,
    /// Served at `/.well-known/est/<label>/`.
    pub labels: HashMap<String, LabelProfile>,
    /// The rules engine with the configured connectors.
    pub ra: Arc<dyn RegistrationAuthority>,
}

fn label_profile(
    profile: &CertificateProfile,
    cas: &CaCertificates,
) -> anyhow::Result<LabelProfile> {
    Ok(LabelProfile::new(
        Arc::new(profile.clone()),
        cas.cacerts_for(profile)?,
        csr_attributes(profile)?,
    )?)
}

/// Builds the profiles, labels and RA of `config` (at start-up and on reload).
pub fn routing(
    config: &Config,
    cas: &CaCertificates,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<Routing> {
    let default_label = label_profile(config.profile(&config.est_profile)?, cas)?;
    let mut labels = HashMap::new();
    for (label, profile) in &config.est_labels {
        labels.insert(label.clone(), label_profile(config.profile(profile)?, cas)?);
    }
    let ra = Policy::new(
        Arc::clone(store) as Arc<dyn InventoryReader>,
        Arc::clone(store) as Arc<dyn PolicyStore>,
        Arc::clone(clock),
    )
    .with_connectors(config.connectors()?);
    Ok(Routing {
        default_label,
        labels,
        ra: Arc::new(ra),
    })
}

/// The settings a reload does not apply, by name, that differ between `old` and `new`.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    macro_rules! differ {
        ($($field:ident => $name:literal),+ $(,)?) => {{
            let mut changed = Vec::new();
            $(if format!("{:?}", old.$field) != format!("{:?}", new.$field) {
                changed.push($name);
            })+
            changed
        }};
    }
    let mut changed = differ!(
        listen => "server.listen",
        tls_certificate => "server.tls_certificate",
        tls_key => "server.tls_key",
        server_names => "server.server_names",
        handshake_timeout => "server.handshake_timeout",
        header_timeout => "server.header_timeout",
        body_timeout => "server.body_timeout",
        max_connection_lifetime => "server.max_connection_lifetime",
        admission => "server admission limits",
        max_header_bytes => "server.max_header_bytes",
        max_body_bytes => "server.max_body_bytes",
        database => "[database]",
        root_certificate => "pki root_certificate",
        manufacturing_certificate => "pki manufacturing CA",
        manufacturing_key => "pki manufacturing CA key",
        operational_certificate => "pki operational CA",
        operational_key => "pki operational CA key",
        manufacturer_cas => "pki manufacturer_cas",
        log_format => "log_format",
        publication => "[publication]",
        revoke_superseded_after => "revoke_superseded_after",
        pkcs11 => "[pkcs11]",
        admin => "[admin]",
    );
    let listen = |c: &Config| c.monitoring.as_ref().and_then(|m| m.metrics_listen);
    if listen(old) != listen(new) {
        changed.push("monitoring.metrics_listen");
    }
    changed
}

/// What SIGHUP reloads into.
pub struct Reloader {
    /// The configuration file.
    pub config_file: PathBuf,
    /// The running service.
    pub service: Arc<EstService>,
    /// The CA certificates in force (the generation watcher replaces them).
    pub cas: SharedCaCertificates,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The configuration in force.
    pub running: Config,
    /// Where new monitoring settings go (the expiry scan and delivery restart with them).
    pub monitoring: tokio::sync::watch::Sender<Arc<fleetca_monitor::MonitorSettings>>,
}

impl Reloader {
    /// Loads and checks the file and, if it is good, puts what can be reloaded in force.
    /// Returns the settings that changed but need a restart.
    pub fn reload(&mut self) -> anyhow::Result<Vec<&'static str>> {
        crate::files::refuse_writable_by_others(&self.config_file, "configuration")?;
        let config = Config::load(&self.config_file)?;
        let cas = match self.cas.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let routing = routing(&config, &cas, &self.store, &self.clock)?;
        crate::reload_log_level(&config.log_level)
            .map_err(anyhow::Error::msg)
            .context("log_level")?;
        self.service
            .reconfigure(routing.default_label, routing.labels, routing.ra);
        if format!("{:?}", self.running.monitoring) != format!("{:?}", config.monitoring) {
            self.monitoring
                .send_replace(Arc::new(crate::monitor_cmd::settings_of(&config)));
        }
        let restart = restart_needed(&self.running, &config);
        self.running = config;
        Ok(restart)
    }

    /// Reloads on every SIGHUP until `stop`.
    #[cfg(unix)]
    pub async fn on_sighup(
        mut self,
        mut hup: tokio::signal::unix::Signal,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                received = hup.recv() => {
                    if received.is_none() {
                        break;
                    }
                    let file = self.config_file.display().to_string();
                    match self.reload() {
                        Ok(restart) if restart.is_empty() => tracing::info!(
                            file,
                            "SIGHUP: configuration reloaded (profiles, rules, labels, connectors, monitoring, log level)"
                        ),
                        Ok(restart) => tracing::warn!(
                            file,
                            needs_restart = %restart.join(", "),
                            "SIGHUP: configuration reloaded (profiles, rules, labels, connectors, monitoring, log level); the other changed settings take effect only after a restart"
                        ),
                        Err(e) => tracing::error!(
                            file,
                            error = %format!("{e:#}"),
                            "SIGHUP: configuration reload refused; the running configuration is kept"
                        ),
                    }
                }
            }
        }
    }
}
