use std::fmt;
use std::str::FromStr;

use crate::name::NameAttribute;
use crate::{KeyAlgorithm, PublicKeyKind};

/// Key usages a profile may grant to end-entity certificates.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// digitalSignature
    DigitalSignature,
    /// keyEncipherment (RSA key transport)
    KeyEncipherment,
    /// keyAgreement (ECDH)
    KeyAgreement,
    /// contentCommitment (nonRepudiation)
    ContentCommitment,
}

impl KeyUsage {
    const NAMES: [(Self, &'static str); 4] = [
        (Self::DigitalSignature, "digitalSignature"),
        (Self::KeyEncipherment, "keyEncipherment"),
        (Self::KeyAgreement, "keyAgreement"),
        (Self::ContentCommitment, "contentCommitment"),
    ];

    pub(crate) fn to_rcgen(self) -> rcgen::KeyUsagePurpose {
        match self {
            Self::DigitalSignature => rcgen::KeyUsagePurpose::DigitalSignature,
            Self::KeyEncipherment => rcgen::KeyUsagePurpose::KeyEncipherment,
            Self::KeyAgreement => rcgen::KeyUsagePurpose::KeyAgreement,
            Self::ContentCommitment => rcgen::KeyUsagePurpose::ContentCommitment,
        }
    }
}

impl FromStr for KeyUsage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        lookup(&Self::NAMES, s, "key usage")
    }
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(&Self::NAMES, self))
    }
}

/// Extended key usages a profile may grant.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtendedKeyUsage {
    /// id-kp-clientAuth: TLS client (devices).
    ClientAuth,
    /// id-kp-serverAuth: TLS server.
    ServerAuth,
}

impl ExtendedKeyUsage {
    const NAMES: [(Self, &'static str); 2] = [
        (Self::ClientAuth, "clientAuth"),
        (Self::ServerAuth, "serverAuth"),
    ];

    pub(crate) fn to_rcgen(self) -> rcgen::ExtendedKeyUsagePurpose {
        match self {
            Self::ClientAuth => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            Self::ServerAuth => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        }
    }
}

impl FromStr for ExtendedKeyUsage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        lookup(&Self::NAMES, s, "extended key usage")
    }
}

impl fmt::Display for ExtendedKeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(&Self::NAMES, self))
    }
}

fn lookup<T: Copy>(table: &[(T, &'static str)], s: &str, what: &str) -> Result<T, String> {
    table
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(s))
        .map(|(v, _)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(_, n)| *n).collect();
            format!(
                "unknown {what} '{s}' (expected one of: {})",
                names.join(", ")
            )
        })
}

fn name_of<T: PartialEq>(table: &[(T, &'static str)], v: &T) -> &'static str {
    table
        .iter()
        .find(|(t, _)| t == v)
        .map(|(_, n)| *n)
        .unwrap_or("?")
}

/// One attribute of the subject a profile issues: a type and a template in which
/// `{serial}` stands for the device serial number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectAttribute {
    /// Dotted OID of the attribute type.
    pub oid: String,
    /// Template of the value.
    pub template: String,
}

impl SubjectAttribute {
    /// Attribute types a profile may use, by short name.
    pub const KNOWN: [(&'static str, &'static str); 7] = [
        ("CN", "2.5.4.3"),
        ("serialNumber", "2.5.4.5"),
        ("O", "2.5.4.10"),
        ("OU", "2.5.4.11"),
        ("C", "2.5.4.6"),
        ("L", "2.5.4.7"),
        ("ST", "2.5.4.8"),
    ];

    /// Builds an attribute from its short name (`CN`, `serialNumber`, `O`, ...).
    pub fn new(short_name: &str, template: &str) -> Result<Self, String> {
        let oid = Self::KNOWN
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(short_name))
            .map(|(_, o)| (*o).to_string())
            .ok_or_else(|| {
                let names: Vec<&str> = Self::KNOWN.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown subject attribute '{short_name}' (expected one of: {})",
                    names.join(", ")
                )
            })?;
        if template.is_empty() {
            return Err(format!("subject attribute {short_name} has an empty value"));
        }
        Ok(Self {
            oid,
            template: template.to_string(),
        })
    }
}

/// What a certificate profile issues. The profile, not the CSR, decides everything in the
/// certificate except the public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateProfile {
    /// Name used in configuration, logs and the inventory.
    pub name: String,
    /// Name of the issuing CA (`operational`, `manufacturing`).
    pub issuer: String,
    /// Validity period.
    pub validity: time::Duration,
    /// How far notBefore is set in the past, to tolerate device clock skew.
    pub backdate: time::Duration,
    /// Key usages (end-entity only).
    pub key_usages: Vec<KeyUsage>,
    /// Extended key usages.
    pub extended_key_usages: Vec<ExtendedKeyUsage>,
    /// Key algorithms and sizes accepted in CSRs.
    pub allowed_keys: Vec<KeyAlgorithm>,
    /// Subject attributes, in order.
    pub subject: Vec<SubjectAttribute>,
    /// subjectAltName templates: `DNS:...`, `URI:...` with `{serial}` substituted.
    pub subject_alt_names: Vec<String>,
    /// Whether re-enrollment may keep the current key (RFC 7030 §4.2.2 allows it; fleetca
    /// defaults to requiring a new key).
    pub allow_key_reuse: bool,
    /// Require the RFC 9266 tls-exporter value in the CSR challengePassword (TLS 1.3 only).
    pub require_channel_binding: bool,
    /// notAfter is the RFC 5280 "no well-defined expiration" value 99991231235959Z
    /// (IEEE 802.1AR IDevIDs); `validity` is then ignored.
    pub no_expiry: bool,
    /// EST `serverkeygen` is allowed: the server generates the key pair (first allowed key
    /// algorithm) and returns it once; it is never stored.
    pub server_keygen: bool,
    /// Profiles whose certificates may re-enroll into this one (besides itself): a device
    /// cannot move to another label's profile by renewing unless the operator allows it.
    pub renew_from: Vec<String>,
    /// Operator-configured rules the RA evaluates after its built-in rules.
    pub rules: ProfileRules,
}

/// Per-profile rules from the configuration, validated at load; the RA evaluates them.
/// Plain data: the RA compiles the CEL expressions (the configuration loader compiles them
/// once too, to reject a bad one at start-up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileRules {
    /// Deny when the device already has this many valid, unexpired operational certificates.
    pub max_active_certificates: Option<u32>,
    /// simplereenroll only once this share of the current certificate's lifetime has
    /// passed, in thousandths (660 = 0.66).
    pub reenroll_after_permille: Option<u16>,
    /// Custom CEL rules, in order.
    pub custom: Vec<CustomRule>,
    /// The device serial number must match this regular expression (whole serial).
    pub serial_pattern: Option<String>,
    /// At most this many certificates per device within a sliding window.
    pub rate_limit: Option<RateLimit>,
    /// External directories (connector names) to consult, in order.
    pub connectors: Vec<String>,
    /// A CEL expression; when it is `true` for a request that passed every rule, the
    /// request waits for an operator's approval.
    pub manual_approval: Option<String>,
    /// How long a device waits before polling a pending approval again (default 60 s).
    pub approval_retry_after: Option<time::Duration>,
    /// Profiles whose devices may make a first enrollment under this one (besides itself and
    /// `renew_from`): a device is bound to the profile it first enrolled under.
    pub enroll_from: Vec<String>,
    /// Whether a birth certificate may enroll again while the device has a live operational
    /// certificate (a keyCompromise revocation always needs the operator).
    pub birth_reenrollment: BirthReenrollment,
}

/// When a device that already has (or had) an operational certificate may enroll again
/// with its birth certificate (`birth_reenrollment` in a profile).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BirthReenrollment {
    /// Only after an operator's `fleetca device force-reenroll` while the device has a live
    /// operational certificate, or after one was revoked for keyCompromise (the default).
    #[default]
    NeedsOperator,
    /// While the device has a live operational certificate, within the profile's limits;
    /// after a keyCompromise revocation still only with the operator.
    WithinLimits,
}

impl BirthReenrollment {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::NeedsOperator => "needs-operator",
            Self::WithinLimits => "within-limits",
        }
    }

    /// Parses a configuration name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "needs-operator" => Some(Self::NeedsOperator),
            "within-limits" => Some(Self::WithinLimits),
            _ => None,
        }
    }
}

/// A per-device issuance rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Certificates allowed within `per`.
    pub max: u32,
    /// The sliding window.
    pub per: time::Duration,
}

/// A custom rule: a CEL expression that must evaluate to `true` for the request to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRule {
    /// Rule name, shown in denials.
    pub name: String,
    /// The CEL expression.
    pub expression: String,
    /// The denial reason when the expression is false.
    pub message: String,
}

impl CertificateProfile {
    /// Device operational certificates: 90 days, P-256/P-384/Ed25519/RSA, clientAuth.
    pub fn default_operational() -> Self {
        Self {
            name: "operational".into(),
            issuer: "operational".into(),
            validity: time::Duration::days(90),
            backdate: time::Duration::minutes(5),
            key_usages: vec![KeyUsage::DigitalSignature],
            extended_key_usages: vec![ExtendedKeyUsage::ClientAuth],
            allowed_keys: vec![
                KeyAlgorithm::P256,
                KeyAlgorithm::P384,
                KeyAlgorithm::Ed25519,
                KeyAlgorithm::Rsa2048,
                KeyAlgorithm::Rsa3072,
                KeyAlgorithm::Rsa4096,
            ],
            subject: Self::device_subject(),
            subject_alt_names: Vec::new(),
            allow_key_reuse: false,
            require_channel_binding: false,
            no_expiry: false,
            server_keygen: false,
            renew_from: Vec::new(),
            rules: ProfileRules::default(),
        }
    }

    /// Birth certificates (IDevID): 20 years, from the manufacturing CA.
    pub fn default_birth() -> Self {
        Self {
            name: "birth".into(),
            issuer: "manufacturing".into(),
            validity: time::Duration::days(20 * 365 + 5),
            ..Self::default_operational()
        }
    }

    fn device_subject() -> Vec<SubjectAttribute> {
        vec![
            SubjectAttribute {
                oid: "2.5.4.3".into(),
                template: "{serial}".into(),
            },
            SubjectAttribute {
                oid: crate::SERIAL_NUMBER_OID.into(),
                template: "{serial}".into(),
            },
        ]
    }

    /// Checks the profile is usable. Returns every problem, one sentence each.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.validity <= time::Duration::ZERO {
            problems.push("validity must be positive".to_string());
        }
        if self.backdate < time::Duration::ZERO || self.backdate > time::Duration::days(1) {
            problems.push("backdate must be between 0 and 1 day".to_string());
        }
        if self.allowed_keys.is_empty() {
            problems.push("allowed_keys must not be empty".to_string());
        }
        if self.extended_key_usages.is_empty() {
            problems.push("extended_key_usage must not be empty".to_string());
        }
        if !self.key_usages.contains(&KeyUsage::DigitalSignature) {
            problems.push("key_usage must include digitalSignature".to_string());
        }
        if self.subject.is_empty() && self.subject_alt_names.is_empty() {
            problems.push("subject and subject_alt_names cannot both be empty".to_string());
        }
        if !self
            .subject
            .iter()
            .any(|a| a.oid == crate::SERIAL_NUMBER_OID)
        {
            problems.push(
                "subject must contain serialNumber (the device identity, IEEE 802.1AR)".to_string(),
            );
        }
        // serialNumber and countryName are written as PrintableString (see
        // `issuance::distinguished_name`): the template's own text must be encodable; the
        // device serial put in place of {serial} is checked per request.
        for a in &self.subject {
            if matches!(a.oid.as_str(), "2.5.4.5" | "2.5.4.6") {
                let literal = a.template.replace("{serial}", "");
                if let Some(bad) = literal.chars().find(|c| !encodable_printable(*c)) {
                    problems.push(format!(
                        "subject {} template '{}' contains {bad:?}; a PrintableString here may hold letters, digits, space and '()+,-./:=",
                        crate::name::short_name(&a.oid),
                        a.template
                    ));
                }
            }
        }
        for san in &self.subject_alt_names {
            if !(san.starts_with("DNS:") || san.starts_with("URI:")) {
                problems.push(format!(
                    "subject_alt_names entry '{san}' must start with DNS: or URI:"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Whether a CSR key of this kind is allowed.
    pub fn allows_key(&self, kind: PublicKeyKind) -> bool {
        self.allowed_keys.iter().any(|a| kind.matches(*a))
    }

    /// The key usages this profile gives a certificate for a key of `kind`: the configured
    /// bits that apply to the key's algorithm (keyEncipherment only for RSA, keyAgreement
    /// only for EC; RFC 8813 section 3, RFC 8410 section 5). The others are left out.
    pub fn key_usages_for(&self, kind: PublicKeyKind) -> Vec<KeyUsage> {
        self.key_usages
            .iter()
            .copied()
            .filter(|k| k.applies_to(kind))
            .collect()
    }

    /// Notes on settings that apply to some keys only: a key usage that is left out of
    /// certificates for some of the allowed key algorithms. Not errors; `--check-config`
    /// prints them.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for usage in &self.key_usages {
            let left_out: Vec<&str> = self
                .allowed_keys
                .iter()
                .filter(|a| !usage.applies_to(a.public_key_kind()))
                .map(|a| a.name())
                .collect();
            if !left_out.is_empty() {
                notes.push(format!(
                    "key_usage {usage} does not apply to {} keys; their certificates are issued without it",
                    left_out.join(", ")
                ));
            }
        }
        if self.rules.serial_pattern.is_none() {
            for template in &self.subject_alt_names {
                if template.starts_with("DNS:") && template.contains("{serial}") {
                    notes.push(format!(
                        "subjectAltName {template} lets the requester choose a host name (the serial comes from the CSR for accounts and stations); set serial_pattern to the serials that make allowed host names"
                    ));
                }
            }
        }
        notes
    }

    /// The subject this profile issues to a device.
    pub fn subject_for(&self, device_serial: &str) -> Vec<NameAttribute> {
        self.subject
            .iter()
            .map(|a| NameAttribute {
                oid: a.oid.clone(),
                value: a.template.replace("{serial}", device_serial),
            })
            .collect()
    }

    /// The subjectAltName entries this profile issues to a device (`DNS:...`, `URI:...`).
    pub fn subject_alt_names_for(&self, device_serial: &str) -> Vec<String> {
        self.subject_alt_names
            .iter()
            .map(|t| t.replace("{serial}", device_serial))
            .collect()
    }
}

/// Checks a device serial number is usable in a certificate subject: 1 to 64 characters of
/// the X.520 PrintableString set, less `?`, without spaces at the ends.
///
/// `?` is a PrintableString character (X.680 §41.4), but the DER writer under rcgen (yasna
/// 0.6) asserts it away: a subject naming it panicked while the certificate was built
/// (found by the `csr` fuzz target). It is refused here, where a request or an operator
/// learns why, and the issuer refuses it again before encoding.
pub fn validate_device_serial(serial: &str) -> Result<(), String> {
    if serial.is_empty() || serial.len() > 64 {
        return Err(format!(
            "device serial number must be 1 to 64 characters, got {}",
            serial.len()
        ));
    }
    if serial.trim() != serial {
        return Err("device serial number must not start or end with a space".into());
    }
    if let Some(bad) = serial.chars().find(|c| !encodable_printable(*c)) {
        return Err(format!(
            "device serial number contains {bad:?}; allowed are letters, digits, space and '()+,-./:="
        ));
    }
    Ok(())
}

/// A character fleetca can write in a PrintableString: X.680's set less `?` (see
/// [`validate_device_serial`]).
pub(crate) fn encodable_printable(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profiles_are_valid() {
        CertificateProfile::default_operational()
            .validate()
            .unwrap();
        CertificateProfile::default_birth().validate().unwrap();
    }

    #[test]
    fn validation_lists_every_problem() {
        let mut p = CertificateProfile::default_operational();
        p.validity = time::Duration::ZERO;
        p.allowed_keys.clear();
        p.subject.retain(|a| a.oid != crate::SERIAL_NUMBER_OID);
        p.subject_alt_names.push("email:x@y".into());
        let problems = p.validate().unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    /// A serialNumber or countryName template whose own text the PrintableString writer
    /// refuses is a configuration problem, not a failure of every issuance.
    #[test]
    fn printable_templates_must_be_encodable() {
        let mut p = CertificateProfile::default_operational();
        for a in &mut p.subject {
            if a.oid == crate::SERIAL_NUMBER_OID {
                a.template = "SN?{serial}".into();
            }
        }
        p.subject.push(SubjectAttribute {
            oid: "2.5.4.6".into(),
            template: "D\u{e9}".into(),
        });
        let problems = p.validate().unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("'SN?{serial}' contains '?'"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("'D\u{e9}' contains '\u{e9}'"),
            "{problems:?}"
        );
        p.subject.pop();
        for a in &mut p.subject {
            if a.oid == crate::SERIAL_NUMBER_OID {
                a.template = "ACME:{serial}".into();
            }
        }
        p.validate().unwrap();
    }

    #[test]
    fn templates_substitute_the_serial() {
        let mut p = CertificateProfile::default_operational();
        p.subject_alt_names
            .push("URI:urn:dev:serial:{serial}".into());
        let subject = p.subject_for("SN-7");
        assert_eq!(subject[0].value, "SN-7");
        assert_eq!(subject[1].oid, "2.5.4.5");
        assert_eq!(
            p.subject_alt_names_for("SN-7"),
            vec!["URI:urn:dev:serial:SN-7"]
        );
    }

    #[test]
    fn key_allow_list() {
        let mut p = CertificateProfile::default_operational();
        p.allowed_keys = vec![KeyAlgorithm::P256];
        assert!(p.allows_key(PublicKeyKind::EcP256));
        assert!(!p.allows_key(PublicKeyKind::Rsa { bits: 2048 }));
        assert!(!p.allows_key(PublicKeyKind::Rsa { bits: 1024 }));
    }

    #[test]
    fn device_serials() {
        validate_device_serial("SN-0001").unwrap();
        validate_device_serial("ACME:42/7").unwrap();
        assert!(validate_device_serial("").is_err());
        assert!(validate_device_serial("a\u{e9}").is_err());
        assert!(validate_device_serial("x\n").is_err());
        assert!(validate_device_serial(&"1".repeat(65)).is_err());
        assert!(validate_device_serial(" x").is_err());
        // A PrintableString character, but the DER writer refuses it (fuzz/regressions/csr).
        let err = validate_device_serial("SN?1").unwrap_err();
        assert!(err.contains("'?'"), "{err}");
    }

    #[test]
    fn usage_names_round_trip() {
        assert_eq!(
            "clientauth".parse::<ExtendedKeyUsage>(),
            Ok(ExtendedKeyUsage::ClientAuth)
        );
        assert_eq!(KeyUsage::KeyAgreement.to_string(), "keyAgreement");
        assert!("keyCertSign".parse::<KeyUsage>().is_err());
    }
}
