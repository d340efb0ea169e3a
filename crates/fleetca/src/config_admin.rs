//! `[admin]`: the admin API listener (issue 16). Off unless `listen` is set here or
//! `fleetca serve --admin-listen` is given.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use fleetca_pki::HumanDuration;
use serde::Deserialize;

/// The `[admin]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    listen: Option<String>,
    #[serde(default = "d30m")]
    session_idle: HumanDuration,
    #[serde(default = "d12h")]
    session_lifetime: HumanDuration,
    #[serde(default = "default_failures")]
    auth_failures_per_minute: u32,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_max_per_source")]
    max_connections_per_source: usize,
    #[serde(default = "default_accept_rate")]
    accept_rate_per_source: u32,
    #[serde(default = "d5s")]
    first_byte_timeout: HumanDuration,
}

fn d30m() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1800))
}
fn d12h() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(12 * 3600))
}
fn d5s() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn default_failures() -> u32 {
    10
}
fn default_max_connections() -> usize {
    256
}
fn default_max_per_source() -> usize {
    32
}
fn default_accept_rate() -> u32 {
    20
}

/// The admin API's settings, checked.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Where the listener is (`None`: off unless `--admin-listen`).
    pub listen: Option<SocketAddr>,
    /// A login session unused this long ends.
    pub session_idle: time::Duration,
    /// A login session ends this long after the login.
    pub session_lifetime: time::Duration,
    /// Failed logins and bad tokens per source and minute before 429.
    pub auth_failures_per_minute: u32,
    /// Connection admission of the listener.
    pub admission: fleetca_listener::AdmissionLimits,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: None,
            session_idle: time::Duration::minutes(30),
            session_lifetime: time::Duration::hours(12),
            auth_failures_per_minute: default_failures(),
            admission: fleetca_listener::AdmissionLimits {
                max_connections: default_max_connections(),
                max_connections_per_source: default_max_per_source(),
                accept_rate_per_source: default_accept_rate(),
                first_byte_timeout: d5s().0,
            },
        }
    }
}

/// Checks `[admin]`.
pub(crate) fn admin(raw: RawAdmin) -> anyhow::Result<AdminSettings> {
    let listen = raw
        .listen
        .as_deref()
        .map(|l| {
            l.parse::<SocketAddr>()
                .with_context(|| format!("admin.listen '{l}' is not an address:port"))
        })
        .transpose()?;
    if raw.session_idle.0.is_zero() {
        bail!("admin.session_idle must be more than 0s");
    }
    if raw.session_lifetime.0 < raw.session_idle.0 {
        bail!(
            "admin.session_lifetime ({}) must not be shorter than admin.session_idle ({})",
            raw.session_lifetime,
            raw.session_idle
        );
    }
    if raw.session_lifetime.0 > std::time::Duration::from_secs(30 * 86_400) {
        bail!("admin.session_lifetime must be at most 30d (people log in again; automation uses API tokens)");
    }
    if raw.auth_failures_per_minute == 0 {
        bail!("admin.auth_failures_per_minute must be at least 1");
    }
    let admission = crate::config::admission(
        "admin",
        &raw.max_connections,
        raw.max_connections_per_source,
        raw.accept_rate_per_source,
        raw.first_byte_timeout.0,
    )?;
    Ok(AdminSettings {
        listen,
        session_idle: raw.session_idle.to_time(),
        session_lifetime: raw.session_lifetime.to_time(),
        auth_failures_per_minute: raw.auth_failures_per_minute,
        admission,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> anyhow::Result<AdminSettings> {
        admin(toml::from_str::<RawAdmin>(text)?)
    }

    #[test]
    fn defaults_and_settings_are_read() {
        let s = parse("").unwrap();
        assert_eq!(s.listen, None);
        assert_eq!(s.session_idle, time::Duration::minutes(30));
        assert_eq!(s.session_lifetime, time::Duration::hours(12));
        assert_eq!(s.auth_failures_per_minute, 10);
        let s = parse("listen = \"127.0.0.1:8444\"\nsession_idle = \"10m\"\nsession_lifetime = \"8h\"\nauth_failures_per_minute = 5").unwrap();
        assert_eq!(s.listen, Some("127.0.0.1:8444".parse().unwrap()));
        assert_eq!(s.session_idle, time::Duration::minutes(10));
        assert_eq!(s.auth_failures_per_minute, 5);
    }

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_setting() {
        for (text, why) in [
            ("listen = \"localhost\"", "admin.listen"),
            ("session_idle = \"0s\"", "admin.session_idle"),
            (
                "session_idle = \"2h\"\nsession_lifetime = \"1h\"",
                "admin.session_lifetime",
            ),
            ("session_lifetime = \"60d\"", "at most 30d"),
            (
                "auth_failures_per_minute = 0",
                "admin.auth_failures_per_minute",
            ),
            ("max_connections = 0", "admin.max_connections"),
            ("session_idle = 30", "session_idle"),
            ("sessions = 3", "unknown field"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
