use std::fmt;

/// Errors of the `pki` crate.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The certificate signing request was refused; see [`CsrError`].
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// A certificate failed the pre-issuance lint and was not signed.
    #[error(transparent)]
    Lint(#[from] LintError),
    /// A key could not be generated, parsed or used.
    #[error("key error: {0}")]
    Key(String),
    /// A certificate (ours or a client's) could not be parsed.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// Building or signing a certificate failed inside the X.509 encoder.
    #[error("certificate encoding failed: {0}")]
    Encoding(String),
    /// The issuer's validity leaves no room for the certificate asked for.
    #[error("{0}")]
    IssuerValidity(String),
    /// The profile cannot be applied to this request.
    #[error("profile '{profile}': {reason}")]
    Profile {
        /// Profile name.
        profile: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        Self::Encoding(e.to_string())
    }
}

/// Why a certificate signing request was refused. Each variant is a client mistake.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    /// The bytes are not a DER PKCS#10 request.
    #[error("not a PKCS#10 certificate signing request: {0}")]
    NotACsr(String),
    /// Bytes follow the request.
    #[error("trailing data after the certificate signing request")]
    TrailingData,
    /// The request's signature algorithm is not accepted (for example SHA-1).
    #[error("CSR signature algorithm {0} is not accepted")]
    UnsupportedSignatureAlgorithm(String),
    /// The request's public key algorithm is not supported at all (the detail says which
    /// and what is).
    #[error("CSR public key: {0}")]
    UnsupportedKey(String),
    /// The request's RSA key is shorter than fleetca accepts.
    #[error(
        "CSR key is RSA with {bits} bits, too small: fleetca accepts RSA keys of 2048 bits or more"
    )]
    KeyTooSmall {
        /// The modulus length.
        bits: usize,
    },
    /// An RSASSA-PSS signature with parameters fleetca does not verify.
    #[error("CSR signature is RSASSA-PSS with {0}; fleetca verifies RSASSA-PSS with SHA-256, SHA-384 or SHA-512, MGF1 with the same hash and a salt as long as the hash (openssl req -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest)")]
    UnsupportedPssParameters(String),
    /// Proof of possession failed: the signature does not verify with the request's key.
    #[error("CSR signature does not verify with its public key (proof of possession failed)")]
    BadSignature,
    /// A requested name (subject attribute or subjectAltName) contains a C0/C1 control
    /// character. The value is shown escaped.
    #[error("CSR {field} contains the control character {character}; requested names must be printable text")]
    ControlCharacter {
        /// Which name (`subject CN`, `subjectAltName`), with its escaped value.
        field: String,
        /// The character, escaped (`\n`, `\u{1b}`).
        character: String,
    },
    /// The request carries an attribute or extension that cannot be decoded.
    #[error("CSR attribute or extension cannot be decoded: {0}")]
    MalformedAttribute(String),
}

/// A certificate failed the pre-issuance lint. It lists every finding, not only the first.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub struct LintError {
    /// What the lint found, one sentence each.
    pub findings: Vec<String>,
}

impl fmt::Display for LintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "certificate failed lint: {}", self.findings.join("; "))
    }
}
