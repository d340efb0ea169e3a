use std::fmt;
use std::time::Duration;

/// The stages of a decision, in evaluation order. A request meets them like a PKI
/// workflow: is it well-formed and allowed technically, who is asking, is the identity
/// consistent, is the device eligible (inventory, limits, operator rules), and does a
/// human need to approve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Key algorithm, CA request, extensions.
    Technical,
    /// The credential may be used for this operation.
    Authentication,
    /// The request names the authenticated device and nothing else.
    Identity,
    /// Device state, inventories, limits and custom rules.
    Eligibility,
    /// Manual approval.
    Approval,
}

impl Stage {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Technical => "technical",
            Self::Authentication => "authentication",
            Self::Identity => "identity",
            Self::Eligibility => "eligibility",
            Self::Approval => "approval",
        }
    }

    /// The stage of a built-in rule name.
    pub fn of(rule: &str) -> Self {
        match rule {
            "key-algorithm" | "no-ca-request" | "no-extra-extensions" => Self::Technical,
            "authentication" => Self::Authentication,
            "device-serial" | "serial-pattern" | "account-scope" | "subject" | "new-key"
            | "station-scope" | "channel-binding" | "birth-duplicate" | "manufacturer-scope" => {
                Self::Identity
            }
            "manual-approval" => Self::Approval,
            _ => Self::Eligibility,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The result of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The stage the rule belongs to.
    pub stage: Stage,
    /// Rule name (stable, documented, used in denials and metrics).
    pub rule: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What it found (operator-facing: may name connectors and their errors).
    pub detail: String,
}

/// What to do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Issue a certificate for this device under the request's profile.
    Issue {
        /// The device serial number the certificate names.
        device_serial: String,
        /// For renewals: the serial of the certificate being renewed.
        replaces: Option<String>,
        /// The recorded certificate that authenticated the request: the recording commit
        /// issues only if it is still valid then (see `NewCertificate::authenticated_by`).
        authenticated_by: Option<String>,
        /// The profile's per-device limits, for the recording commit to enforce.
        limits: fleetca_store::DeviceLimits,
        /// What binds the device, for the recording commit to check and record.
        binding: fleetca_store::DeviceBinding,
        /// For birth certificates: an allowed re-issue (the device has a live one).
        reissue: bool,
        /// The approval request this issuance fulfils (claimed; complete it once issued).
        approval: Option<i64>,
    },
    /// This very request was approved and issued before: return that certificate.
    AlreadyIssued {
        /// The device.
        device_serial: String,
        /// The certificate issued when the approved request was first polled.
        certificate_serial: String,
        /// Its DER.
        der: Vec<u8>,
    },
    /// Refuse.
    Deny {
        /// The rule that failed.
        rule: &'static str,
        /// Why, in words the device operator can act on.
        reason: String,
    },
    /// Wait for an operator (EST 202 with `Retry-After`).
    Pending {
        /// The device.
        device_serial: String,
        /// The approval request.
        approval: i64,
        /// When to poll again.
        retry_after: Duration,
    },
    /// An external directory could not answer: no answer either way, retry later (EST 503
    /// with `Retry-After`). The reason shown to devices names the rule, not the directory.
    Unavailable {
        /// The rule that could not be evaluated.
        rule: &'static str,
        /// When to retry.
        retry_after: Duration,
    },
}

/// A decision with the result of every rule that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Issue or deny.
    pub outcome: Outcome,
    /// Every rule evaluated, in order.
    pub checks: Vec<CheckResult>,
    /// The device the request is about, once the RA established it.
    pub device_serial: Option<String>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Issue { device_serial, .. } => write!(f, "issue to {device_serial}"),
            Outcome::AlreadyIssued {
                certificate_serial, ..
            } => write!(f, "already issued as certificate {certificate_serial}"),
            Outcome::Deny { rule, reason } => write!(f, "denied by rule '{rule}': {reason}"),
            Outcome::Pending { approval, .. } => {
                write!(f, "waiting for approval (request {approval})")
            }
            Outcome::Unavailable { rule, .. } => {
                write!(f, "rule '{rule}' could not be evaluated now; retry later")
            }
        }
    }
}
