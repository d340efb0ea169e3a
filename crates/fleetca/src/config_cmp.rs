//! `[cmp]`: the CMP front end (issue 19, README "CMP") on the EST listener, at
//! `/.well-known/cmp` and `/.well-known/cmp/p/<label>` with the labels of `[est]`. Off
//! unless `enabled = true`: a new enrollment protocol is opened on purpose.

use anyhow::bail;
use fleetca_pki::HumanDuration;
use serde::Deserialize;

/// The `[cmp]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCmp {
    #[serde(default)]
    enabled: bool,
    #[serde(default = "d5m")]
    confirm_timeout: HumanDuration,
    #[serde(default = "yes")]
    implicit_confirm: bool,
    #[serde(default = "d30d")]
    protection_validity: HumanDuration,
    #[serde(default = "d24h")]
    secret_lifetime: HumanDuration,
}

fn d5m() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}
fn d30d() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30 * 86_400))
}
fn d24h() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(86_400))
}
fn yes() -> bool {
    true
}

/// The CMP settings, checked.
#[derive(Debug, Clone)]
pub struct CmpConfig {
    /// Whether `fleetca serve` answers CMP.
    pub enabled: bool,
    /// How long an issued certificate waits for certConf before it is revoked.
    pub confirm_timeout: time::Duration,
    /// Whether a client's request for implicit confirmation is granted.
    pub implicit_confirm: bool,
    /// Lifetime of the CMP protection certificate (renewed after two thirds).
    pub protection_validity: time::Duration,
    /// Default lifetime of a shared secret (`fleetca cmp secret create --expires`).
    pub secret_lifetime: time::Duration,
}

impl Default for CmpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            confirm_timeout: d5m().to_time(),
            implicit_confirm: true,
            protection_validity: d30d().to_time(),
            secret_lifetime: d24h().to_time(),
        }
    }
}

/// Checks `[cmp]`.
pub(crate) fn cmp(raw: RawCmp) -> anyhow::Result<CmpConfig> {
    if raw.confirm_timeout.0 < std::time::Duration::from_secs(10) {
        bail!("cmp.confirm_timeout must be at least 10s (a client needs time to confirm)");
    }
    if raw.protection_validity.0 < std::time::Duration::from_secs(86_400) {
        bail!("cmp.protection_validity must be at least 1d");
    }
    if raw.secret_lifetime.0.is_zero()
        || raw.secret_lifetime.0 > std::time::Duration::from_secs(90 * 86_400)
    {
        bail!("cmp.secret_lifetime must be between 1s and 90d");
    }
    Ok(CmpConfig {
        enabled: raw.enabled,
        confirm_timeout: raw.confirm_timeout.to_time(),
        implicit_confirm: raw.implicit_confirm,
        protection_validity: raw.protection_validity.to_time(),
        secret_lifetime: raw.secret_lifetime.to_time(),
    })
}
