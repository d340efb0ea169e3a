//! Configuration: raw TOML (unknown keys refused) → validated [`Config`]. Relative paths
//! are resolved against the configuration file's directory. `FLEETCA_*` environment
//! variables override a few operational settings (see `apply_env`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use fleetca_pki::{
    BirthReenrollment, CertificateProfile, CustomRule, KeyAlgorithm, ProfileRules, RateLimit,
    SubjectAttribute,
};
use serde::Deserialize;
use toml::Spanned;

use crate::keys::{KeyRef, Pkcs11Settings};
use fleetca_pki::HumanDuration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    database: RawDatabase,
    ca: RawCa,
    est: RawEst,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    logging: RawLogging,
    publication: Option<RawPublication>,
    #[serde(default)]
    revocation: RawRevocation,
    monitoring: Option<fleetca_monitor::RawMonitoring>,
    /// External device directories (CMDB, files, SQL), by name; profiles list the ones
    /// they consult (docs/connectors.md).
    #[serde(default)]
    connectors: BTreeMap<String, fleetca_connectors::ConnectorConfig>,
    pkcs11: Option<RawPkcs11>,
    admin: Option<crate::config_admin::RawAdmin>,
    cmp: Option<crate::config_cmp::RawCmp>,
    scep: Option<crate::config_scep::RawScep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPkcs11 {
    module: PathBuf,
    token: String,
    pin_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublication {
    listen: String,
    base_url: String,
    #[serde(default = "d7d")]
    crl_validity: HumanDuration,
    #[serde(default = "d1d")]
    crl_refresh: HumanDuration,
    #[serde(default = "d1h")]
    ocsp_validity: HumanDuration,
    #[serde(default = "d30m")]
    ocsp_refresh: HumanDuration,
    #[serde(default = "d30d")]
    ocsp_responder_validity: HumanDuration,
    #[serde(default = "d10s")]
    header_timeout: HumanDuration,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_max_per_source")]
    max_connections_per_source: usize,
    #[serde(default = "default_accept_rate")]
    accept_rate_per_source: u32,
    #[serde(default = "d5s")]
    first_byte_timeout: HumanDuration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    revoke_superseded_after: Option<String>,
}

fn d7d() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(7 * 86_400))
}
fn d1d() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(86_400))
}
fn d1h() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}
fn d30m() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1800))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    tls_certificate: PathBuf,
    tls_key: PathBuf,
    #[serde(default)]
    server_names: Vec<String>,
    #[serde(default = "d10s")]
    handshake_timeout: HumanDuration,
    #[serde(default = "d10s")]
    header_timeout: HumanDuration,
    #[serde(default = "d30s")]
    body_timeout: HumanDuration,
    #[serde(default = "d5m")]
    max_connection_lifetime: HumanDuration,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_max_per_source")]
    max_connections_per_source: usize,
    #[serde(default = "default_accept_rate")]
    accept_rate_per_source: u32,
    #[serde(default = "d5s")]
    first_byte_timeout: HumanDuration,
    #[serde(default = "default_max_header")]
    max_header_bytes: usize,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "d30d")]
    renew_tls_certificate_before: HumanDuration,
    /// TLS key-exchange groups the EST listener offers (default: aws-lc-rs's, the hybrid
    /// X25519MLKEM768 first).
    #[serde(default)]
    key_exchange_groups: Option<Vec<String>>,
}

/// Validates `server.key_exchange_groups`: known names, at least one, none twice.
fn key_exchange_groups(names: Option<Vec<String>>) -> anyhow::Result<Vec<String>> {
    let Some(names) = names else {
        return Ok(Vec::new());
    };
    if names.is_empty() {
        bail!(
            "server.key_exchange_groups is empty: name at least one of {} (or leave it out for the default)",
            fleetca_est::KEY_EXCHANGE_GROUPS.join(", ")
        );
    }
    for (i, name) in names.iter().enumerate() {
        if fleetca_est::key_exchange_group(name).is_none() {
            bail!(
                "server.key_exchange_groups: unknown group '{}' (known: {})",
                fleetca_pki::escape_controls(name),
                fleetca_est::KEY_EXCHANGE_GROUPS.join(", ")
            );
        }
        if names.iter().take(i).any(|n| n == name) {
            bail!("server.key_exchange_groups names '{name}' twice");
        }
    }
    Ok(names)
}

fn d5s() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn d10s() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}
fn d30s() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn d5m() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}
fn d30d() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30 * 86_400))
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_per_source() -> usize {
    64
}
fn default_accept_rate() -> u32 {
    100
}
fn default_max_header() -> usize {
    32 * 1024
}
fn default_max_body() -> usize {
    64 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    path: Option<String>,
    url: Option<String>,
    pool_size: Option<usize>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    organization: String,
    root_certificate: PathBuf,
    manufacturing_certificate: PathBuf,
    manufacturing_key: PathBuf,
    operational_certificate: PathBuf,
    operational_key: PathBuf,
    manufacturer_cas: PathBuf,
    #[serde(default = "default_registration_certificate")]
    registration_certificate: PathBuf,
    #[serde(default = "default_registration_key")]
    registration_key: PathBuf,
    root_key: Option<PathBuf>,
}

fn default_registration_certificate() -> PathBuf {
    PathBuf::from("pki/registration-ca.pem")
}
fn default_registration_key() -> PathBuf {
    PathBuf::from("pki/registration-ca.key")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEst {
    profile: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    issuer: String,
    validity: HumanDuration,
    #[serde(default = "d5m")]
    backdate: HumanDuration,
    key_usage: Vec<String>,
    extended_key_usage: Vec<String>,
    allowed_keys: Vec<String>,
    subject: Vec<RawSubjectAttribute>,
    #[serde(default)]
    subject_alt_names: Vec<String>,
    #[serde(default)]
    allow_key_reuse: bool,
    #[serde(default)]
    require_channel_binding: bool,
    #[serde(default)]
    no_expiry: bool,
    #[serde(default)]
    server_keygen: bool,
    #[serde(default)]
    renew_from: Vec<String>,
    #[serde(default)]
    enroll_from: Vec<String>,
    birth_reenrollment: Option<String>,
    max_active_certificates: Option<u32>,
    reenroll_after: Option<f64>,
    serial_pattern: Option<String>,
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    connectors: Vec<String>,
    manual_approval: Option<Spanned<String>>,
    approval_retry_after: Option<HumanDuration>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    max: u32,
    per: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    expression: Spanned<String>,
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubjectAttribute {
    attribute: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    level: Option<String>,
    format: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where and how certificate status is published.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Plain-HTTP listen address for CRLs and OCSP.
    pub listen: SocketAddr,
    /// Base URL written into certificates (`{base_url}/crl/<ca>.crl`, `{base_url}/ocsp`).
    pub base_url: String,
    pub crl_validity: time::Duration,
    pub crl_refresh: time::Duration,
    pub ocsp_validity: time::Duration,
    pub ocsp_refresh: time::Duration,
    pub ocsp_responder_validity: time::Duration,
    /// Time allowed for a request's headers (also closes idle keep-alive connections).
    pub header_timeout: std::time::Duration,
    /// Connection caps, per-source accept rate and first-byte deadline of the listener.
    pub admission: fleetca_listener::AdmissionLimits,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Inventory connectors as configured; [`Config::connectors`] builds them.
    pub connector_configs: BTreeMap<String, fleetca_connectors::ConnectorConfig>,
    /// The configuration file's directory (connector paths are relative to it).
    pub base_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls_certificate: PathBuf,
    pub tls_key: PathBuf,
    pub server_names: Vec<String>,
    pub handshake_timeout: std::time::Duration,
    pub header_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    pub max_connection_lifetime: std::time::Duration,
    /// Connection caps, per-source accept rate and first-byte deadline of the EST listener.
    pub admission: fleetca_listener::AdmissionLimits,
    /// Most bytes of a request head (hyper's read buffer).
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub renew_tls_certificate_before: time::Duration,
    /// `server.key_exchange_groups`, validated names (empty: the TLS library's default).
    pub key_exchange_groups: Vec<String>,
    /// SQLite file or PostgreSQL URL (`Debug` never shows a password).
    pub database: fleetca_store::Database,
    pub organization: String,
    pub root_certificate: PathBuf,
    pub manufacturing_certificate: PathBuf,
    pub manufacturing_key: KeyRef,
    pub operational_certificate: PathBuf,
    pub operational_key: KeyRef,
    pub manufacturer_cas: PathBuf,
    pub registration_certificate: PathBuf,
    pub registration_key: KeyRef,
    /// The root CA key: needed only to create the registration CA of an older data
    /// directory (default: next to the root certificate, `.key`).
    pub root_key: KeyRef,
    pub est_profile: String,
    pub est_labels: BTreeMap<String, String>,
    pub profiles: HashMap<String, CertificateProfile>,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `None`: no CRL/OCSP listener and no URLs in certificates.
    pub publication: Option<Publication>,
    /// Revoke a renewed certificate as superseded this long after its renewal.
    pub revoke_superseded_after: Option<time::Duration>,
    /// `[monitoring]`; `None` when the section is absent (metrics only).
    pub monitoring: Option<fleetca_monitor::MonitorSettings>,
    /// `[pkcs11]`: the token that holds the keys referred to as `pkcs11:<label>`.
    pub pkcs11: Option<Pkcs11Settings>,
    /// `[admin]`: the admin API (defaults when the section is absent).
    pub admin: crate::config_admin::AdminSettings,
    /// `[cmp]`: the CMP front end (off when the section is absent).
    pub cmp: crate::config_cmp::CmpConfig,
    /// `[scep]`: SCEP (issue 20); `None` when the section is absent or disabled.
    pub scep: Option<crate::config_scep::ScepConfig>,
}

impl Config {
    /// Builds the configured connectors (reads their token, certificate and device files).
    pub fn connectors(&self) -> anyhow::Result<HashMap<String, fleetca_ra::Connector>> {
        self.connector_configs
            .iter()
            .map(|(name, c)| Ok((name.clone(), c.build(name, &self.base_dir)?)))
            .collect()
    }

    /// Things an operator should know about this configuration that are not errors (a
    /// key usage left out for some key algorithms, a host name the requester chooses), one
    /// sentence each, sorted. `serve --check-config` prints them; `serve` logs them.
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self
            .profiles
            .iter()
            .flat_map(|(name, p)| {
                p.notes()
                    .into_iter()
                    .map(move |n| format!("profile '{name}': {n}"))
            })
            .collect();
        notes.extend(self.tier_notes());
        notes.sort();
        notes
    }

    /// Expiry tiers wider than the time a healthy device leaves on its certificate when it
    /// renews (a third of the lifetime, with the agent's default renewal at two thirds):
    /// such a tier fires and resolves on every healthy renewal of that profile.
    fn tier_notes(&self) -> Vec<String> {
        let Some(monitoring) = &self.monitoring else {
            return Vec::new();
        };
        let mut notes = Vec::new();
        for (name, profile) in &self.profiles {
            if profile.no_expiry || profile.issuer != "operational" {
                continue;
            }
            let left_at_renewal = profile.validity / 3;
            for tier in &monitoring.tiers {
                // Just before a healthy renewal a third of the lifetime remains.
                if tier.before.contains(left_at_renewal, profile.validity)
                    && left_at_renewal > time::Duration::ZERO
                {
                    notes.push(format!(
                        "monitoring tier '{}' (before = {}) is wider than a third of profile '{name}''s validity ({}s): a device renewing at two thirds of the lifetime (the agent's default) enters it on every healthy renewal; give that profile longer certificates or use narrower tiers (a share of the lifetime such as before = \"20%\" fits every certificate length)",
                        tier.name,
                        tier.before,
                        profile.validity.whole_seconds()
                    ));
                }
            }
        }
        notes
    }

    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fragments = crate::config_fragments::list(path)?;
        if fragments.is_empty() {
            return Self::parse(&text, base)
                .with_context(|| format!("invalid configuration {}", path.display()));
        }
        let name = |f: &Path| crate::config_fragments::display_name(path, f);
        let mut texts = Vec::new();
        for fragment in &fragments {
            let text = std::fs::read_to_string(fragment)
                .with_context(|| format!("cannot read configuration {}", fragment.display()))?;
            texts.push((name(fragment), text));
        }
        let merged = crate::config_fragments::merge(&name(path), &text, &texts)
            .with_context(|| format!("invalid configuration {}", path.display()))?;
        Self::parse(&merged, base).with_context(|| {
            // Which file brings the error in: merge one fragment more at a time.
            let fails = |k: usize| {
                let fragments = texts.get(..k).unwrap_or_default();
                crate::config_fragments::merge(&name(path), &text, fragments)
                    .and_then(|m| Self::parse(&m, base).map(drop))
                    .is_err()
            };
            let culprit = (0..=texts.len())
                .find(|&k| fails(k))
                .and_then(|k| k.checked_sub(1))
                .and_then(|k| texts.get(k))
                .map_or_else(|| name(path), |(n, _)| n.clone());
            format!(
                "invalid configuration {} with conf.d/ merged in: the error comes with {culprit} \
                 (line numbers count in the merged text)",
                path.display()
            )
        })
    }

    /// Parses and validates configuration text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<Self> {
        let raw: RawConfig = toml::from_str(text)?;
        let mut config = Self::validate(raw, base, text)?;
        config.apply_env()?;
        Ok(config)
    }

    fn validate(raw: RawConfig, base: &Path, text: &str) -> anyhow::Result<Self> {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let listen = raw.server.listen.parse().with_context(|| {
            format!(
                "server.listen '{}' is not an address:port",
                raw.server.listen
            )
        })?;
        if raw.server.max_body_bytes < 1024 || raw.server.max_body_bytes > 16 * 1024 * 1024 {
            bail!("server.max_body_bytes must be between 1024 and 16777216");
        }
        let admission = admission(
            "server",
            &raw.server.max_connections,
            raw.server.max_connections_per_source,
            raw.server.accept_rate_per_source,
            raw.server.first_byte_timeout.0,
        )?;
        if !(8 * 1024..=1024 * 1024).contains(&raw.server.max_header_bytes) {
            bail!("server.max_header_bytes must be between 8192 and 1048576");
        }
        for name in raw.connectors.keys() {
            // `device.serial` and `device.status` are fleetca's own; a connector's record
            // is `device.<name>`.
            if matches!(name.as_str(), "serial" | "status")
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.starts_with(|c: char| c.is_ascii_digit())
            {
                bail!("connector name '{name}' must be an identifier (letters, digits, _) other than 'serial' and 'status'");
            }
        }
        let mut profiles = HashMap::new();
        for (name, p) in raw.profiles {
            let profile = profile(&name, p, text).with_context(|| format!("profile '{name}'"))?;
            if let Some(missing) = profile
                .rules
                .connectors
                .iter()
                .find(|c| !raw.connectors.contains_key(*c))
            {
                bail!("profile '{name}': connector '{missing}' is not configured (add [connectors.{missing}])");
            }
            profiles.insert(name, profile);
        }
        for p in profiles.values() {
            if let Some(unknown) = p
                .rules
                .enroll_from
                .iter()
                .find(|n| !profiles.contains_key(*n))
            {
                bail!(
                    "profile '{}': enroll_from names profile '{unknown}', which is not defined",
                    p.name
                );
            }
            if let Some(unknown) = p.renew_from.iter().find(|n| !profiles.contains_key(*n)) {
                bail!(
                    "profile '{}': renew_from names profile '{unknown}', which is not defined",
                    p.name
                );
            }
        }
        for (what, name) in std::iter::once(("est.profile", &raw.est.profile))
            .chain(raw.est.labels.values().map(|p| ("est.labels", p)))
        {
            if !profiles.contains_key(name) {
                bail!("{what} names profile '{name}', which is not defined under [profiles]");
            }
        }
        for label in raw.est.labels.keys() {
            let valid = !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid || is_est_operation(label) {
                bail!("est.labels: '{label}' is not a usable label (letters, digits, '-', '_'; not an EST operation name)");
            }
        }
        let (log_level, log_format) = logging(raw.logging)?;
        let publication = raw.publication.map(publication).transpose()?;
        let admin = raw
            .admin
            .map(crate::config_admin::admin)
            .transpose()?
            .unwrap_or_default();
        let cmp = raw
            .cmp
            .map(crate::config_cmp::cmp)
            .transpose()?
            .unwrap_or_default();
        let scep = raw
            .scep
            .map(|s| crate::config_scep::scep(s, |name| profiles.contains_key(name)))
            .transpose()?
            .flatten();
        let revoke_superseded_after = match raw.revocation.revoke_superseded_after.as_deref() {
            None | Some("off") => None,
            Some(d) => Some(
                d.parse::<HumanDuration>()
                    .map_err(|e| {
                        anyhow::anyhow!("revocation.revoke_superseded_after: {e} (or \"off\")")
                    })?
                    .to_time(),
            ),
        };
        let monitoring = raw.monitoring.map(|m| m.validate(base)).transpose()?;
        let pkcs11 = raw.pkcs11.map(|p| Pkcs11Settings {
            module: p.module,
            token: p.token,
            pin_file: resolve(&p.pin_file),
        });
        if let Some(p) = &pkcs11 {
            if !p.module.is_absolute() {
                bail!(
                    "pkcs11.module '{}' must be an absolute path",
                    p.module.display()
                );
            }
            if p.token.trim().is_empty() {
                bail!("pkcs11.token must name the token (its label)");
            }
        }
        let root_certificate = resolve(&raw.ca.root_certificate);
        let key = |what: &str, path: &Path| -> anyhow::Result<KeyRef> {
            let key = KeyRef::parse(path, base);
            if matches!(key, KeyRef::Pkcs11 { .. }) && pkcs11.is_none() {
                bail!(
                    "ca.{what} = \"{}\" names a PKCS#11 key, but there is no [pkcs11] section (module, token, pin_file)",
                    path.display()
                );
            }
            if let KeyRef::Pkcs11 { label } = &key {
                if label.is_empty() {
                    bail!("ca.{what}: \"pkcs11:\" must be followed by the key label");
                }
            }
            Ok(key)
        };
        let root_key = match &raw.ca.root_key {
            Some(p) => key("root_key", p)?,
            None => KeyRef::File(root_certificate.with_extension("key")),
        };
        Ok(Self {
            connector_configs: raw.connectors,
            base_dir: base.to_path_buf(),
            listen,
            tls_certificate: resolve(&raw.server.tls_certificate),
            tls_key: resolve(&raw.server.tls_key),
            server_names: raw.server.server_names,
            handshake_timeout: raw.server.handshake_timeout.0,
            header_timeout: raw.server.header_timeout.0,
            body_timeout: raw.server.body_timeout.0,
            max_connection_lifetime: raw.server.max_connection_lifetime.0,
            admission,
            max_header_bytes: raw.server.max_header_bytes,
            max_body_bytes: raw.server.max_body_bytes,
            renew_tls_certificate_before: raw.server.renew_tls_certificate_before.to_time(),
            key_exchange_groups: key_exchange_groups(raw.server.key_exchange_groups)?,
            database: database(raw.database, base)?,
            organization: raw.ca.organization,
            root_certificate,
            manufacturing_certificate: resolve(&raw.ca.manufacturing_certificate),
            manufacturing_key: key("manufacturing_key", &raw.ca.manufacturing_key)?,
            operational_certificate: resolve(&raw.ca.operational_certificate),
            operational_key: key("operational_key", &raw.ca.operational_key)?,
            manufacturer_cas: resolve(&raw.ca.manufacturer_cas),
            registration_certificate: resolve(&raw.ca.registration_certificate),
            registration_key: key("registration_key", &raw.ca.registration_key)?,
            root_key,
            est_profile: raw.est.profile,
            est_labels: raw.est.labels,
            profiles,
            log_level,
            log_format,
            publication,
            revoke_superseded_after,
            monitoring,
            pkcs11,
            admin,
            cmp,
            scep,
        })
    }

    /// `FLEETCA_LISTEN`, `FLEETCA_LOG_LEVEL` and `FLEETCA_LOG_FORMAT` override the file.
    fn apply_env(&mut self) -> anyhow::Result<()> {
        if let Ok(listen) = std::env::var("FLEETCA_LISTEN") {
            self.listen = listen
                .parse()
                .with_context(|| format!("FLEETCA_LISTEN '{listen}' is not an address:port"))?;
        }
        if let Ok(url) = std::env::var("FLEETCA_DATABASE_URL") {
            // The message never quotes the URL: it may hold a password.
            // The file's PostgreSQL settings (pool size, TLS) stay.
            let replaced = match &self.database {
                fleetca_store::Database::Postgres(configured) => configured.with_url(&url),
                fleetca_store::Database::Sqlite(_) => fleetca_store::PostgresUrl::parse(&url),
            };
            self.database = fleetca_store::Database::Postgres(
                replaced.map_err(|e| anyhow::anyhow!("FLEETCA_DATABASE_URL: {e}"))?,
            );
        }
        if let Ok(level) = std::env::var("FLEETCA_LOG_LEVEL") {
            self.log_level = level;
        }
        if let Ok(format) = std::env::var("FLEETCA_LOG_FORMAT") {
            self.log_format = parse_log_format(&format)?;
        }
        Ok(())
    }

    /// The profile `name` (validated to exist).
    pub fn profile(&self, name: &str) -> anyhow::Result<&CertificateProfile> {
        self.profiles
            .get(name)
            .with_context(|| format!("profile '{name}' is not defined under [profiles]"))
    }
}

/// `[database]`: `path` (SQLite) or `url` (PostgreSQL), not both; `pool_size` with `url`.
fn database(raw: RawDatabase, base: &Path) -> anyhow::Result<fleetca_store::Database> {
    use fleetca_store::Database;
    if raw.url.is_none() && raw.ca_file.is_some() {
        bail!("[database] ca_file applies to PostgreSQL (`url`) only");
    }
    if let Some(n) = raw.pool_size {
        if raw.url.is_none() {
            bail!("[database] pool_size applies to PostgreSQL (`url`) only");
        }
        if !(1..=1000).contains(&n) {
            bail!("[database] pool_size must be 1 to 1000 connections, not {n}");
        }
    }
    match (raw.path, raw.url) {
        (Some(_), Some(_)) => {
            bail!("[database]: set either `path` (SQLite) or `url` (PostgreSQL), not both")
        }
        (None, None) => bail!("[database]: set `path` (SQLite file) or `url` (postgres://...)"),
        (Some(path), None) => Ok(Database::parse(&path, base)?),
        (None, Some(url)) => match Database::parse(&url, base) {
            Ok(Database::Postgres(url)) => {
                let url = match raw.pool_size {
                    Some(n) => url.with_pool_size(n),
                    None => url,
                };
                Ok(Database::Postgres(match raw.ca_file {
                    Some(file) => {
                        let path = base.join(&file);
                        let pem = std::fs::read(&path)
                            .with_context(|| format!("[database] ca_file {}", path.display()))?;
                        url.with_tls_roots(&pem).map_err(|e| {
                            anyhow::anyhow!("[database] ca_file {}: {e}", path.display())
                        })?
                    }
                    None => url,
                }))
            }
            Ok(_) => bail!("[database] url must start with postgres:// or postgresql://"),
            Err(e) => Err(anyhow::anyhow!("[database] url: {e}")),
        },
    }
}

fn publication(raw: RawPublication) -> anyhow::Result<Publication> {
    let listen = raw
        .listen
        .parse()
        .with_context(|| format!("publication.listen '{}' is not an address:port", raw.listen))?;
    let base_url = raw.base_url.trim_end_matches('/').to_string();
    let rest = base_url.strip_prefix("http://").with_context(|| {
        format!(
            "publication.base_url '{}' must be an http:// URL (CRL and OCSP clients fetch status over plain HTTP)",
            raw.base_url
        )
    })?;
    if rest.is_empty() || !rest.is_ascii() || rest.contains(|c: char| c.is_ascii_whitespace()) {
        bail!("publication.base_url '{}' has no usable host", raw.base_url);
    }
    if raw.crl_refresh.0 >= raw.crl_validity.0 {
        bail!("publication.crl_refresh must be shorter than crl_validity");
    }
    if raw.ocsp_refresh.0 >= raw.ocsp_validity.0 {
        bail!("publication.ocsp_refresh must be shorter than ocsp_validity");
    }
    if raw.ocsp_responder_validity.0 < std::time::Duration::from_secs(86_400) {
        bail!("publication.ocsp_responder_validity must be at least 1d");
    }
    let admission = admission(
        "publication",
        &raw.max_connections,
        raw.max_connections_per_source,
        raw.accept_rate_per_source,
        raw.first_byte_timeout.0,
    )?;
    Ok(Publication {
        listen,
        base_url,
        crl_validity: raw.crl_validity.to_time(),
        crl_refresh: raw.crl_refresh.to_time(),
        ocsp_validity: raw.ocsp_validity.to_time(),
        ocsp_refresh: raw.ocsp_refresh.to_time(),
        ocsp_responder_validity: raw.ocsp_responder_validity.to_time(),
        header_timeout: raw.header_timeout.0,
        admission,
    })
}

/// A listener's admission limits, checked.
pub(crate) fn admission(
    section: &str,
    max_connections: &usize,
    max_connections_per_source: usize,
    accept_rate_per_source: u32,
    first_byte_timeout: std::time::Duration,
) -> anyhow::Result<fleetca_listener::AdmissionLimits> {
    if *max_connections == 0 {
        bail!("{section}.max_connections must be at least 1");
    }
    if max_connections_per_source > *max_connections {
        bail!("{section}.max_connections_per_source ({max_connections_per_source}) must not exceed {section}.max_connections ({max_connections}); 0 turns it off");
    }
    if first_byte_timeout.is_zero() {
        bail!("{section}.first_byte_timeout must be more than 0s");
    }
    Ok(fleetca_listener::AdmissionLimits {
        max_connections: *max_connections,
        max_connections_per_source,
        accept_rate_per_source,
        first_byte_timeout,
    })
}

fn is_est_operation(s: &str) -> bool {
    matches!(
        s,
        "cacerts" | "csrattrs" | "simpleenroll" | "simplereenroll" | "serverkeygen" | "fullcmc"
    )
}

fn parse_log_format(s: &str) -> anyhow::Result<LogFormat> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => bail!("logging.format '{other}' must be \"text\" or \"json\""),
    }
}

fn logging(raw: RawLogging) -> anyhow::Result<(String, LogFormat)> {
    let level = raw.level.unwrap_or_else(|| "info".into());
    tracing_subscriber::EnvFilter::try_new(&level)
        .with_context(|| format!("logging.level '{level}' is not a valid filter"))?;
    let format = parse_log_format(raw.format.as_deref().unwrap_or("text"))?;
    Ok((level, format))
}

fn profile(name: &str, raw: RawProfile, text: &str) -> anyhow::Result<CertificateProfile> {
    let key_usages = raw
        .key_usage
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    let extended_key_usages = raw
        .extended_key_usage
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    let allowed_keys = raw
        .allowed_keys
        .iter()
        .map(|s| s.parse::<KeyAlgorithm>())
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    let subject = raw
        .subject
        .iter()
        .map(|a| SubjectAttribute::new(&a.attribute, &a.value))
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    let rules = profile_rules(
        RuleSettings {
            max_active_certificates: raw.max_active_certificates,
            reenroll_after: raw.reenroll_after,
            serial_pattern: raw.serial_pattern,
            rate_limit: raw.rate_limit,
            connectors: raw.connectors,
            manual_approval: raw.manual_approval,
            approval_retry_after: raw.approval_retry_after,
            enroll_from: raw.enroll_from,
            birth_reenrollment: raw.birth_reenrollment,
        },
        raw.rules,
        text,
    )?;
    if !matches!(raw.issuer.as_str(), "operational" | "manufacturing") {
        bail!(
            "issuer '{}' must be \"operational\" or \"manufacturing\"",
            raw.issuer
        );
    }
    let p = CertificateProfile {
        name: name.to_string(),
        issuer: raw.issuer,
        validity: raw.validity.to_time(),
        backdate: raw.backdate.to_time(),
        key_usages,
        extended_key_usages,
        allowed_keys,
        subject,
        subject_alt_names: raw.subject_alt_names,
        allow_key_reuse: raw.allow_key_reuse,
        require_channel_binding: raw.require_channel_binding,
        no_expiry: raw.no_expiry,
        server_keygen: raw.server_keygen,
        renew_from: raw.renew_from,
        rules,
    };
    p.validate()
        .map_err(|problems| anyhow::anyhow!(problems.join("; ")))?;
    Ok(p)
}

/// A profile's rule settings, as written.
struct RuleSettings {
    max_active_certificates: Option<u32>,
    reenroll_after: Option<f64>,
    serial_pattern: Option<String>,
    rate_limit: Option<RawRateLimit>,
    connectors: Vec<String>,
    manual_approval: Option<Spanned<String>>,
    approval_retry_after: Option<HumanDuration>,
    enroll_from: Vec<String>,
    birth_reenrollment: Option<String>,
}

/// The line (1-based) of a byte offset in the configuration text.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

/// Compiles a CEL expression from the configuration; the error names its line.
fn compile_at(
    expression: &Spanned<String>,
    text: &str,
    what: &str,
    connectors: &[String],
) -> anyhow::Result<()> {
    fleetca_ra::compile_rule(expression.get_ref(), connectors).map_err(|e| {
        anyhow::anyhow!(
            "{what} (line {}): {e}",
            line_of(text, expression.span().start)
        )
    })
}

/// The profile's configured rules, validated; every CEL expression is compiled now so that a
/// bad one stops start-up (and `--check-config`) rather than denying devices later.
fn profile_rules(
    settings: RuleSettings,
    raw: Vec<RawRule>,
    text: &str,
) -> anyhow::Result<ProfileRules> {
    let RuleSettings {
        max_active_certificates,
        reenroll_after,
        serial_pattern,
        rate_limit,
        connectors,
        manual_approval,
        approval_retry_after,
        enroll_from,
        birth_reenrollment,
    } = settings;
    let birth_reenrollment = match birth_reenrollment.as_deref() {
        None => BirthReenrollment::default(),
        Some(name) => BirthReenrollment::from_name(name).with_context(|| {
            format!("birth_reenrollment must be \"needs-operator\" or \"within-limits\", not \"{name}\"")
        })?,
    };
    if max_active_certificates == Some(0) {
        bail!("max_active_certificates must be at least 1");
    }
    let reenroll_after_permille = match reenroll_after {
        None => None,
        Some(f) if f > 0.0 && f < 1.0 => {
            // In (0, 1), so the rounded value is in 0..=1000: the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let permille = (f * 1000.0).round() as u16;
            Some(permille)
        }
        Some(f) => bail!("reenroll_after must be a fraction between 0 and 1 (e.g. 0.66), not {f}"),
    };
    if let Some(pattern) = &serial_pattern {
        regex::Regex::new(pattern).map_err(|e| {
            anyhow::anyhow!("serial_pattern is not a valid regular expression: {e}")
        })?;
    }
    let rate_limit = match rate_limit {
        None => None,
        Some(r) if r.max == 0 || r.per.0.is_zero() => {
            bail!("rate_limit needs max of at least 1 and a non-zero per (e.g. {{ max = 3, per = \"1d\" }})")
        }
        Some(r) => Some(RateLimit {
            max: r.max,
            per: r.per.to_time(),
        }),
    };
    for (i, c) in connectors.iter().enumerate() {
        if connectors.get(..i).is_some_and(|before| before.contains(c)) {
            bail!("connector '{c}' is listed twice");
        }
    }
    if let Some(expression) = &manual_approval {
        compile_at(expression, text, "manual_approval", &connectors)?;
    }
    let mut custom: Vec<CustomRule> = Vec::new();
    for r in raw {
        if r.name.trim().is_empty() {
            bail!("a rule needs a name");
        }
        if custom.iter().any(|c| c.name == r.name) {
            bail!("rule '{}' is defined twice", r.name);
        }
        if r.message.trim().is_empty() {
            bail!("rule '{}' needs a message (the denial reason)", r.name);
        }
        compile_at(
            &r.expression,
            text,
            &format!("rule '{}'", r.name),
            &connectors,
        )?;
        custom.push(CustomRule {
            name: r.name,
            expression: r.expression.into_inner(),
            message: r.message,
        });
    }
    Ok(ProfileRules {
        max_active_certificates,
        reenroll_after_permille,
        custom,
        serial_pattern,
        rate_limit,
        connectors,
        manual_approval: manual_approval.map(Spanned::into_inner),
        approval_retry_after: approval_retry_after.map(HumanDuration::to_time),
        enroll_from,
        birth_reenrollment,
    })
}

/// [`default_config_text`] for a PKI whose CA keys are in a PKCS#11 token: the `[pkcs11]`
/// section filled in and every CA key setting naming its token label.
pub fn pkcs11_config_text(default_text: &str, pkcs11: &Pkcs11Settings) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut text = default_text.to_string();
    for role in ["manufacturing", "operational", "registration"] {
        text = text.replace(
            &format!("{role}_key = \"pki/{role}-ca.key\""),
            &format!(
                "{role}_key = \"pkcs11:{}\"",
                crate::keys::ca_key_label(role)
            ),
        );
    }
    text.replace(
        "# root_key = \"pki/root-ca.key\"",
        &format!(
            "root_key = \"pkcs11:{}\"",
            crate::keys::ca_key_label("root")
        ),
    )
    .replace("# [pkcs11]\n", "[pkcs11]\n")
    .replace(
        "# module = \"/usr/lib/softhsm/libsofthsm2.so\"",
        &format!("module = {}", quote(&pkcs11.module.to_string_lossy())),
    )
    .replace(
        "# token = \"fleetca\"",
        &format!("token = {}", quote(&pkcs11.token)),
    )
    .replace(
        "# pin_file = \"/etc/fleetca/pkcs11-pin\"",
        &format!("pin_file = {}", quote(&pkcs11.pin_file.to_string_lossy())),
    )
}

/// The commented configuration `fleetca init` writes. Every setting is here, with its
/// default; tests load this exact text.
pub fn default_config_text(
    organization: &str,
    server_names: &[String],
    listen: &str,
    status_listen: &str,
) -> String {
    let names: Vec<String> = server_names.iter().map(|n| format!("{n:?}")).collect();
    let names = names.join(", ");
    let org = toml::Value::String(organization.to_string()).to_string();
    format!(
        r#"# fleetca configuration, written by `fleetca init`.
# Relative paths are relative to the directory of this file. Every conf.d/*.toml next to
# it is merged in, in lexical order (a setting may be in one file only; README,
# "Configuration fragments").
# Environment overrides: FLEETCA_LISTEN, FLEETCA_LOG_LEVEL, FLEETCA_LOG_FORMAT.
# Check a change without starting: fleetca serve --check-config

[server]
# Address:port of the EST server (HTTPS). `--listen` overrides it.
listen = "{listen}"
# The server's TLS certificate chain (server, operational CA) and its PKCS#8 key.
tls_certificate = "pki/server.pem"
tls_key = "pki/server.key"
# Extra DNS names or IP addresses in the server certificate (besides localhost,
# 127.0.0.1 and ::1); used when the certificate is renewed.
server_names = [{names}]
# Reissue the server certificate at start-up when it expires within this time.
renew_tls_certificate_before = "30d"
# Time allowed for a TLS handshake, for request headers (also closes idle keep-alive
# connections), and for a request body. Durations take s, m, h or d.
handshake_timeout = "10s"
header_timeout = "10s"
body_timeout = "30s"
# Longest a single connection may stay open.
max_connection_lifetime = "5m"
# Connections served at once; more are closed at accept.
max_connections = 4096
# Connections open at once from one source (an IPv4 address, an IPv6 /64); more are
# closed at accept, so one client cannot take every connection. Behind a load balancer
# that does not keep client addresses every client is one source: set 0 (off) there and
# limit per client in the balancer (README, "Connection limits").
max_connections_per_source = 64
# New connections per second from one source (bursts up to twice that); more are closed
# at accept. 0 turns it off (e.g. for `fleetca bench` on the same host).
accept_rate_per_source = 100
# Time from accept to a connection's first bytes (the TLS ClientHello).
first_byte_timeout = "5s"
# Most bytes of a request head (request line and headers); a longer one gets 431.
max_header_bytes = 32768
# Largest request body accepted (bytes); larger ones get 413.
max_body_bytes = 65536
# TLS key-exchange groups offered, of X25519MLKEM768 (hybrid post-quantum), X25519,
# secp256r1, secp384r1. Default: all four, the hybrid last (a rustls client offers
# X25519 first, so it is used only by clients that prefer it). Among those enabled, the
# client's order decides; leave a group out to keep clients off it.
# key_exchange_groups = ["X25519", "secp256r1", "secp384r1", "X25519MLKEM768"]

[database]
# The embedded SQLite inventory (WAL mode; every certificate is committed before it is
# returned).
path = "fleetca.db"
# Or PostgreSQL, shared by any number of `fleetca serve` nodes (instead of `path`):
# url = "postgres://fleetca@db.example.com:5432/fleetca"
# FLEETCA_DATABASE_URL overrides both, so a password need not be written in this file.
# Connections each node keeps to PostgreSQL (default 8): about twice the database's
# cores divided among the nodes is a good start.
# pool_size = 8
# TLS to PostgreSQL: verify the server's certificate (and the URL's host name) against
# these CA certificates (PEM); every connection is then TLS, never plaintext.
# ca_file = "pki/postgres-ca.pem"

[ca]
# Organization (O) of the CA certificates.
organization = {org}
# Clients' trust anchor. Distribute this file to devices and relying parties.
root_certificate = "pki/root-ca.pem"
# Issues birth certificates (IDevID).
manufacturing_certificate = "pki/manufacturing-ca.pem"
manufacturing_key = "pki/manufacturing-ca.key"
# Issues operational certificates (LDevID) and the server certificate.
operational_certificate = "pki/operational-ca.pem"
operational_key = "pki/operational-ca.key"
# Directory of imported manufacturer CA certificates (PEM, one per file): birth
# certificates they issued are accepted for simpleenroll. `fleetca trust add-manufacturer`.
manufacturer_cas = "pki/manufacturers"
# Issues factory station credentials (`fleetca factory add-station`); its certificates
# authenticate birth enrollment only.
registration_certificate = "pki/registration-ca.pem"
registration_key = "pki/registration-ca.key"
# The root CA key, used only to create the registration CA of an older data directory
# (default: root_certificate with the extension .key). Move it offline after init.
# root_key = "pki/root-ca.key"
# A key setting may name a key in the PKCS#11 token of [pkcs11] instead of a file:
# operational_key = "pkcs11:operational-ca" (see docs/hsm.md).

[est]
# Profile served at /.well-known/est/ (no label).
profile = "operational"

# Labels: /.well-known/est/<label>/... serves the named profile. A label whose profile is
# issued by the manufacturing CA serves birth enrollment by factory stations.
[est.labels]
birth = "birth"
# sensors = "operational"

# Certificate profiles. The profile, not the CSR, decides the certificate: only the
# public key comes from the CSR. `{{serial}}` stands for the device serial number.
[profiles.operational]
# Issuing CA: "operational" or "manufacturing".
issuer = "operational"
validity = "90d"
# notBefore is set this far in the past to tolerate device clock skew.
backdate = "5m"
# keyUsage: digitalSignature, keyEncipherment, keyAgreement, contentCommitment. A bit
# that does not apply to the device's key is left out of its certificate: keyEncipherment
# is given to RSA keys only, keyAgreement to EC keys only (RFC 8813, RFC 8410);
# `serve --check-config` notes it.
key_usage = ["digitalSignature"]
# extendedKeyUsage: clientAuth, serverAuth.
extended_key_usage = ["clientAuth"]
# Key algorithms accepted in CSRs: p256, p384, ed25519, rsa2048, rsa3072, rsa4096.
# The first one is advertised by /csrattrs.
allowed_keys = ["p256", "p384", "ed25519", "rsa2048", "rsa3072", "rsa4096"]
# Subject, in order. Attributes: CN, serialNumber, O, OU, C, L, ST. serialNumber is
# required: it is the device identity (IEEE 802.1AR).
subject = [
  {{ attribute = "CN", value = "{{serial}}" }},
  {{ attribute = "serialNumber", value = "{{serial}}" }},
]
# subjectAltName entries: "DNS:..." or "URI:...", e.g. "URI:urn:dev:serial:{{serial}}".
subject_alt_names = []
# Allow simplereenroll to keep the current key (RFC 7030 allows it; default: new key).
allow_key_reuse = false
# Require the RFC 9266 tls-exporter value in the CSR challengePassword (TLS 1.3 only).
require_channel_binding = false
# notAfter = 99991231235959Z, "no well-defined expiration" (RFC 5280 4.1.2.5), as IEEE
# 802.1AR allows for birth certificates; validity is then ignored.
no_expiry = false
# Allow EST serverkeygen: the server generates the key and returns it once (never stored).
server_keygen = false
# simplereenroll keeps a device in the profile of its current certificate; list other
# profiles whose certificates may renew into this one (to move a fleet between labels).
renew_from = []
# A device is bound to the profile it first enrolled under; list other profiles whose
# devices may make a first enrollment under this one (renew_from counts too).
enroll_from = []
# A birth certificate enrolling again while the device has a live operational certificate:
# "needs-operator" (`fleetca device force-reenroll` first) or "within-limits" (the limits
# below decide). After a keyCompromise revocation it always needs the operator.
birth_reenrollment = "needs-operator"
# Rules the RA checks after its built-in ones (all optional; a denial names the rule).
# Deny when the device already has this many valid, unexpired operational certificates.
# Set by `init` so that a misbehaving device (a renewal loop, a cloned identity) is
# stopped by default: a healthy device renewing at two thirds of the lifetime holds at
# most 2 (3 leaves room for one retry after a lost answer). Remove it to disable.
max_active_certificates = 3
# simplereenroll only after this share of the current certificate's lifetime.
# reenroll_after = 0.66
# The device serial must match this regular expression (the whole serial).
# serial_pattern = "[A-Z]{{2}}-[0-9]{{6}}"
# At most this many certificates per device within the sliding window. Set by `init`:
# a healthy device asks for one per renewal (every 60 days with 90-day certificates);
# 10 a day leaves room for retries and an operator's force-reenroll. With certificates
# shorter than a few hours, raise it (a device renews about 1.5 times per lifetime).
rate_limit = {{ max = 10, per = "1d" }}
# External inventories ([connectors.<name>] below) consulted before issuing; a rule sees
# the record as device.<name> (null when the device is unknown to it).
# connectors = ["cmdb"]
# A CEL expression: when true, the request waits for `fleetca request approve` (EST 202).
# manual_approval = "device.cmdb == null"
# How long a device waits before polling a pending approval again (Retry-After).
# approval_retry_after = "60s"
# Custom rules: CEL expressions that must be true; compiled at start-up. Context:
# request.{{subject, serial_number, sans, key_algorithm, key_size, label, operation}},
# client.{{role, subject, serial, issuer, not_after}}, device.{{serial, status, <connector>}},
# now. Examples: examples/rules/ in the source tree.
# [[profiles.operational.rules]]
# name = "ec-keys-only"
# expression = 'request.key_algorithm in ["p256", "p384"]'
# message = "only P-256 and P-384 keys are accepted"

# Birth certificates (IDevID), for `fleetca device birth` and factory stations
# (/.well-known/est/birth/...).
[profiles.birth]
issuer = "manufacturing"
validity = "7305d"
backdate = "5m"
key_usage = ["digitalSignature"]
extended_key_usage = ["clientAuth"]
allowed_keys = ["p256", "p384", "ed25519", "rsa2048", "rsa3072", "rsa4096"]
subject = [
  {{ attribute = "CN", value = "{{serial}}" }},
  {{ attribute = "serialNumber", value = "{{serial}}" }},
]
subject_alt_names = []
allow_key_reuse = false
require_channel_binding = false
no_expiry = false
server_keygen = true

# Inventory connectors (docs/connectors.md): a CMDB over HTTP, a CSV/JSON file, a SQL
# query. A connector that cannot answer fails closed: 503 with Retry-After.
# [connectors.cmdb]
# kind = "http"
# url = "https://cmdb.example.com/api/devices/{{serial}}"
# bearer_token_file = "cmdb.token"
# timeout = "2s"
# cache_ttl = "60s"

# Certificate status for relying parties, over plain HTTP (CRLs and OCSP are signed).
# Remove this section to publish nothing and write no URLs into certificates.
[publication]
# Address of the CRL/OCSP listener. `fleetca serve --status-listen` overrides it.
listen = "{status_listen}"
# Base URL written into every certificate: {{base_url}}/crl/<ca>.crl as CRL distribution
# point, {{base_url}}/ocsp as OCSP responder (authority information access). Use the name
# relying parties reach; changing it affects only certificates issued afterwards.
base_url = "http://{status_listen}"
# CRL validity (nextUpdate - thisUpdate); CRLs are also rebuilt within a second or two of
# any revocation, and at least every crl_refresh.
crl_validity = "7d"
crl_refresh = "1d"
# OCSP answer validity, and when a cached answer is signed again.
ocsp_validity = "1h"
ocsp_refresh = "30m"
# Lifetime of the delegated OCSP signing certificates fleetca issues itself (renewed at
# start-up once two thirds of it have passed).
ocsp_responder_validity = "30d"
# Connection limits of this listener, as in [server]: time for a request's headers,
# connections at once, per source (0: off, e.g. behind an HTTP cache or CDN that is the
# only source), new connections per second per source (0: off), time to the first bytes.
header_timeout = "10s"
max_connections = 4096
max_connections_per_source = 64
accept_rate_per_source = 100
first_byte_timeout = "5s"

# The admin API (README, "Admin API"): HTTPS with the server certificate, separate from
# EST so that it can be firewalled. Off unless listen is set (or `fleetca serve
# --admin-listen ADDR`). Tokens and users: `fleetca admin token|user ...`.
# [admin]
# listen = "127.0.0.1:8444"
# A login session ends after this long unused, and this long after the login.
# session_idle = "30m"
# session_lifetime = "12h"
# Failed logins and bad tokens per source address and minute before 429 (per node).
# auth_failures_per_minute = 10
# Connection limits of this listener, as in [server].
# max_connections = 256
# max_connections_per_source = 32
# accept_rate_per_source = 20
# first_byte_timeout = "5s"

# CMP, the Lightweight CMP Profile of RFC 9483 (README, "CMP"), on the EST listener at
# /.well-known/cmp and /.well-known/cmp/p/<label> (the labels of [est]). Off unless enabled.
# [cmp]
# enabled = true
# An issued certificate not confirmed (certConf) within this time is revoked
# (cessationOfOperation, audited).
# confirm_timeout = "5m"
# Grant a client's request for implicit confirmation (no certConf round trip).
# implicit_confirm = true
# Lifetime of the certificate fleetca signs its CMP messages with (renewed after two thirds).
# protection_validity = "30d"
# Default lifetime of a one-time shared secret (`fleetca cmp secret create --expires`).
# secret_lifetime = "24h"

# SCEP (RFC 8894; README, "SCEP") for devices that speak nothing else: /scep and
# /scep/<label> on the EST listener, and on a plain-HTTP listener if http_listen is set
# (the messages are CMS-signed and encrypted). Off unless this section is present.
# PKCSReq is authenticated by a one-time challenge (`fleetca scep challenge create`).
# [scep]
# enabled = true
# http_listen = "0.0.0.0:8081"
# Lifetime of the SCEP RA certificate (RSA, issued by the operational CA, renewed with a
# new key at two thirds of its life).
# ra_validity = "30d"
# Largest accepted difference between a request's signingTime and the server's clock.
# max_clock_skew = "24h"
# Profiles whose SCEP requests may use legacy algorithms: SHA-1 digests and signatures,
# DES-CBC and DES-EDE3-CBC envelopes (old devices; refused with failInfo badAlg
# elsewhere). GetCACaps of their labels adds DES3 and SHA-1; the reply's envelope uses the
# request's cipher, its signature SHA-256.
# legacy_algorithms = []
# Profiles where a birth certificate may sign a PKCSReq instead of a challenge password.
# birth_certificate_signer = []

[revocation]
# Revoke a renewed device's previous operational certificate (reason superseded) this
# long after the renewal; "off" lets it run until it expires.
revoke_superseded_after = "off"

# Monitoring and escalation (see docs/monitoring.md): an expiry scan finds devices whose
# current certificate nears expiry without a successor, sorts them into tiers and sends
# one digest per tier and channel per scan through the durable outbox.
[monitoring]
# Run the scan and the outbox in `fleetca serve`.
enabled = true
scan_interval = "15m"
# How often due notifications are (re)sent.
deliver_interval = "30s"
# Prometheus /metrics listener (plain HTTP); `fleetca serve --metrics-listen` overrides.
# metrics_listen = "127.0.0.1:9090"
# Expired, unrenewed certificates stay reported (in the last tier) this long.
expired_lookback = "30d"
# Devices listed per message (the counts always cover all of them).
digest_max_devices = 50

[monitoring.retry]
# Back-off doubles from initial up to max_backoff; undelivered after max_age: failed.
initial = "30s"
max_backoff = "1h"
max_age = "2d"

# Tiers: a device is in the most severe tier whose window contains its expiry. Each
# (device, certificate, tier) is notified once (renotify = "1d" repeats it), and a
# resolved message follows renewal or decommissioning. channels name entries below.
# `before` is a time before expiry ("14d") or a share of the certificate's lifetime
# ("20%": at most 20% of notAfter - notBefore left; strictly between 0% and 100%). A
# healthy device renews with a third of its lifetime left, so a wider tier fires and
# resolves on every renewal: the fixed tiers below suit the 90-day certificates of this
# file. For short-lived certificates (days or less) use "25%", "15%" and "5%" instead.
[[monitoring.tiers]]
name = "notice"
before = "14d"
channels = []

[[monitoring.tiers]]
name = "warning"
before = "3d"
channels = []

[[monitoring.tiers]]
name = "critical"
before = "1d"
channels = []

# Devices still on their birth certificate this long after they were recorded.
# [monitoring.birth_only]
# after = "30d"
# tier = "notice"

# Devices whose enrollment or renewal requests keep being refused (from the audit trail):
# at least `threshold` refusals within `window`, and no certificate issued since.
# [monitoring.failing_renewals]
# threshold = 3
# window = "1d"
# tier = "warning"

# Channels (README "Monitoring" has complete examples):
# [monitoring.channels.ops-mail]
# type = "smtp"
# server = "smtp.example.com"
# port = 587
# security = "starttls"          # none, starttls or tls
# username = "fleetca"
# password_file = "secrets/smtp-password"
# from = "fleetca <fleetca@example.com>"
# to = ["iot-ops@example.com"]
#
# [monitoring.channels.tickets]
# type = "webhook"
# url = "https://tickets.example.com/api/v1/tickets"
# secret_file = "secrets/webhook-hmac"      # X-Fleetca-Signature: sha256=HMAC(body)
# secret_headers = {{ Authorization = "secrets/tickets-authorization" }}

# CA keys in a PKCS#11 token (an HSM; see docs/hsm.md). `fleetca init --pkcs11-module
# PATH --pkcs11-token LABEL --pin-file FILE` generates every CA key and the OCSP signing
# keys inside the token, writes this section, and sets the ca.*_key settings to
# "pkcs11:<key label>". The server's TLS key stays a file.
# [pkcs11]
# The module (shared library) of the token vendor; an absolute path.
# module = "/usr/lib/softhsm/libsofthsm2.so"
# The token's label.
# token = "fleetca"
# File whose first line is the user PIN; mode 0600 (fleetca refuses anything wider).
# pin_file = "/etc/fleetca/pkcs11-pin"

[logging]
# tracing filter: error, warn, info, debug, or per crate (e.g. "info,fleetca_est=debug").
# The TLS library (rustls) logs errors only unless named here ("info,rustls=debug"): its
# warnings are about what one client sent (an IP address as SNI, say), once per connection.
level = "info"
# "text" or "json".
format = "text"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetca_monitor::TierWindow;

    fn load(text: &str) -> anyhow::Result<Config> {
        Config::parse(text, Path::new("/data"))
    }

    #[test]
    fn the_default_file_loads_with_every_setting() {
        let text = default_config_text(
            "Acme \"Devices\"",
            &["ca.example".into()],
            "127.0.0.1:8443",
            "127.0.0.1:8080",
        );
        let c = load(&text).unwrap();
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(
            c.database,
            fleetca_store::Database::Sqlite(PathBuf::from("/data/fleetca.db"))
        );
        assert_eq!(c.organization, "Acme \"Devices\"");
        assert_eq!(c.server_names, vec!["ca.example".to_string()]);
        // The default profile, plus the per-device limits `init` writes so that a device
        // renewing in a loop is stopped by default.
        let mut operational = CertificateProfile::default_operational();
        operational.rules.max_active_certificates = Some(3);
        operational.rules.rate_limit = Some(RateLimit {
            max: 10,
            per: time::Duration::days(1),
        });
        assert_eq!(c.profile("operational").unwrap(), &operational);
        let birth = c.profile("birth").unwrap();
        assert_eq!(birth.issuer, "manufacturing");
        assert_eq!(birth.validity, time::Duration::days(7305));
        assert_eq!(c.max_body_bytes, 65536);
        let p = c.publication.unwrap();
        assert_eq!(p.base_url, "http://127.0.0.1:8080");
        assert_eq!(p.crl_validity, time::Duration::days(7));
        assert_eq!(c.revoke_superseded_after, None);
        let m = c.monitoring.unwrap();
        let tiers: Vec<(&str, TierWindow)> = m
            .tiers
            .iter()
            .map(|t| (t.name.as_str(), t.before))
            .collect();
        assert_eq!(
            tiers,
            [
                ("notice", TierWindow::Fixed(time::Duration::days(14))),
                ("warning", TierWindow::Fixed(time::Duration::days(3))),
                ("critical", TierWindow::Fixed(time::Duration::days(1)))
            ]
        );
        assert_eq!(m.scan_interval, std::time::Duration::from_secs(900));
        assert_eq!(m.retry.max_age, time::Duration::days(2));
        assert!(m.enabled && m.metrics_listen.is_none() && m.channels.is_empty());
    }

    #[test]
    fn the_database_is_a_path_or_a_postgres_url_never_both() {
        let base = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        let pg = base.replace(
            "path = \"fleetca.db\"",
            "url = \"postgres://fleetca:s3cret@db.example.com:5433/fleet\"",
        );
        let c = load(&pg).unwrap();
        assert_eq!(
            c.database.to_string(),
            "postgres://fleetca@db.example.com:5433/fleet"
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug shows no password"
        );
        let both = base.replace(
            "path = \"fleetca.db\"",
            "path = \"fleetca.db\"\nurl = \"postgres://h/db\"",
        );
        let err = load(&both).unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
        let not_pg = base.replace("path = \"fleetca.db\"", "url = \"mysql://h/db\"");
        let err = load(&not_pg).unwrap_err().to_string();
        assert!(err.contains("postgres://"), "{err}");
    }

    #[test]
    fn the_postgres_pool_size_and_ca_file_are_checked() {
        let base = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        let pool = |c: &Config| match &c.database {
            fleetca_store::Database::Postgres(url) => url.pool_size(),
            other => panic!("{other:?}"),
        };
        let pg = base.replace("path = \"fleetca.db\"", "url = \"postgres://h/db\"");
        assert_eq!(
            pool(&load(&pg).unwrap()),
            fleetca_store::PostgresUrl::DEFAULT_POOL_SIZE
        );
        let sized = pg.replace("# pool_size = 8", "pool_size = 24");
        assert_eq!(pool(&load(&sized).unwrap()), 24);
        for (text, needle) in [
            (pg.replace("# pool_size = 8", "pool_size = 0"), "1 to 1000"),
            (
                pg.replace("# pool_size = 8", "pool_size = 5000"),
                "1 to 1000",
            ),
            (
                base.replace("# pool_size = 8", "pool_size = 4"),
                "PostgreSQL (`url`) only",
            ),
            (
                base.replace(
                    "# ca_file = \"pki/postgres-ca.pem\"",
                    "ca_file = \"ca.pem\"",
                ),
                "ca_file applies to PostgreSQL",
            ),
            (
                pg.replace(
                    "# ca_file = \"pki/postgres-ca.pem\"",
                    "ca_file = \"missing.pem\"",
                ),
                "missing.pem",
            ),
        ] {
            let err = format!("{:#}", load(&text).unwrap_err());
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_reason() {
        let base = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        let cases = [
            (base.replace("[database]", "[database]\ncolour = \"blue\""), "unknown field `colour`"),
            (base.replace("validity = \"90d\"", "validity = \"90 days\""), "unknown unit"),
            (base.replace("profile = \"operational\"", "profile = \"nope\""), "profile 'nope'"),
            (base.replace("\"p256\", \"p384\", \"ed25519\", \"rsa2048\", \"rsa3072\", \"rsa4096\"]\n# Subject", "\"dsa\"]\n# Subject"), "unknown key algorithm 'dsa'"),
            (base.replace("listen = \"127.0.0.1:8443\"", "listen = \"localhost\""), "server.listen"),
            (base.replace("# sensors = \"operational\"", "cacerts = \"operational\""), "not a usable label"),
            (base.replace("level = \"info\"", "level = \"info,[\""), "logging.level"),
            (base.replace("base_url = \"http://127.0.0.1:8080\"", "base_url = \"https://x\""), "must be an http:// URL"),
            (base.replace("revoke_superseded_after = \"off\"", "revoke_superseded_after = \"soon\""), "revoke_superseded_after"),
        ];
        for (text, needle) in cases {
            let err = format!("{:#}", load(&text).unwrap_err());
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        }
    }

    #[test]
    fn connection_limits_that_cannot_work_are_refused_with_the_setting() {
        let base = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        // The first occurrence is [server], the second [publication].
        let cases = [
            (
                base.replacen("max_connections = 4096", "max_connections = 0", 1),
                "server.max_connections must be at least 1",
            ),
            (
                base.replacen(
                    "max_connections_per_source = 64",
                    "max_connections_per_source = 5000",
                    1,
                ),
                "must not exceed server.max_connections",
            ),
            (
                base.replacen(
                    "first_byte_timeout = \"5s\"",
                    "first_byte_timeout = \"0s\"",
                    1,
                ),
                "server.first_byte_timeout must be more than 0s",
            ),
            (
                base.replacen(
                    "first_byte_timeout = \"5s\"",
                    "first_byte_timeout = \"soon\"",
                    1,
                ),
                "first_byte_timeout",
            ),
            (
                base.replacen(
                    "max_connections_per_source = 64",
                    "max_connections_per_source = -1",
                    1,
                ),
                "max_connections_per_source",
            ),
            (
                base.replacen("max_header_bytes = 32768", "max_header_bytes = \"big\"", 1),
                "max_header_bytes",
            ),
        ];
        for (text, needle) in cases {
            assert_ne!(text, base, "the case must change the file");
            let err = format!("{:#}", load(&text).unwrap_err());
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        }
    }

    #[test]
    fn the_pkcs11_variant_names_token_keys_and_key_references_need_the_section() {
        let base = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        let c = load(&base).unwrap();
        assert_eq!(c.pkcs11, None);
        assert_eq!(
            c.operational_key,
            KeyRef::File("/data/pki/operational-ca.key".into())
        );
        assert_eq!(c.root_key, KeyRef::File("/data/pki/root-ca.key".into()));

        let settings = Pkcs11Settings {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token: "fleet \"A\"".into(),
            pin_file: "/etc/fleetca/pin".into(),
        };
        let text = pkcs11_config_text(&base, &settings);
        let c = load(&text).unwrap();
        assert_eq!(c.pkcs11.as_ref(), Some(&settings));
        for (key, label) in [
            (&c.root_key, "root-ca"),
            (&c.manufacturing_key, "manufacturing-ca"),
            (&c.operational_key, "operational-ca"),
            (&c.registration_key, "registration-ca"),
        ] {
            assert_eq!(
                key,
                &KeyRef::Pkcs11 {
                    label: label.into()
                }
            );
        }

        let no_section = base.replace(
            "operational_key = \"pki/operational-ca.key\"",
            "operational_key = \"pkcs11:operational-ca\"",
        );
        let err = format!("{:#}", load(&no_section).unwrap_err());
        assert!(err.contains("there is no [pkcs11] section"), "{err}");
        let relative = text.replace(
            "module = \"/usr/lib/softhsm/libsofthsm2.so\"",
            "module = \"libsofthsm2.so\"",
        );
        let err = format!("{:#}", load(&relative).unwrap_err());
        assert!(err.contains("must be an absolute path"), "{err}");
        let unknown = text.replace("[pkcs11]\n", "[pkcs11]\nslot = 1\n");
        let err = format!("{:#}", load(&unknown).unwrap_err());
        assert!(err.contains("unknown field `slot`"), "{err}");
    }

    #[test]
    fn a_profile_without_a_serial_number_is_refused() {
        let base = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        let text = base.replacen(
            "  { attribute = \"serialNumber\", value = \"{serial}\" },\n",
            "",
            1,
        );
        let err = format!("{:#}", load(&text).unwrap_err());
        assert!(err.contains("serialNumber"), "{err}");
    }

    /// Issue 15 item 9: tiers wider than what a healthy renewal leaves fire and resolve
    /// on every renewal; `--check-config` says so.
    #[test]
    fn tiers_wider_than_a_healthy_renewal_window_are_noted() {
        let base = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        let notes = load(&base).unwrap().notes();
        assert!(
            !notes.iter().any(|n| n.contains("monitoring tier")),
            "{notes:?}"
        );
        let short = base.replacen("validity = \"90d\"", "validity = \"7d\"", 1);
        let notes = load(&short).unwrap().notes();
        let tiers: Vec<&String> = notes
            .iter()
            .filter(|n| n.contains("monitoring tier"))
            .collect();
        assert_eq!(tiers.len(), 2, "{notes:?}");
        assert!(tiers
            .iter()
            .any(|n| n.contains("'notice'") && n.contains("'operational'")));
        assert!(tiers.iter().any(|n| n.contains("'warning'")));
        // Relative tiers: 20% stays inside the third a healthy renewal leaves, 40% not.
        let relative = short
            .replacen("before = \"14d\"", "before = \"40%\"", 1)
            .replacen("before = \"3d\"", "before = \"20%\"", 1)
            .replacen("before = \"1d\"", "before = \"5%\"", 1);
        let notes = load(&relative).unwrap().notes();
        let tiers: Vec<&String> = notes
            .iter()
            .filter(|n| n.contains("monitoring tier"))
            .collect();
        assert_eq!(tiers.len(), 1, "{notes:?}");
        assert!(tiers[0].contains("'notice' (before = 40%)"), "{notes:?}");
    }

    #[test]
    fn profile_rules_load_and_bad_ones_are_refused_by_name() {
        let base = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        let text = base
            .replace("max_active_certificates = 3", "max_active_certificates = 2")
            .replace("# reenroll_after = 0.66", "reenroll_after = 0.66")
            .replace(
                "# [[profiles.operational.rules]]",
                "[[profiles.operational.rules]]",
            )
            .replace("# name = \"ec-keys-only\"", "name = \"ec-keys-only\"")
            .replace("# expression = '", "expression = '")
            .replace("# message = \"only P-256", "message = \"only P-256");
        let c = load(&text).unwrap();
        let rules = &c.profile("operational").unwrap().rules;
        assert_eq!(rules.max_active_certificates, Some(2));
        assert_eq!(rules.reenroll_after_permille, Some(660));
        assert_eq!(rules.custom.len(), 1);
        assert_eq!(rules.custom[0].name, "ec-keys-only");

        let cases = [
            (
                text.replace("in [\"p256\", \"p384\"]'", "in [\"p256\"'"),
                "ec-keys-only",
            ),
            (
                text.replace("reenroll_after = 0.66", "reenroll_after = 1.5"),
                "reenroll_after",
            ),
            (
                text.replace("max_active_certificates = 2", "max_active_certificates = 0"),
                "max_active_certificates",
            ),
            (
                text.replace("message = \"only P-256 and P-384 keys are accepted\"", ""),
                "missing field `message`",
            ),
        ];
        for (text, needle) in cases {
            let err = format!("{:#}", load(&text).unwrap_err());
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
            // Serde's own errors point at the line instead.
            assert!(
                err.contains("profile 'operational'") || err.contains("TOML parse error"),
                "{err}"
            );
        }
    }

    #[test]
    fn issue_4_settings_load_and_garbage_is_refused_with_the_reason() {
        let base = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        let text = base
            .replace(
                "# serial_pattern = \"[A-Z]{2}-[0-9]{6}\"",
                "serial_pattern = \"[A-Z]{2}-[0-9]{6}\"",
            )
            .replace(
                "rate_limit = { max = 10, per = \"1d\" }",
                "rate_limit = { max = 5, per = \"1d\" }",
            )
            .replace(
                "# manual_approval = \"device.cmdb == null\"",
                "manual_approval = \"device.serial.startsWith('NEW-')\"",
            )
            .replace(
                "# approval_retry_after = \"60s\"",
                "approval_retry_after = \"2m\"",
            );
        let c = load(&text).unwrap();
        let rules = &c.profile("operational").unwrap().rules;
        assert_eq!(rules.serial_pattern.as_deref(), Some("[A-Z]{2}-[0-9]{6}"));
        assert_eq!(
            rules.rate_limit,
            Some(RateLimit {
                max: 5,
                per: time::Duration::days(1)
            })
        );
        assert!(rules.manual_approval.is_some());
        assert_eq!(rules.approval_retry_after, Some(time::Duration::minutes(2)));

        let connector = "[connectors.cmdb]\nkind = \"file\"\npath = \"devices.csv\"\n";
        let cases = [
            (
                text.replace("serial_pattern = \"[A-Z]{2}", "serial_pattern = \"[A-Z"),
                "serial_pattern is not a valid regular expression",
            ),
            (
                text.replace("max = 5, per", "max = 0, per"),
                "rate_limit needs max of at least 1",
            ),
            (text.replace("per = \"1d\"", "per = \"soon\""), "duration"),
            (
                text.replace("startsWith('NEW-')", "startsWith('NEW-'"),
                "manual_approval (line",
            ),
            (
                text.replace(
                    "approval_retry_after = \"2m\"",
                    "approval_retry_after = \"2m\"\nconnectors = [\"cmdb\"]",
                ),
                "connector 'cmdb' is not configured",
            ),
            (
                text.replace(
                    "approval_retry_after = \"2m\"",
                    "approval_retry_after = \"2m\"\nconnectors = [\"cmdb\", \"cmdb\"]",
                ) + connector,
                "listed twice",
            ),
            (
                text.clone() + &connector.replace("connectors.cmdb", "connectors.status"),
                "connector name 'status'",
            ),
            (
                text.clone() + &connector.replace("kind = \"file\"", "kind = \"ldap\""),
                "unknown variant",
            ),
            (
                text.replace("enroll_from = []", "enroll_from = [\"nowhere\"]"),
                "enroll_from names profile 'nowhere'",
            ),
            (
                text.replace(
                    "birth_reenrollment = \"needs-operator\"",
                    "birth_reenrollment = \"always\"",
                ),
                "birth_reenrollment must be",
            ),
        ];
        assert_eq!(
            rules.birth_reenrollment,
            fleetca_pki::BirthReenrollment::NeedsOperator
        );
        assert!(rules.enroll_from.is_empty());
        for (text, needle) in cases {
            let err = format!("{:#}", load(&text).unwrap_err());
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        }
    }
}
