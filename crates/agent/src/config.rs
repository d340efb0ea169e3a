//! The agent's configuration: TOML, parsed then validated. Every setting is documented in
//! `examples/fleetca-agent.toml`, which a test loads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetca_pki::KeyAlgorithm;
use serde::Deserialize;

use crate::est::Endpoint;
use crate::machine::RenewalPolicy;
use crate::trust::{parse_fingerprint, Fingerprint};
use crate::AgentError;
use fleetca_pki::HumanDuration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    identity: RawIdentity,
    #[serde(default)]
    renewal: RawRenewal,
    #[serde(default)]
    hooks: RawHooks,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    url: String,
    #[serde(default)]
    label: String,
    trust_anchor: PathBuf,
    #[serde(default)]
    bootstrap_fingerprint: String,
    #[serde(default = "default_timeout")]
    timeout: HumanDuration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    birth_key: PathBuf,
    birth_certificate: PathBuf,
    key: PathBuf,
    certificate: PathBuf,
    #[serde(default = "default_algorithm")]
    key_algorithm: String,
    #[serde(default)]
    status_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRenewal {
    renew_at: f64,
    renew_before: Option<HumanDuration>,
    jitter: f64,
    check_interval: HumanDuration,
    retry_initial: HumanDuration,
    retry_max: HumanDuration,
    denied_initial: HumanDuration,
    denied_retry: HumanDuration,
}

impl Default for RawRenewal {
    fn default() -> Self {
        let d = RenewalPolicy::default();
        let human = |t: time::Duration| HumanDuration(Duration::try_from(t).unwrap_or_default());
        Self {
            renew_at: d.renew_at,
            renew_before: None,
            jitter: d.jitter,
            check_interval: human(d.check_interval),
            retry_initial: human(d.retry_initial),
            retry_max: human(d.retry_max),
            denied_initial: human(d.denied_initial),
            denied_retry: human(d.denied_retry),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    pid_file: Option<PathBuf>,
    #[serde(default = "default_signal")]
    signal: String,
    #[serde(default = "default_timeout")]
    timeout: HumanDuration,
}

impl Default for RawHooks {
    fn default() -> Self {
        Self {
            command: Vec::new(),
            pid_file: None,
            signal: default_signal(),
            timeout: default_timeout(),
        }
    }
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_algorithm() -> String {
    "p256".into()
}

fn default_signal() -> String {
    "HUP".into()
}

/// A signal the agent may send to a PID file's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookSignal {
    /// SIGHUP (the usual "reload").
    Hup,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
    /// SIGTERM.
    Term,
}

impl HookSignal {
    fn parse(name: &str) -> Result<Self, String> {
        match name
            .trim()
            .trim_start_matches("SIG")
            .to_ascii_uppercase()
            .as_str()
        {
            "HUP" => Ok(Self::Hup),
            "USR1" => Ok(Self::Usr1),
            "USR2" => Ok(Self::Usr2),
            "TERM" => Ok(Self::Term),
            _ => Err(format!(
                "hooks.signal '{name}': use HUP, USR1, USR2 or TERM"
            )),
        }
    }
}

/// Where the server is and how it is trusted.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The EST endpoint, label included.
    pub endpoint: Endpoint,
    /// The trust anchors file (PEM), kept up to date by the agent.
    pub trust_anchor: PathBuf,
    /// If the anchors file does not exist: fetch `/cacerts` and trust the certificate with
    /// this SHA-256 fingerprint.
    pub bootstrap_fingerprint: Option<Fingerprint>,
    /// Bound on each request (connect, TLS, HTTP).
    pub timeout: Duration,
}

/// The device's files.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Birth key (PKCS#8 PEM), read only.
    pub birth_key: PathBuf,
    /// Birth certificate (PEM), read only.
    pub birth_certificate: PathBuf,
    /// Operational key, written by the agent (0600).
    pub key: PathBuf,
    /// Operational certificate chain, written by the agent.
    pub certificate: PathBuf,
    /// Algorithm of the keys the agent generates.
    pub key_algorithm: KeyAlgorithm,
    /// Where the agent records its last attempt for `fleetca-agent status`.
    pub status_file: PathBuf,
}

/// What runs after a successful renewal.
#[derive(Debug, Clone)]
pub struct HooksConfig {
    /// A command and its arguments (no shell), empty for none.
    pub command: Vec<String>,
    /// A PID file whose process gets `signal`.
    pub pid_file: Option<PathBuf>,
    /// The signal for `pid_file`.
    pub signal: HookSignal,
    /// Longest a command may run before it is killed.
    pub timeout: Duration,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server and trust.
    pub server: ServerConfig,
    /// Files.
    pub identity: IdentityConfig,
    /// Renewal and retry policy.
    pub renewal: RenewalPolicy,
    /// Post-renewal hooks.
    pub hooks: HooksConfig,
}

impl Config {
    /// Loads and validates a configuration file. Relative paths in it are relative to the
    /// file's directory, not to the working directory: the agent runs from cron, systemd
    /// or a shell in any directory and must find the same files.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| AgentError::io(path, e))?;
        let config = Self::parse(&text)
            .map_err(|e| AgentError::Config(format!("{}: {e}", path.display())))?;
        Ok(match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => config.relative_to(dir),
            _ => config,
        })
    }

    /// The same configuration with every relative file path joined to `dir` (absolute
    /// paths unchanged). `hooks.command` is a program and its arguments, run as given.
    pub fn relative_to(mut self, dir: &Path) -> Self {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        join(&mut self.server.trust_anchor);
        let ids = &mut self.identity;
        for p in [
            &mut ids.birth_key,
            &mut ids.birth_certificate,
            &mut ids.key,
            &mut ids.certificate,
            &mut ids.status_file,
        ] {
            join(p);
        }
        if let Some(p) = self.hooks.pid_file.as_mut() {
            join(p);
        }
        self
    }

    /// Parses and validates configuration text. All problems are reported at once.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut note = |r: Result<(), String>| {
            if let Err(e) = r {
                problems.push(e);
            }
        };
        let label = Some(raw.server.label.as_str()).filter(|l| !l.is_empty());
        let endpoint =
            Endpoint::parse(&raw.server.url, label).map_err(|e| format!("server.url: {e}"));
        let fingerprint = match raw.server.bootstrap_fingerprint.trim() {
            "" => Ok(None),
            text => parse_fingerprint(text)
                .map(Some)
                .map_err(|e| format!("server.bootstrap_fingerprint: {e}")),
        };
        let algorithm = raw
            .identity
            .key_algorithm
            .parse::<KeyAlgorithm>()
            .map_err(|e| format!("identity.key_algorithm: {e}"));
        let signal = HookSignal::parse(&raw.hooks.signal);
        let r = &raw.renewal;
        note(check(
            r.renew_at > 0.0 && r.renew_at < 1.0,
            "renewal.renew_at must be between 0 and 1 (e.g. 0.6667)",
        ));
        note(check(
            (0.0..=0.5).contains(&r.jitter),
            "renewal.jitter must be between 0 and 0.5",
        ));
        note(check(
            r.check_interval.0.as_secs() >= 1,
            "renewal.check_interval must be at least 1s",
        ));
        note(check(
            r.retry_initial.0.as_secs() >= 1,
            "renewal.retry_initial must be at least 1s",
        ));
        note(check(
            r.retry_max >= r.retry_initial,
            "renewal.retry_max must be at least renewal.retry_initial",
        ));
        note(check(
            r.denied_retry.0.as_secs() >= 1,
            "renewal.denied_retry must be at least 1s",
        ));
        note(check(
            r.denied_initial.0.as_secs() >= 1 && r.denied_initial <= r.denied_retry,
            "renewal.denied_initial must be at least 1s and at most renewal.denied_retry",
        ));
        note(check(
            raw.server.timeout.0.as_secs() >= 1,
            "server.timeout must be at least 1s",
        ));
        note(check(
            raw.hooks.timeout.0.as_secs() >= 1,
            "hooks.timeout must be at least 1s",
        ));
        note(check(
            raw.identity.key != raw.identity.birth_key
                && raw.identity.certificate != raw.identity.birth_certificate,
            "identity.key and identity.certificate must not be the birth files",
        ));
        note(check(
            raw.hooks.command.first().is_none_or(|c| !c.is_empty()),
            "hooks.command: the first element is the program to run",
        ));
        let (endpoint, fingerprint, algorithm, signal) =
            match (endpoint, fingerprint, algorithm, signal) {
                (Ok(e), Ok(f), Ok(a), Ok(s)) if problems.is_empty() => (e, f, a, s),
                (e, f, a, s) => {
                    problems.extend(e.err());
                    problems.extend(f.err());
                    problems.extend(a.err());
                    problems.extend(s.err());
                    return Err(problems.join("; "));
                }
            };
        let status_file = raw.identity.status_file.unwrap_or_else(|| {
            let mut name = raw
                .identity
                .certificate
                .file_name()
                .unwrap_or_default()
                .to_os_string();
            name.push(".status.json");
            raw.identity.certificate.with_file_name(name)
        });
        Ok(Self {
            server: ServerConfig {
                endpoint,
                trust_anchor: raw.server.trust_anchor,
                bootstrap_fingerprint: fingerprint,
                timeout: raw.server.timeout.0,
            },
            identity: IdentityConfig {
                birth_key: raw.identity.birth_key,
                birth_certificate: raw.identity.birth_certificate,
                key: raw.identity.key,
                certificate: raw.identity.certificate,
                key_algorithm: algorithm,
                status_file,
            },
            renewal: RenewalPolicy {
                renew_at: r.renew_at,
                renew_before: r.renew_before.map(HumanDuration::to_time),
                jitter: r.jitter,
                check_interval: r.check_interval.to_time(),
                retry_initial: r.retry_initial.to_time(),
                retry_max: r.retry_max.to_time(),
                denied_initial: r.denied_initial.to_time(),
                denied_retry: r.denied_retry.to_time(),
            },
            hooks: HooksConfig {
                command: raw.hooks.command,
                pid_file: raw.hooks.pid_file,
                signal,
                timeout: raw.hooks.timeout.0,
            },
        })
    }
}

fn check(ok: bool, message: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/fleetca-agent.toml");

    #[test]
    fn the_documented_example_loads_with_the_documented_defaults() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.identity.key_algorithm, KeyAlgorithm::P256);
        assert_eq!(c.renewal.renew_before, None);
        assert!((c.renewal.renew_at - 2.0 / 3.0).abs() < 0.001);
        assert_eq!(c.renewal.check_interval, time::Duration::hours(1));
        assert_eq!(c.renewal.retry_max, time::Duration::hours(1));
        assert_eq!(c.hooks.signal, HookSignal::Hup);
        assert_eq!(c.server.timeout, Duration::from_secs(30));
        assert_eq!(
            c.identity.status_file,
            PathBuf::from("/var/lib/fleetca-agent/status.json")
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_their_names() {
        let cases = [
            (
                EXAMPLE.replace("[renewal]", "[renewal]\nrenew_every = \"1d\""),
                "renew_every",
            ),
            (
                EXAMPLE.replace("key_algorithm = \"p256\"", "key_algorithm = \"dsa\""),
                "identity.key_algorithm",
            ),
            (
                EXAMPLE.replace("jitter = 0.1", "jitter = 0.9"),
                "renewal.jitter",
            ),
            (EXAMPLE.replace("https://", "http://"), "server.url"),
            (
                EXAMPLE.replace("signal = \"HUP\"", "signal = \"KILL\""),
                "hooks.signal",
            ),
            (
                EXAMPLE.replace("retry_max = \"1h\"", "retry_max = \"1s\""),
                "renewal.retry_max",
            ),
        ];
        for (text, expected) in cases {
            let err = Config::parse(&text).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file_and_absolute_ones_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let text = EXAMPLE
            .replace("/var/lib/fleetca-agent/device.key", "state/device.key")
            .replace("/var/lib/fleetca-agent/status.json", "status.json");
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.identity.key, dir.path().join("state/device.key"));
        assert_eq!(c.identity.status_file, dir.path().join("status.json"));
        let example = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.identity.certificate, example.identity.certificate);
        assert_eq!(c.server.trust_anchor, example.server.trust_anchor);
    }

    #[test]
    fn renew_before_and_a_pin_are_read() {
        let text = EXAMPLE
            .replace("# renew_before = \"7d\"", "renew_before = \"7d\"")
            .replace(
                "bootstrap_fingerprint = \"\"",
                "bootstrap_fingerprint = \"sha256:00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF\"",
            );
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.renewal.renew_before, Some(time::Duration::days(7)));
        assert!(c.server.bootstrap_fingerprint.is_some());
    }
}
