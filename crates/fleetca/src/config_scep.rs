//! `[scep]`: SCEP (issue 20) on the EST listener and, optionally, on a plain-HTTP listener.
//! Off unless the section is present (and `enabled` is not false).

use std::collections::HashSet;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use fleetca_pki::HumanDuration;
use serde::Deserialize;

/// The `[scep]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScep {
    #[serde(default = "yes")]
    enabled: bool,
    /// A plain-HTTP listener that serves only `/scep` (many SCEP clients cannot do TLS).
    http_listen: Option<String>,
    #[serde(default = "d30d")]
    ra_validity: HumanDuration,
    #[serde(default = "d24h")]
    max_clock_skew: HumanDuration,
    /// Profiles whose SCEP requests may use SHA-1, DES and 3DES (legacy devices).
    #[serde(default)]
    legacy_algorithms: Vec<String>,
    /// Profiles where a birth certificate may sign a PKCSReq instead of a challenge.
    #[serde(default)]
    birth_certificate_signer: Vec<String>,
}

fn yes() -> bool {
    true
}
fn d30d() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30 * 86_400))
}
fn d24h() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(86_400))
}

/// The SCEP settings, checked.
#[derive(Debug, Clone)]
pub struct ScepConfig {
    /// The plain-HTTP listener, if any.
    pub http_listen: Option<SocketAddr>,
    /// Lifetime of the SCEP RA certificate (renewed at two thirds).
    pub ra_validity: time::Duration,
    /// The front end's settings.
    pub settings: fleetca_scep::ScepSettings,
}

/// Checks `[scep]` against the configured profiles; `None` when disabled.
pub(crate) fn scep(
    raw: RawScep,
    profile_exists: impl Fn(&str) -> bool,
) -> anyhow::Result<Option<ScepConfig>> {
    if !raw.enabled {
        return Ok(None);
    }
    let http_listen = raw
        .http_listen
        .as_deref()
        .map(|l| {
            l.parse::<SocketAddr>()
                .with_context(|| format!("scep.http_listen '{l}' is not an address:port"))
        })
        .transpose()?;
    let named = |key: &str, list: Vec<String>| -> anyhow::Result<HashSet<String>> {
        for p in &list {
            if !profile_exists(p) {
                bail!("scep.{key}: no profile named '{p}'");
            }
        }
        Ok(list.into_iter().collect())
    };
    if raw.ra_validity.0 < std::time::Duration::from_secs(86_400) {
        bail!("scep.ra_validity must be at least 1d");
    }
    Ok(Some(ScepConfig {
        http_listen,
        ra_validity: raw.ra_validity.to_time(),
        settings: fleetca_scep::ScepSettings {
            legacy_profiles: named("legacy_algorithms", raw.legacy_algorithms)?,
            birth_signer_profiles: named("birth_certificate_signer", raw.birth_certificate_signer)?,
            max_clock_skew: raw.max_clock_skew.to_time(),
        },
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use crate::config::{default_config_text, Config};

    /// The commented `[scep]` block of the file `init` writes, uncommented.
    fn with_scep(edit: impl Fn(String) -> String) -> anyhow::Result<Config> {
        let text = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        let start = text.find("# [scep]\n").unwrap();
        let end = start + text[start..].find("\n\n").unwrap();
        let block: String = text[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let text = format!("{}{}{}", &text[..start], edit(block), &text[end..]);
        Config::parse(&text, Path::new("/data"))
    }

    #[test]
    fn the_documented_scep_section_loads() {
        let scep = with_scep(|b| b).unwrap().scep.unwrap();
        assert_eq!(scep.http_listen.unwrap().port(), 8081);
        assert_eq!(scep.ra_validity, time::Duration::days(30));
        assert_eq!(scep.settings.max_clock_skew, time::Duration::hours(24));
        assert!(scep.settings.legacy_profiles.is_empty());
        // Absent: off; enabled = false: off.
        let text = default_config_text("Acme", &[], "127.0.0.1:8443", "127.0.0.1:8080");
        assert!(Config::parse(&text, Path::new("/data"))
            .unwrap()
            .scep
            .is_none());
        let off = with_scep(|b| b.replace("enabled = true", "enabled = false")).unwrap();
        assert!(off.scep.is_none());
    }

    #[test]
    fn scep_settings_name_existing_profiles() {
        let legacy = with_scep(|b| {
            b.replace(
                "legacy_algorithms = []",
                "legacy_algorithms = [\"operational\"]",
            )
        })
        .unwrap();
        assert!(legacy
            .scep
            .unwrap()
            .settings
            .legacy_profiles
            .contains("operational"));
        let err = with_scep(|b| {
            b.replace(
                "birth_certificate_signer = []",
                "birth_certificate_signer = [\"nope\"]",
            )
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("no profile named 'nope'"),
            "{err:#}"
        );
        let err = with_scep(|b| b.replace("0.0.0.0:8081", "nowhere")).unwrap_err();
        assert!(format!("{err:#}").contains("scep.http_listen"), "{err:#}");
    }
}
