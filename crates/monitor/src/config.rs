//! The `[monitoring]` configuration section: raw TOML (unknown keys refused) →
//! validated [`MonitorSettings`]. Secrets (SMTP password, webhook HMAC key, header values
//! such as bearer tokens) are read from files and never printed by `Debug`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::Duration;

use crate::template;
use crate::MonitorError;

/// `[monitoring]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitoring {
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default = "d15m")]
    scan_interval: String,
    #[serde(default = "d30s")]
    deliver_interval: String,
    metrics_listen: Option<String>,
    #[serde(default = "d30d")]
    expired_lookback: String,
    #[serde(default = "default_digest")]
    digest_max_devices: usize,
    birth_only: Option<RawBirthOnly>,
    failing_renewals: Option<RawFailingRenewals>,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    tiers: Vec<RawTier>,
    #[serde(default)]
    channels: BTreeMap<String, RawChannel>,
}

fn default_true() -> bool {
    true
}
fn d15m() -> String {
    "15m".into()
}
fn d30s() -> String {
    "30s".into()
}
fn d30d() -> String {
    "30d".into()
}
fn default_digest() -> usize {
    50
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBirthOnly {
    after: String,
    tier: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailingRenewals {
    #[serde(default = "default_failing_threshold")]
    threshold: u32,
    #[serde(default = "d1d")]
    window: String,
    tier: String,
}

fn default_failing_threshold() -> u32 {
    3
}
fn d1d() -> String {
    "1d".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default = "d30s")]
    initial: String,
    #[serde(default = "d1h")]
    max_backoff: String,
    #[serde(default = "d2d")]
    max_age: String,
}

fn d1h() -> String {
    "1h".into()
}
fn d2d() -> String {
    "2d".into()
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            initial: d30s(),
            max_backoff: d1h(),
            max_age: d2d(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    name: String,
    before: String,
    #[serde(default)]
    channels: Vec<String>,
    renotify: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum RawChannel {
    Smtp(RawSmtp),
    Webhook(RawWebhook),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    server: String,
    port: Option<u16>,
    #[serde(default = "default_security")]
    security: String,
    username: Option<String>,
    password_file: Option<PathBuf>,
    from: String,
    to: Vec<String>,
    #[serde(default = "default_subject")]
    subject: String,
    #[serde(default = "default_body")]
    body: String,
    #[serde(default = "d30s")]
    timeout: String,
    /// PEM file of the CA (or self-signed certificate) to trust for this relay, besides
    /// the system roots.
    ca_file: Option<PathBuf>,
}

fn default_security() -> String {
    "starttls".into()
}

/// Default e-mail subject.
pub const DEFAULT_SUBJECT: &str = "[fleetca] {{tier}}: {{summary}}";
/// Default e-mail body.
pub const DEFAULT_BODY: &str = "{{summary}}\n\nTier: {{tier}} ({{event}})\nDevices in this message: {{count}} (showing {{shown}}, {{more}} more)\nOpen in this tier: {{open}}\nScan: {{scan_time}}\n\n{{devices}}\n\n-- fleetca, delivery {{id}}\n";
/// Default webhook body: a generic ticket.
pub const DEFAULT_WEBHOOK_BODY: &str = r#"{"id":"{{id}}","event":"{{event}}","tier":"{{tier}}","summary":"{{summary}}","count":{{count}},"open":{{open}},"more":{{more}},"scan_time":"{{scan_time}}","devices":{{devices}}}"#;

fn default_subject() -> String {
    DEFAULT_SUBJECT.into()
}
fn default_body() -> String {
    DEFAULT_BODY.into()
}
fn default_webhook_body() -> String {
    DEFAULT_WEBHOOK_BODY.into()
}
fn default_signature_header() -> String {
    "X-Fleetca-Signature".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Header name → file holding its value (bearer tokens, API keys).
    #[serde(default)]
    secret_headers: BTreeMap<String, PathBuf>,
    #[serde(default = "default_webhook_body")]
    body: String,
    secret_file: Option<PathBuf>,
    #[serde(default = "default_signature_header")]
    signature_header: String,
    #[serde(default = "d30s")]
    timeout: String,
}

/// A secret read from a file. `Debug` prints only its length.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    /// The secret bytes (use, never log).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    fn read(path: &Path, what: &str) -> Result<Self, MonitorError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            MonitorError::Config(format!("{what}: cannot read {}: {e}", path.display()))
        })?;
        let value = text.trim_end_matches(['\r', '\n']);
        if value.is_empty() {
            return Err(MonitorError::Config(format!(
                "{what}: {} is empty",
                path.display()
            )));
        }
        Ok(Self(value.as_bytes().to_vec()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// When a tier's window opens: a fixed time before expiry (`before = "3d"`), or a share
/// of the certificate's lifetime (`before = "20%"`: when at most 20% of notAfter −
/// notBefore remains), which fits any certificate length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierWindow {
    /// This long before expiry.
    Fixed(Duration),
    /// This share of the lifetime before expiry, in parts per million (0 < ppm < 10⁶).
    Lifetime { ppm: u32 },
}

impl TierWindow {
    const PPM: i128 = 1_000_000;

    /// Parses `14d` (fixed) or `20%` / `12.5%` (relative, strictly between 0 and 100).
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(number) = text.trim().strip_suffix('%') else {
            let d = parse_duration(text).map_err(|e| e.to_string())?;
            if d <= Duration::ZERO {
                return Err("must be positive".into());
            }
            return Ok(Self::Fixed(d));
        };
        let percent: f64 = number.trim().parse().map_err(|_| {
            format!("'{text}' is neither a duration (14d) nor a percentage of the lifetime (20%)")
        })?;
        if !(percent > 0.0 && percent < 100.0) {
            return Err(format!(
                "'{text}': a percentage of the lifetime must be greater than 0% and less than 100%"
            ));
        }
        // 0 < percent < 100, so the rounded value is within u32 and at most 10⁶.
        let ppm = (percent * 10_000.0).round() as u32;
        if ppm == 0 || i128::from(ppm) >= Self::PPM {
            return Err(format!("'{text}': too close to 0% or 100%"));
        }
        Ok(Self::Lifetime { ppm })
    }

    /// Whether a certificate of `lifetime` (notAfter − notBefore) with `remaining` time left
    /// (negative once expired) is inside this window.
    pub fn contains(self, remaining: Duration, lifetime: Duration) -> bool {
        match self {
            Self::Fixed(before) => remaining <= before,
            Self::Lifetime { ppm } => {
                remaining.whole_milliseconds() * Self::PPM
                    <= i128::from(ppm) * lifetime.whole_milliseconds()
            }
        }
    }
}

impl std::fmt::Display for TierWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(d) => write!(f, "{}s", d.whole_seconds()),
            Self::Lifetime { ppm } => write!(f, "{}%", f64::from(*ppm) / 10_000.0),
        }
    }
}

/// One escalation tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// Name (`notice`, `warning`, ...).
    pub name: String,
    /// Fires when the certificate's remaining life is within this window.
    pub before: TierWindow,
    /// Channels notified.
    pub channels: Vec<String>,
    /// Notify again after this long in the same tier.
    pub renotify: Option<Duration>,
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP (loopback relays only).
    None,
    /// STARTTLS required (port 587).
    StartTls,
    /// Implicit TLS (port 465).
    Tls,
}

/// An e-mail channel.
#[derive(Debug, Clone)]
pub struct SmtpChannel {
    pub server: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub credentials: Option<(String, Secret)>,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    pub timeout: std::time::Duration,
    /// Extra trusted root (PEM) for the relay's TLS certificate.
    pub ca_pem: Option<Vec<u8>>,
}

/// A webhook channel.
#[derive(Debug, Clone)]
pub struct WebhookChannel {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub secret_headers: Vec<(String, Secret)>,
    pub body: String,
    pub hmac_key: Option<Secret>,
    pub signature_header: String,
    pub timeout: std::time::Duration,
}

/// A notification channel.
#[derive(Debug, Clone)]
pub enum ChannelSettings {
    Smtp(SmtpChannel),
    Webhook(WebhookChannel),
}

/// Devices whose requests keep being refused: at least `threshold` refusals within
/// `window`, none followed by an issuance, escalate into `tier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingRenewals {
    pub threshold: u32,
    pub window: Duration,
    pub tier: String,
}

/// Retry policy of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    pub initial: Duration,
    pub max_backoff: Duration,
    /// A message not delivered this long after it was queued is marked failed.
    pub max_age: Duration,
}

/// Validated monitoring settings.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// Run the scanner and the outbox in `fleetca serve`.
    pub enabled: bool,
    pub scan_interval: std::time::Duration,
    pub deliver_interval: std::time::Duration,
    pub metrics_listen: Option<SocketAddr>,
    /// Expired certificates stay reported (in the last tier) this long.
    pub expired_lookback: Duration,
    pub digest_max_devices: usize,
    /// Devices on their birth certificate this long after they were recorded escalate
    /// into the given tier.
    pub birth_only: Option<(Duration, String)>,
    /// Devices whose enrollment or renewal requests keep being refused.
    pub failing_renewals: Option<FailingRenewals>,
    pub retry: RetrySettings,
    /// Tiers, least severe (widest `before`) first.
    pub tiers: Vec<Tier>,
    pub channels: BTreeMap<String, ChannelSettings>,
    /// The longest validity each CA issues (from the profiles): a CA generation escalates
    /// (`ca-expiry`) by the tiers as its end minus this approaches.
    pub ca_issued_validity: BTreeMap<String, Duration>,
    /// Generation 1 of each CA as the configuration names it, watched as long as the
    /// database records no generation of that CA (it was never rolled over).
    pub ca_configured: Vec<fleetca_store::CaGeneration>,
}

/// Parses `30s`, `10m`, `12h`, `14d` (the syntax of every fleetca duration).
pub fn parse_duration(s: &str) -> Result<Duration, MonitorError> {
    s.parse::<fleetca_pki::HumanDuration>()
        .map(fleetca_pki::HumanDuration::to_time)
        .map_err(MonitorError::Config)
}

fn std_duration(s: &str, what: &str) -> Result<std::time::Duration, MonitorError> {
    let d = parse_duration(s).map_err(|e| MonitorError::Config(format!("{what}: {e}")))?;
    std::time::Duration::try_from(d)
        .map_err(|_| MonitorError::Config(format!("{what}: negative duration")))
}

fn duration(s: &str, what: &str) -> Result<Duration, MonitorError> {
    parse_duration(s).map_err(|e| MonitorError::Config(format!("{what}: {e}")))
}

impl RawMonitoring {
    /// Validates; relative secret paths resolve against `base`.
    pub fn validate(self, base: &Path) -> Result<MonitorSettings, MonitorError> {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let bad = |m: String| MonitorError::Config(m);
        let mut channels = BTreeMap::new();
        for (name, raw) in self.channels {
            let what = format!("monitoring.channels.{name}");
            let channel = match raw {
                RawChannel::Smtp(s) => {
                    let security = match s.security.as_str() {
                        "none" => SmtpSecurity::None,
                        "starttls" => SmtpSecurity::StartTls,
                        "tls" => SmtpSecurity::Tls,
                        other => {
                            return Err(bad(format!(
                                "{what}.security '{other}': use none, starttls or tls"
                            )))
                        }
                    };
                    let credentials = match (s.username, s.password_file) {
                        (Some(u), Some(p)) => Some((
                            u,
                            Secret::read(&resolve(&p), &format!("{what}.password_file"))?,
                        )),
                        (None, None) => None,
                        _ => {
                            return Err(bad(format!(
                                "{what}: username and password_file go together"
                            )))
                        }
                    };
                    if s.to.is_empty() {
                        return Err(bad(format!("{what}.to: at least one recipient")));
                    }
                    for address in std::iter::once(&s.from).chain(&s.to) {
                        address.parse::<lettre::message::Mailbox>().map_err(|e| {
                            bad(format!("{what}: '{address}' is not an e-mail address: {e}"))
                        })?;
                    }
                    template::check(&s.subject)
                        .and_then(|()| template::check(&s.body))
                        .map_err(|e| bad(format!("{what}: {e}")))?;
                    ChannelSettings::Smtp(SmtpChannel {
                        server: s.server,
                        port: s.port.unwrap_or(match security {
                            SmtpSecurity::None => 25,
                            SmtpSecurity::StartTls => 587,
                            SmtpSecurity::Tls => 465,
                        }),
                        security,
                        credentials,
                        from: s.from,
                        to: s.to,
                        subject: s.subject,
                        body: s.body,
                        timeout: std_duration(&s.timeout, &format!("{what}.timeout"))?,
                        ca_pem: match &s.ca_file {
                            None => None,
                            Some(f) => {
                                let path = resolve(f);
                                let pem = std::fs::read(&path).map_err(|e| {
                                    bad(format!("{what}.ca_file {}: {e}", path.display()))
                                })?;
                                if !pem.starts_with(b"-----BEGIN CERTIFICATE-----") {
                                    return Err(bad(format!(
                                        "{what}.ca_file {} is not a PEM certificate",
                                        path.display()
                                    )));
                                }
                                Some(pem)
                            }
                        },
                    })
                }
                RawChannel::Webhook(w) => {
                    if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                        return Err(bad(format!("{what}.url must be an http(s) URL")));
                    }
                    template::check(&w.body).map_err(|e| bad(format!("{what}.body: {e}")))?;
                    crate::digest::sample_json(&w.body)
                        .map_err(|e| bad(format!("{what}.body does not render valid JSON: {e}")))?;
                    let mut secret_headers = Vec::new();
                    for (h, p) in w.secret_headers {
                        secret_headers.push((
                            h.clone(),
                            Secret::read(&resolve(&p), &format!("{what}.secret_headers.{h}"))?,
                        ));
                    }
                    ChannelSettings::Webhook(WebhookChannel {
                        url: w.url,
                        headers: w.headers.into_iter().collect(),
                        secret_headers,
                        body: w.body,
                        hmac_key: w
                            .secret_file
                            .map(|p| Secret::read(&resolve(&p), &format!("{what}.secret_file")))
                            .transpose()?,
                        signature_header: w.signature_header,
                        timeout: std_duration(&w.timeout, &format!("{what}.timeout"))?,
                    })
                }
            };
            channels.insert(name, channel);
        }
        let mut tiers = Vec::new();
        for t in self.tiers {
            let what = format!("monitoring.tiers '{}'", t.name);
            for c in &t.channels {
                if !channels.contains_key(c) {
                    return Err(bad(format!(
                        "{what} names channel '{c}', which is not defined under [monitoring.channels]"
                    )));
                }
            }
            let before =
                TierWindow::parse(&t.before).map_err(|e| bad(format!("{what}.before: {e}")))?;
            tiers.push(Tier {
                renotify: t
                    .renotify
                    .map(|r| duration(&r, &format!("{what}.renotify")))
                    .transpose()?,
                name: t.name,
                before,
                channels: t.channels,
            });
        }
        order_tiers(&mut tiers).map_err(bad)?;
        if tiers.iter().any(|t| t.name.is_empty()) {
            return Err(bad("monitoring.tiers: a tier needs a name".into()));
        }
        let birth_only = match self.birth_only {
            None => None,
            Some(b) => {
                if !tiers.iter().any(|t| t.name == b.tier) {
                    return Err(bad(format!(
                        "monitoring.birth_only.tier '{}' is not a defined tier",
                        b.tier
                    )));
                }
                Some((duration(&b.after, "monitoring.birth_only.after")?, b.tier))
            }
        };
        let failing_renewals = match self.failing_renewals {
            None => None,
            Some(f) => {
                if !tiers.iter().any(|t| t.name == f.tier) {
                    return Err(bad(format!(
                        "monitoring.failing_renewals.tier '{}' is not a defined tier",
                        f.tier
                    )));
                }
                if f.threshold == 0 {
                    return Err(bad(
                        "monitoring.failing_renewals.threshold must be at least 1".into(),
                    ));
                }
                let window = duration(&f.window, "monitoring.failing_renewals.window")?;
                if window <= Duration::ZERO {
                    return Err(bad(
                        "monitoring.failing_renewals.window must be positive".into()
                    ));
                }
                Some(FailingRenewals {
                    threshold: f.threshold,
                    window,
                    tier: f.tier,
                })
            }
        };
        let metrics_listen = self
            .metrics_listen
            .map(|m| {
                m.parse::<SocketAddr>().map_err(|_| {
                    bad(format!(
                        "monitoring.metrics_listen '{m}' is not an address:port"
                    ))
                })
            })
            .transpose()?;
        let retry = RetrySettings {
            initial: duration(&self.retry.initial, "monitoring.retry.initial")?,
            max_backoff: duration(&self.retry.max_backoff, "monitoring.retry.max_backoff")?,
            max_age: duration(&self.retry.max_age, "monitoring.retry.max_age")?,
        };
        if retry.initial <= Duration::ZERO || retry.max_backoff < retry.initial {
            return Err(bad(
                "monitoring.retry: initial must be positive and at most max_backoff".into(),
            ));
        }
        let scan_interval = std_duration(&self.scan_interval, "monitoring.scan_interval")?;
        let deliver_interval = std_duration(&self.deliver_interval, "monitoring.deliver_interval")?;
        if scan_interval.is_zero() || deliver_interval.is_zero() {
            return Err(bad("monitoring: intervals must be positive".into()));
        }
        Ok(MonitorSettings {
            enabled: self.enabled,
            scan_interval,
            deliver_interval,
            metrics_listen,
            expired_lookback: duration(&self.expired_lookback, "monitoring.expired_lookback")?,
            digest_max_devices: self.digest_max_devices.max(1),
            birth_only,
            failing_renewals,
            retry,
            tiers,
            channels,
            ca_issued_validity: BTreeMap::new(),
            ca_configured: Vec::new(),
        })
    }
}

/// Puts tiers least severe first. Tiers of one kind (all fixed, or all relative) are sorted
/// by window, widest first, whatever order they were written in. A mix of fixed and
/// relative tiers has no order of its own: it is kept as written, which must be least
/// severe first, each fixed window narrower than the fixed ones before it and each
/// relative one narrower than the relative ones before it.
fn order_tiers(tiers: &mut [Tier]) -> Result<(), String> {
    let fixed = |t: &Tier| match t.before {
        TierWindow::Fixed(d) => Some(d),
        TierWindow::Lifetime { .. } => None,
    };
    let share = |t: &Tier| match t.before {
        TierWindow::Lifetime { ppm } => Some(ppm),
        TierWindow::Fixed(_) => None,
    };
    let mixed =
        tiers.iter().any(|t| fixed(t).is_some()) && tiers.iter().any(|t| share(t).is_some());
    if !mixed {
        tiers.sort_by_key(|t| std::cmp::Reverse((fixed(t), share(t))));
    }
    for (i, a) in tiers.iter().enumerate() {
        for b in tiers.iter().skip(i + 1) {
            if a.name == b.name || a.before == b.before {
                return Err(format!(
                    "monitoring.tiers: '{}' and '{}' have the same name or window",
                    a.name, b.name
                ));
            }
            let wider = match (a.before, b.before) {
                (TierWindow::Fixed(x), TierWindow::Fixed(y)) => x > y,
                (TierWindow::Lifetime { ppm: x }, TierWindow::Lifetime { ppm: y }) => x > y,
                _ => true,
            };
            if !wider {
                return Err(format!(
                    "monitoring.tiers: with fixed and relative (%) tiers mixed, list them least severe first; '{}' ({}) comes before the wider '{}' ({})",
                    a.name, a.before, b.name, b.before
                ));
            }
        }
    }
    Ok(())
}

impl MonitorSettings {
    /// Settings with no tiers and no channels: metrics only.
    pub fn metrics_only() -> Self {
        Self {
            enabled: true,
            scan_interval: std::time::Duration::from_secs(900),
            deliver_interval: std::time::Duration::from_secs(30),
            metrics_listen: None,
            expired_lookback: Duration::days(30),
            digest_max_devices: 50,
            birth_only: None,
            failing_renewals: None,
            retry: RetrySettings {
                initial: Duration::seconds(30),
                max_backoff: Duration::hours(1),
                max_age: Duration::days(2),
            },
            tiers: Vec::new(),
            channels: BTreeMap::new(),
            ca_issued_validity: BTreeMap::new(),
            ca_configured: Vec::new(),
        }
    }

    /// How far ahead of now the scan must look for expiring certificates: the widest
    /// fixed window; `None` (every current certificate) when a tier is relative to the
    /// lifetime, since any certificate length can put a certificate into it.
    pub fn horizon(&self) -> Option<Duration> {
        let mut widest = Duration::ZERO;
        for t in &self.tiers {
            match t.before {
                TierWindow::Fixed(d) => widest = widest.max(d),
                TierWindow::Lifetime { .. } => return None,
            }
        }
        Some(widest)
    }

    /// Index of the tier a certificate with `remaining` time left of its `lifetime`
    /// (notAfter − notBefore) is in (the most severe tier whose window contains it),
    /// `None` outside every window.
    pub fn tier_for(&self, remaining: Duration, lifetime: Duration) -> Option<usize> {
        self.tiers
            .iter()
            .rposition(|t| t.before.contains(remaining, lifetime))
    }

    /// Index of a tier by name.
    pub fn tier_index(&self, name: &str) -> Option<usize> {
        self.tiers.iter().position(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, base: &Path) -> Result<MonitorSettings, MonitorError> {
        let raw: RawMonitoring =
            toml::from_str(text).map_err(|e| MonitorError::Config(e.to_string()))?;
        raw.validate(base)
    }

    #[test]
    fn tiers_sort_and_classify_and_secrets_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "hunter2\n").unwrap();
        let s = parse(
            r#"
            [[tiers]]
            name = "critical"
            before = "1d"
            channels = ["mail"]
            [[tiers]]
            name = "notice"
            before = "14d"
            channels = ["mail"]
            [[tiers]]
            name = "warning"
            before = "3d"
            [channels.mail]
            type = "smtp"
            server = "127.0.0.1"
            security = "none"
            username = "u"
            password_file = "pw"
            from = "fleetca <f@example.com>"
            to = ["ops@example.com"]
            "#,
            dir.path(),
        )
        .unwrap();
        let names: Vec<&str> = s.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["notice", "warning", "critical"]);
        // Fixed windows do not depend on the lifetime.
        let life = Duration::days(90);
        assert_eq!(s.tier_for(Duration::days(20), life), None);
        assert_eq!(s.tier_for(Duration::days(10), life), Some(0));
        assert_eq!(s.tier_for(Duration::days(2), life), Some(1));
        assert_eq!(s.tier_for(Duration::hours(1), life), Some(2));
        assert_eq!(s.tier_for(Duration::days(-3), life), Some(2));
        assert_eq!(s.horizon(), Some(Duration::days(14)));
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("redacted"));
    }

    /// Issue 15 item 9: a one-hour certificate with a 20% tier is not in it at half its
    /// life left, and is at a tenth; a fixed 1d tier would hold it from its first second.
    #[test]
    fn relative_tiers_follow_the_lifetime() {
        let s = parse(
            "[[tiers]]\nname = \"critical\"\nbefore = \"5%\"\n\
             [[tiers]]\nname = \"notice\"\nbefore = \"20%\"\n",
            Path::new("/nonexistent"),
        )
        .unwrap();
        let names: Vec<&str> = s.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["notice", "critical"]);
        assert_eq!(
            s.horizon(),
            None,
            "any certificate length can enter a relative tier"
        );
        let hour = Duration::hours(1);
        assert_eq!(s.tier_for(Duration::minutes(30), hour), None, "50% left");
        assert_eq!(s.tier_for(Duration::minutes(13), hour), None, "21.7% left");
        assert_eq!(s.tier_for(Duration::minutes(12), hour), Some(0), "20% left");
        assert_eq!(s.tier_for(Duration::minutes(6), hour), Some(0), "10% left");
        assert_eq!(s.tier_for(Duration::minutes(2), hour), Some(1), "3.3% left");
        assert_eq!(s.tier_for(Duration::minutes(-5), hour), Some(1), "expired");
        // The same share of a 90-day certificate is 18 days.
        let quarter = Duration::days(90);
        assert_eq!(s.tier_for(Duration::days(19), quarter), None);
        assert_eq!(s.tier_for(Duration::days(17), quarter), Some(0));
        assert_eq!(
            TierWindow::parse("12.5%"),
            Ok(TierWindow::Lifetime { ppm: 125_000 })
        );
        assert_eq!(TierWindow::parse("20%").unwrap().to_string(), "20%");
    }

    #[test]
    fn fixed_and_relative_tiers_mix_in_written_order() {
        let base = Path::new("/nonexistent");
        let s = parse(
            "[[tiers]]\nname = \"notice\"\nbefore = \"25%\"\n\
             [[tiers]]\nname = \"warning\"\nbefore = \"10%\"\n\
             [[tiers]]\nname = \"critical\"\nbefore = \"1h\"\n",
            base,
        )
        .unwrap();
        let names: Vec<&str> = s.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["notice", "warning", "critical"]);
        let day = Duration::days(1);
        assert_eq!(s.tier_for(Duration::hours(5), day), Some(0));
        assert_eq!(s.tier_for(Duration::hours(2), day), Some(1));
        assert_eq!(s.tier_for(Duration::minutes(30), day), Some(2));
        let err = parse(
            "[[tiers]]\nname = \"notice\"\nbefore = \"10%\"\n\
             [[tiers]]\nname = \"critical\"\nbefore = \"1h\"\n\
             [[tiers]]\nname = \"warning\"\nbefore = \"25%\"\n",
            base,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("least severe first") && err.contains("'notice' (10%)"),
            "{err}"
        );
    }

    #[test]
    fn failing_renewals_default_to_three_refusals_a_day() {
        let s = parse(
            "[[tiers]]\nname = \"a\"\nbefore = \"1d\"\n[failing_renewals]\ntier = \"a\"",
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(
            s.failing_renewals,
            Some(FailingRenewals {
                threshold: 3,
                window: Duration::days(1),
                tier: "a".into(),
            })
        );
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let base = Path::new("/nonexistent");
        for (text, needle) in [
            ("colour = 1", "unknown field"),
            ("[[tiers]]\nname = \"a\"\nbefore = \"1d\"\nchannels = [\"x\"]", "channel 'x'"),
            ("[[tiers]]\nname = \"a\"\nbefore = \"1 day\"", "unknown unit"),
            ("[[tiers]]\nname = \"soon\"\nbefore = \"0%\"", "tiers 'soon'.before: '0%': a percentage of the lifetime must be greater than 0% and less than 100%"),
            ("[[tiers]]\nname = \"soon\"\nbefore = \"100%\"", "tiers 'soon'.before: '100%'"),
            ("[[tiers]]\nname = \"soon\"\nbefore = \"-5%\"", "greater than 0%"),
            ("[[tiers]]\nname = \"soon\"\nbefore = \"150%\"", "less than 100%"),
            ("[[tiers]]\nname = \"soon\"\nbefore = \"NaN%\"", "greater than 0%"),
            ("[[tiers]]\nname = \"soon\"\nbefore = \"twenty%\"", "neither a duration"),
            ("[[tiers]]\nname = \"soon\"\nbefore = \"0s\"", "tiers 'soon'.before: must be positive"),
            ("[channels.h]\ntype = \"webhook\"\nurl = \"ftp://x\"", "http(s) URL"),
            ("[channels.h]\ntype = \"webhook\"\nurl = \"http://x\"\nbody = \"{{count\"", "unclosed"),
            ("[channels.h]\ntype = \"webhook\"\nurl = \"http://x\"\nbody = \"{\\\"a\\\": {{tier}}}\"", "valid JSON"),
            ("[channels.h]\ntype = \"webhook\"\nurl = \"http://x\"\nsecret_file = \"k\"", "cannot read"),
            ("[channels.h]\ntype = \"webhook\"\nurl = \"http://x\"\ncolour = 1", "unknown field"),
            ("[birth_only]\nafter = \"30d\"\ntier = \"nope\"", "not a defined tier"),
            ("[failing_renewals]\ntier = \"nope\"", "not a defined tier"),
            ("[[tiers]]\nname = \"a\"\nbefore = \"1d\"\n[failing_renewals]\ntier = \"a\"\nthreshold = 0", "at least 1"),
            ("[[tiers]]\nname = \"a\"\nbefore = \"1d\"\n[failing_renewals]\ntier = \"a\"\nwindow = \"0s\"", "must be positive"),
        ] {
            let err = parse(text, base).unwrap_err().to_string();
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        }
    }
}
