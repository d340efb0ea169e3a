//! Why an enrollment produced no certificate, in protocol-neutral terms; each front end maps
//! these to its own statuses.

use fleetca_ca::CaError;
use fleetca_ra::RaError;

/// A refused or failed enrollment.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The request is malformed (the front end's bad-request answer).
    #[error("{0}")]
    BadRequest(String),
    /// Refused by a rule.
    #[error("refused by rule '{rule}': {reason}")]
    Refused {
        /// The rule that denied.
        rule: String,
        /// Why.
        reason: String,
    },
    /// A dependency (the inventory, the store) is unavailable; retry later, at a time the
    /// front end chooses.
    #[error("{0}")]
    Unavailable(String),
    /// A rule could not be evaluated now (an inventory connector did not answer); retry
    /// after `retry_after`. Neither a certificate nor a denial.
    #[error("rule '{rule}' cannot be evaluated now (an inventory did not answer); retry in {} s", retry_after.as_secs().max(1))]
    RetryLater {
        /// The rule that could not be evaluated.
        rule: String,
        /// When the client should retry.
        retry_after: std::time::Duration,
    },
    /// A server-side failure; the detail is for the log, never for the client.
    #[error("{0}")]
    Internal(String),
}

impl From<RaError> for EnrollError {
    fn from(e: RaError) -> Self {
        match e {
            RaError::Inventory(e) => {
                Self::Unavailable(format!("the inventory is unavailable, retry later ({e})"))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CaError> for EnrollError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Refused(reason) => Self::Refused {
                rule: "inventory".into(),
                reason,
            },
            CaError::Limit { rule, reason } => Self::Refused { rule, reason },
            CaError::Store(e) => Self::Unavailable(format!(
                "the certificate could not be recorded, so it was not issued; retry later ({e})"
            )),
            other => Self::Internal(other.to_string()),
        }
    }
}
