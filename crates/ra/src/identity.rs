use fleetca_pki::CertificateInfo;

/// The EST operation being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `simpleenroll`: a first operational certificate.
    Enroll,
    /// `simplereenroll`: renewal with the current operational certificate.
    Reenroll,
    /// A birth certificate issued centrally (`fleetca device birth`).
    Birth,
}

impl Operation {
    /// The EST path segment.
    pub fn name(self) -> &'static str {
        match self {
            Self::Enroll => "simpleenroll",
            Self::Reenroll => "simplereenroll",
            Self::Birth => "birth",
        }
    }
}

/// Who is asking, as established by the front end (chain validation or password check).
#[derive(Debug, Clone)]
pub enum ClientIdentity {
    /// A device presenting a birth certificate.
    BirthCertificate {
        /// Name of the CA that issued it: `manufacturing` (ours) or an imported
        /// manufacturer CA's name.
        issuer: String,
        /// Whether the issuing CA is this fleetca's own manufacturing CA (then the
        /// certificate must be in the inventory).
        issued_here: bool,
        /// The certificate.
        certificate: CertificateInfo,
    },
    /// A device presenting its operational certificate.
    OperationalCertificate {
        /// The certificate.
        certificate: CertificateInfo,
    },
    /// A factory station, by its credential from the registration CA.
    Station {
        /// The station's name (its credential's CN).
        name: String,
        /// The credential.
        certificate: CertificateInfo,
    },
    /// The operator, through the admin CLI on the data directory, naming the device.
    Administrator {
        /// The device serial number the operator named.
        device_serial: String,
    },
    /// An enrollment account (HTTP Basic), password already verified.
    Account {
        /// Account name.
        name: String,
        /// The only label the account may use (`None`: the default label only).
        label: Option<String>,
        /// Regular expression the whole device serial must match.
        serial_pattern: Option<String>,
        /// Without a pattern: whether the account may name any serial.
        any_serial: bool,
        /// Whether it may enroll devices the inventory already knows (otherwise only new
        /// devices, each once).
        known_devices: bool,
    },
    /// A device that proved knowledge of a one-time enrollment secret an operator created
    /// for its serial number (a CMP shared secret, a SCEP challenge password), already
    /// verified and consumed by the front end. It authenticates the first enrollment of
    /// that device only.
    EnrollmentSecret {
        /// The device serial number the secret is bound to.
        device_serial: String,
        /// The protocol whose secret it was (`cmp`, `scep`).
        protocol: &'static str,
    },
}

impl ClientIdentity {
    /// A short description for decisions and logs.
    pub fn describe(&self) -> String {
        match self {
            Self::BirthCertificate { certificate, .. } => {
                format!("birth certificate {}", certificate.serial)
            }
            Self::OperationalCertificate { certificate } => {
                format!("operational certificate {}", certificate.serial)
            }
            Self::Account { name, .. } => format!("account '{name}'"),
            Self::Administrator { .. } => "administrator".to_string(),
            Self::Station { name, .. } => format!("station '{name}'"),
            Self::EnrollmentSecret {
                device_serial,
                protocol,
            } => format!("one-time {protocol} secret for device {device_serial}"),
        }
    }

    /// The role name used in decisions (`birth`, `operational`, `account`).
    pub fn role(&self) -> &'static str {
        match self {
            Self::BirthCertificate { .. } => "birth",
            Self::OperationalCertificate { .. } => "operational",
            Self::Account { .. } => "account",
            Self::Administrator { .. } => "administrator",
            Self::Station { .. } => "station",
            Self::EnrollmentSecret { .. } => "secret",
        }
    }

    /// The audit trail's name for the actor (`station:line-1`, `device:SN-1`, ...).
    pub fn actor(&self) -> String {
        match self {
            Self::BirthCertificate { certificate, .. }
            | Self::OperationalCertificate { certificate } => {
                format!("device:{}", certificate.device_serial().unwrap_or("?"))
            }
            Self::Account { name, .. } => format!("account:{name}"),
            Self::Administrator { .. } => "admin".to_string(),
            Self::Station { name, .. } => format!("station:{name}"),
            Self::EnrollmentSecret { device_serial, .. } => format!("device:{device_serial}"),
        }
    }
}

/// The TLS channel binding available for a request.
#[derive(Clone, PartialEq, Eq)]
pub enum ChannelBinding {
    /// RFC 9266 tls-exporter value of a TLS 1.3 session.
    TlsExporter([u8; 32]),
    /// TLS 1.2: no binding fleetca can verify (rustls has no tls-unique).
    Unavailable,
    /// The request is protected by its own message (a CMP signature or MAC, a SCEP
    /// SignedData) made with the credential that authenticated it: the request cannot be
    /// moved to another sender, whatever the transport, so no TLS binding is needed.
    Message,
}

impl std::fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TlsExporter(_) => f.write_str("TlsExporter(..)"),
            Self::Unavailable => f.write_str("Unavailable"),
            Self::Message => f.write_str("Message"),
        }
    }
}
