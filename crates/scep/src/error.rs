//! Why a SCEP request was refused: each kind is one RFC 8894 failInfo, with the rule (or
//! check) that refused it for the log and the decision.

/// RFC 8894 section 3.2.1.4 failInfo values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailInfo {
    /// Unrecognized or unsupported algorithm.
    BadAlg,
    /// Integrity check (signature, envelope) failed.
    BadMessageCheck,
    /// Transaction not permitted or supported.
    BadRequest,
    /// The signingTime attribute was not close enough to the system time.
    BadTime,
    /// No certificate could be identified matching the provided criteria.
    BadCertId,
}

impl FailInfo {
    /// The PrintableString value of the failInfo attribute.
    pub fn code(self) -> &'static str {
        match self {
            Self::BadAlg => "0",
            Self::BadMessageCheck => "1",
            Self::BadRequest => "2",
            Self::BadTime => "3",
            Self::BadCertId => "4",
        }
    }

    /// The name RFC 8894 gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadAlg => "badAlg",
            Self::BadMessageCheck => "badMessageCheck",
            Self::BadRequest => "badRequest",
            Self::BadTime => "badTime",
            Self::BadCertId => "badCertId",
        }
    }
}

/// A refused or failed SCEP request.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ScepError {
    /// The message could not be read at all (not a pkiMessage): answered with HTTP 400,
    /// since there is no transaction to answer in SCEP terms.
    #[error("not a SCEP pkiMessage: {0}")]
    Malformed(String),
    /// An algorithm fleetca does not accept (or only for legacy profiles).
    #[error("{0}")]
    BadAlg(String),
    /// A signature, digest or envelope that does not check out.
    #[error("{0}")]
    BadMessageCheck(String),
    /// A request fleetca does not permit (the rule says which).
    #[error("refused by rule '{rule}': {reason}")]
    Refused {
        /// The rule or check that refused.
        rule: String,
        /// Why.
        reason: String,
    },
    /// The signing time is too far from the server's clock.
    #[error("{0}")]
    BadTime(String),
    /// No certificate matches (GetCert, GetCRL, CertPoll of an unknown transaction).
    #[error("{0}")]
    BadCertId(String),
    /// The server cannot answer now (store unavailable): HTTP 503.
    #[error("{0}")]
    Unavailable(String),
    /// A server-side failure (HTTP 500); the detail is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ScepError {
    /// A refusal by a rule or check.
    pub fn refused(rule: &str, reason: impl Into<String>) -> Self {
        Self::Refused {
            rule: rule.to_string(),
            reason: reason.into(),
        }
    }

    /// The failInfo of a refusal answered in SCEP terms; `None` for what is answered with
    /// an HTTP status instead.
    pub fn fail_info(&self) -> Option<FailInfo> {
        match self {
            Self::BadAlg(_) => Some(FailInfo::BadAlg),
            Self::BadMessageCheck(_) => Some(FailInfo::BadMessageCheck),
            Self::Refused { .. } => Some(FailInfo::BadRequest),
            Self::BadTime(_) => Some(FailInfo::BadTime),
            Self::BadCertId(_) => Some(FailInfo::BadCertId),
            Self::Malformed(_) | Self::Unavailable(_) | Self::Internal(_) => None,
        }
    }

    /// The rule named in the log and the decision.
    pub fn rule(&self) -> &str {
        match self {
            Self::Refused { rule, .. } => rule,
            Self::BadAlg(_) => "scep-algorithms",
            Self::BadMessageCheck(_) => "scep-message-check",
            Self::BadTime(_) => "scep-signing-time",
            Self::BadCertId(_) => "scep-certificate-id",
            Self::Malformed(_) => "scep-message",
            Self::Unavailable(_) | Self::Internal(_) => "-",
        }
    }
}

impl From<fleetca_enroll::EnrollError> for ScepError {
    fn from(e: fleetca_enroll::EnrollError) -> Self {
        use fleetca_enroll::EnrollError;
        match e {
            EnrollError::BadRequest(reason) => Self::refused("csr", reason),
            EnrollError::Refused { rule, reason } => Self::Refused { rule, reason },
            EnrollError::Unavailable(m) => Self::Unavailable(m),
            EnrollError::RetryLater { rule, retry_after } => Self::Unavailable(format!(
                "rule '{rule}' cannot be evaluated now; retry in {} s",
                retry_after.as_secs().max(1)
            )),
            EnrollError::Internal(d) => Self::Internal(d),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<fleetca_store::StoreError> for ScepError {
    fn from(e: fleetca_store::StoreError) -> Self {
        Self::Unavailable(format!("the store is unavailable, retry later ({e})"))
    }
}
