//! Why a CMP request was refused, and the PKIFailureInfo bit (RFC 4210 section 5.2.3) each
//! refusal is answered with. The message (the RA's rule and reason for a denial) goes into
//! the error message's statusString; internals go to the log only.

/// PKIFailureInfo bits (RFC 4210 section 5.2.3, RFC 9480). `cmpv2` 0.2 declares them as
/// flag values rather than bit numbers, which encodes most of them as other bits: fleetca
/// encodes the BIT STRING itself from these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum Fail {
    BadAlg = 0,
    BadMessageCheck = 1,
    BadRequest = 2,
    BadCertId = 4,
    BadDataFormat = 5,
    WrongAuthority = 6,
    BadPOP = 9,
    CertRevoked = 10,
    BadRecipientNonce = 13,
    BadSenderNonce = 18,
    BadCertTemplate = 19,
    SignerNotTrusted = 20,
    TransactionIdInUse = 21,
    UnsupportedVersion = 22,
    NotAuthorized = 23,
    SystemUnavail = 24,
    SystemFailure = 25,
}

impl Fail {
    /// The DER BIT STRING with this one bit set (trailing zero bits removed).
    pub fn bit_string(self) -> Result<der::asn1::BitString, der::Error> {
        let bit = self as usize;
        let mut bytes = vec![0u8; bit / 8 + 1];
        if let Some(b) = bytes.last_mut() {
            *b = 0x80 >> (bit % 8);
        }
        // 7 - bit % 8 is at most 7: a valid unused-bit count.
        #[allow(clippy::cast_possible_truncation)]
        let unused = (7 - bit % 8) as u8;
        der::asn1::BitString::new(unused, bytes)
    }
}

/// A refused or failed CMP request.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CmpError {
    /// The body is not a DER PKIMessage (or one this server reads).
    #[error("the body is not a DER-encoded PKIMessage: {0}")]
    BadDataFormat(String),
    /// pvno other than cmp2000.
    #[error("unsupported CMP version {0}; fleetca speaks cmp2000 (2)")]
    UnsupportedVersion(u8),
    /// A required header field is missing or malformed, or the body kind is not served.
    #[error("{0}")]
    BadRequest(String),
    /// The protection does not verify, or is missing.
    #[error("message protection: {0}")]
    BadMessageCheck(String),
    /// A protection or proof-of-possession algorithm fleetca does not accept.
    #[error("algorithm not accepted: {0}")]
    BadAlgorithm(String),
    /// The signer's certificate does not chain to a CA fleetca trusts for this.
    #[error("the signer is not trusted: {0}")]
    SignerNotTrusted(String),
    /// The message names another recipient.
    #[error("the message is addressed to {0}, not to this CA")]
    WrongAuthority(String),
    /// The transactionID of a new request is already in use.
    #[error("transactionID is already in use (a replayed or repeated request)")]
    TransactionIdInUse,
    /// recipNonce does not match what fleetca sent last in this transaction.
    #[error("{0}")]
    BadRecipientNonce(String),
    /// senderNonce missing or too short.
    #[error("senderNonce must be present and at least 16 bytes")]
    BadSenderNonce,
    /// The proof of possession does not verify.
    #[error("proof of possession: {0}")]
    BadPop(String),
    /// The certificate template cannot be used.
    #[error("certificate request: {0}")]
    BadCertTemplate(String),
    /// A certificate named in the request is not the one of this transaction/client.
    #[error("{0}")]
    BadCertId(String),
    /// Refused by a rule of the RA.
    #[error("refused by rule '{rule}': {reason}")]
    Refused {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
    /// The client's own certificate is revoked or on hold.
    #[error("{0}")]
    CertRevoked(String),
    /// Not allowed (a used or expired secret, a client asking for another's certificate).
    #[error("{0}")]
    NotAuthorized(String),
    /// Temporarily unavailable (the inventory); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The server's own failure; the detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl CmpError {
    /// The PKIFailureInfo bit of the error message.
    pub fn failure_info(&self) -> Fail {
        match self {
            Self::BadDataFormat(_) => Fail::BadDataFormat,
            Self::UnsupportedVersion(_) => Fail::UnsupportedVersion,
            Self::BadRequest(_) => Fail::BadRequest,
            Self::BadMessageCheck(_) => Fail::BadMessageCheck,
            Self::BadAlgorithm(_) => Fail::BadAlg,
            Self::SignerNotTrusted(_) => Fail::SignerNotTrusted,
            Self::WrongAuthority(_) => Fail::WrongAuthority,
            Self::TransactionIdInUse => Fail::TransactionIdInUse,
            Self::BadRecipientNonce(_) => Fail::BadRecipientNonce,
            Self::BadSenderNonce => Fail::BadSenderNonce,
            Self::BadPop(_) => Fail::BadPOP,
            Self::BadCertTemplate(_) => Fail::BadCertTemplate,
            Self::BadCertId(_) => Fail::BadCertId,
            Self::Refused { .. } | Self::NotAuthorized(_) => Fail::NotAuthorized,
            Self::CertRevoked(_) => Fail::CertRevoked,
            Self::Unavailable(_) => Fail::SystemUnavail,
            Self::Internal(_) => Fail::SystemFailure,
        }
    }

    /// The text sent to the client (statusString).
    pub fn status_text(&self) -> String {
        self.to_string()
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<fleetca_enroll::EnrollError> for CmpError {
    fn from(e: fleetca_enroll::EnrollError) -> Self {
        use fleetca_enroll::EnrollError;
        match e {
            EnrollError::BadRequest(m) => Self::BadCertTemplate(m),
            EnrollError::Refused { rule, reason } => Self::Refused { rule, reason },
            EnrollError::Unavailable(m) => Self::Unavailable(m),
            EnrollError::RetryLater { .. } => Self::Unavailable(e.to_string()),
            EnrollError::Internal(d) => Self::Internal(d),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<fleetca_store::StoreError> for CmpError {
    fn from(e: fleetca_store::StoreError) -> Self {
        Self::Unavailable(format!("the inventory is unavailable, retry later ({e})"))
    }
}
