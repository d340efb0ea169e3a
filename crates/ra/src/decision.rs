use std::fmt;

/// The result of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Rule name (stable, documented, used in denials and metrics).
    pub rule: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
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
        /// For birth certificates: an allowed re-issue (the device has a live one).
        reissue: bool,
    },
    /// Refuse.
    Deny {
        /// The rule that failed.
        rule: &'static str,
        /// Why, in words the device operator can act on.
        reason: String,
    },
}

/// A decision with the result of every rule that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Issue or deny.
    pub outcome: Outcome,
    /// Every rule evaluated, in order.
    pub checks: Vec<CheckResult>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Issue { device_serial, .. } => write!(f, "issue to {device_serial}"),
            Outcome::Deny { rule, reason } => write!(f, "denied by rule '{rule}': {reason}"),
        }
    }
}
