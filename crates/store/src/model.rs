use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

/// What a certificate is for.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateKind {
    /// Birth certificate (IDevID) from the manufacturing CA.
    Birth,
    /// Operational certificate (LDevID) from the operational CA.
    Operational,
}

/// Lifecycle state of a certificate.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateStatus {
    /// Issued and not revoked (it may still be expired: see `not_after`).
    Valid,
    /// Revoked.
    Revoked,
    /// Temporarily blocked (certificateHold).
    OnHold,
}

/// Lifecycle state of a device.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceStatus {
    /// Has a birth certificate, no operational certificate yet.
    Manufactured,
    /// Has had an operational certificate.
    Active,
    /// Temporarily blocked.
    Suspended,
    /// Retired: never enrolls again.
    Decommissioned,
}

macro_rules! text_enum {
    ($ty:ty, $what:literal, $($variant:ident => $text:literal),+ $(,)?) => {
        impl $ty {
            /// The stored and displayed name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(concat!("unknown ", $what, " '{}'"), other)),
                }
            }
        }
    };
}

text_enum!(CertificateKind, "certificate kind", Birth => "birth", Operational => "operational");
text_enum!(CertificateStatus, "certificate status", Valid => "valid", Revoked => "revoked", OnHold => "on-hold");
text_enum!(DeviceStatus, "device status",
    Manufactured => "manufactured", Active => "active",
    Suspended => "suspended", Decommissioned => "decommissioned");

/// A certificate to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Device serial number.
    pub device_serial: String,
    /// Issuing CA name.
    pub issuer: String,
    /// Profile name.
    pub profile: String,
    /// Birth or operational.
    pub kind: CertificateKind,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Serial of the certificate this one renews, if any.
    pub replaces: Option<String>,
    /// Serial of the recorded certificate that authenticated the request, if any. The
    /// recording commit refuses the issuance unless that certificate is still valid then,
    /// so a revocation or hold that lands while the request is being decided wins.
    /// (Whatever the request, the commit also refuses a suspended or decommissioned device.)
    pub authenticated_by: Option<String>,
    /// Per-device limits the recording commit enforces against concurrent requests.
    pub limits: DeviceLimits,
    /// What the device must be bound to, checked and recorded by the recording commit.
    pub binding: DeviceBinding,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
    /// For birth certificates: who asked, and the checks the commit itself enforces.
    pub birth: Option<BirthContext>,
    /// The RA's decision to record in the same commit (its certificate serial is this
    /// certificate's). If it fulfils an approval request, the request is marked issued in
    /// that commit too, or nothing is recorded if the request is no longer approved.
    pub decision: Option<crate::policy::NewDecision>,
    /// The CMP transaction that asked for it, recorded in the same commit (its certificate
    /// fields are this certificate's). A transactionID already in use refuses the whole
    /// record under the rule `cmp-transaction-id`: a replayed message gets nothing, and a
    /// renewal costs one durable write, not two.
    pub cmp_transaction: Option<crate::CmpTransaction>,
}

impl NewCertificate {
    /// The binding the recording commit checks and records: the request's, and for a birth
    /// certificate always its own issuer (a device is born under one CA).
    pub(crate) fn effective_binding(&self) -> DeviceBinding {
        let mut binding = self.binding.clone();
        if self.kind == CertificateKind::Birth {
            binding.birth_issuer = Some(self.issuer.clone());
        }
        binding
    }
}

/// Per-device limits of a profile, enforced by the commit that records the certificate, so
/// that simultaneous requests of one device (on one node or several) cannot all pass what
/// the RA checked for each of them alone. The device row is locked first, so the counts
/// see every other issuance of the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceLimits {
    /// With this certificate, at most this many valid, unexpired operational certificates
    /// (the one it renews not counted).
    pub max_active: Option<u32>,
    /// At most this many certificates issued to the device since this instant, this one
    /// included.
    pub issued_since: Option<(u32, OffsetDateTime)>,
}

impl DeviceLimits {
    /// No limit to enforce.
    pub fn is_none(&self) -> bool {
        self.max_active.is_none() && self.issued_since.is_none()
    }
}

/// What the RA's per-device limits count, read together (one index range over the
/// device's certificates instead of one per limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitCounts {
    /// Valid operational certificates of the device unexpired at the instant asked for.
    pub active_operational: u32,
    /// Certificates of the device issued at or after the instant asked for (0 if none was).
    pub issued_since: u32,
}

/// What binds a device to its identity, checked by the commit that records a certificate
/// (so that concurrent requests cannot both pass what the RA checked for each alone) and
/// recorded with the device when it has none yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceBinding {
    /// The device must be new to the inventory (an enrollment account that may not enroll
    /// known devices): refused if any certificate of it was recorded meanwhile.
    pub new_device: bool,
    /// The profile the device is bound to: recorded if the device has none; if it has one,
    /// it must be among `accepts`.
    pub profile: Option<ProfileBinding>,
    /// The CA that issued the device's birth certificate: recorded if the device has none;
    /// if it has one, it must be this one.
    pub birth_issuer: Option<String>,
}

impl DeviceBinding {
    /// Nothing to check or record.
    pub fn is_none(&self) -> bool {
        !self.new_device && self.profile.is_none() && self.birth_issuer.is_none()
    }
}

/// A first enrollment's profile binding (see [`DeviceBinding::profile`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileBinding {
    /// The profile of this issuance, recorded for a device not bound yet.
    pub profile: String,
    /// The device profiles this issuance accepts (its own and those it enrolls or renews from).
    pub accepts: Vec<String>,
}

/// The refusal, if any, for a device found as `found` (`None`: not in the inventory; else
/// its recorded profile and birth issuer) under `binding`. Both backends answer alike.
pub(crate) fn binding_refusal(
    device_serial: &str,
    binding: &DeviceBinding,
    found: Option<(Option<&str>, Option<&str>)>,
) -> Option<String> {
    let (profile, birth_issuer) = found?;
    if binding.new_device {
        return Some(format!(
            "device {device_serial} is already in the inventory (recorded while the request was decided)"
        ));
    }
    if let (Some(b), Some(bound)) = (&binding.profile, profile) {
        if !b.accepts.iter().any(|p| p == bound) {
            return Some(format!(
                "device {device_serial} is bound to profile '{bound}', which profile '{}' does not accept",
                b.profile
            ));
        }
    }
    if let (Some(issuer), Some(born)) = (&binding.birth_issuer, birth_issuer) {
        if issuer != born {
            return Some(format!(
                "device {device_serial} was born under CA '{born}', not '{issuer}'"
            ));
        }
    }
    None
}

/// The refusal for counts over `limits` (`active`: valid unexpired operational
/// certificates besides the renewed one; `issued`: certificates since the window start).
pub(crate) fn limit_refusal(
    device_serial: &str,
    limits: &DeviceLimits,
    active: u32,
    issued: u32,
) -> Option<String> {
    let meanwhile = "(another request of this device was issued meanwhile)";
    if let Some(max) = limits.max_active {
        if active >= max {
            return Some(format!(
                "device {device_serial} already has {active} active operational certificate(s); the profile allows at most {max} {meanwhile}"
            ));
        }
    }
    if let Some((max, since)) = limits.issued_since {
        if issued >= max {
            return Some(format!(
                "device {device_serial} was issued {issued} certificate(s) since {since}; the profile allows {max} in that window {meanwhile}"
            ));
        }
    }
    None
}

/// Why the recording commit refuses an issuance, from the state the commit itself reads:
/// the device's status and, if the request was authenticated by a recorded certificate,
/// that certificate's status (`None`: not in the inventory). Both backends answer alike.
pub(crate) fn issuance_refusal(
    device_serial: &str,
    device: Option<&str>,
    authenticated_by: Option<(&str, Option<&str>)>,
) -> Option<String> {
    let changed = "(changed while the request was decided)";
    match device.map(str::parse) {
        Some(Ok(DeviceStatus::Suspended | DeviceStatus::Decommissioned)) | Some(Err(_)) => {
            return Some(format!(
                "device {device_serial} is {} {changed}",
                device.unwrap_or_default()
            ))
        }
        _ => {}
    }
    match authenticated_by {
        None | Some((_, Some("valid"))) => None,
        Some((serial, Some(status))) => {
            Some(format!("client certificate {serial} is {status} {changed}"))
        }
        Some((serial, None)) => Some(format!(
            "client certificate {serial} is not in the inventory"
        )),
    }
}

/// How a birth certificate came to be. The store enforces, in the transaction that records
/// the certificate, the station's state and quota and the one-live-birth-certificate rule,
/// so concurrent requests (or nodes) can never exceed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BirthContext {
    /// The factory station that asked (`None`: the administrator).
    pub station: Option<String>,
    /// Explicitly allowed re-issue: the device may already have a live birth certificate.
    pub reissue: bool,
    /// Device model, as the station reported it.
    pub model: Option<String>,
    /// Production batch, as the station reported it.
    pub batch: Option<String>,
}

/// A recorded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Device serial number.
    pub device_serial: String,
    /// Issuing CA name.
    pub issuer: String,
    /// Profile name.
    pub profile: String,
    /// Birth or operational.
    pub kind: CertificateKind,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Revocation state.
    pub status: CertificateStatus,
    /// Serial of the certificate this one renews, if any.
    pub replaces: Option<String>,
    /// Serial of the certificate that renewed this one, if any.
    pub replaced_by: Option<String>,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
    /// When it was revoked or put on hold.
    pub revoked_at: Option<OffsetDateTime>,
    /// The RFC 5280 reason name (`keyCompromise`, `certificateHold`, ...).
    pub revocation_reason: Option<String>,
}

/// A device in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Serial number (the identity).
    pub serial_number: String,
    /// Lifecycle state.
    pub status: DeviceStatus,
    /// First seen.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// Which certificates to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateQuery {
    /// Only this device's certificates.
    pub device_serial: Option<String>,
    /// Only certificates with `not_after` before this time (and still unexpired at
    /// `not_expired_at`, if set).
    pub expiring_before: Option<OffsetDateTime>,
    /// Only certificates not expired at this time.
    pub not_expired_at: Option<OffsetDateTime>,
    /// Only certificates in this state.
    pub status: Option<CertificateStatus>,
    /// At most this many rows (default 1000).
    pub limit: Option<u32>,
}

/// An enrollment account to add.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// Login name.
    pub name: String,
    /// Argon2 PHC string. Never the password.
    pub password_hash: String,
    /// EST label the account may use (`None`: the default label only).
    pub label: Option<String>,
    /// Regular expression the whole device serial must match.
    pub serial_pattern: Option<String>,
    /// Without a pattern: whether the account may name any serial (`account add
    /// --any-serial`); an account with neither enrolls nothing.
    pub any_serial: bool,
    /// Whether the account may enroll devices the inventory already knows (`account add
    /// --allow-known-devices`); otherwise only new devices, each once.
    pub known_devices: bool,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("name", &self.name)
            .field("label", &self.label)
            .field("serial_pattern", &self.serial_pattern)
            .field("any_serial", &self.any_serial)
            .field("known_devices", &self.known_devices)
            .finish_non_exhaustive()
    }
}

/// A stored enrollment account.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Login name.
    pub name: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// EST label the account may use.
    pub label: Option<String>,
    /// Regular expression the whole device serial must match.
    pub serial_pattern: Option<String>,
    /// Without a pattern: whether it may name any serial.
    pub any_serial: bool,
    /// Whether it may enroll devices the inventory already knows.
    pub known_devices: bool,
    /// Whether it may be used.
    pub enabled: bool,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

impl fmt::Debug for AccountRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountRecord")
            .field("name", &self.name)
            .field("label", &self.label)
            .field("serial_pattern", &self.serial_pattern)
            .field("any_serial", &self.any_serial)
            .field("known_devices", &self.known_devices)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// What policy needs to know about a device and the certificate it authenticated with,
/// read in one go (no certificate body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The device's state, if the device is known.
    pub device: Option<DeviceStatus>,
    /// The profile the device is bound to (that of its first operational certificate).
    pub device_profile: Option<String>,
    /// The CA that issued the device's birth certificate, if recorded.
    pub birth_issuer: Option<String>,
    /// The authenticating certificate, if asked for and recorded.
    pub certificate: Option<CertificateStanding>,
}

/// A certificate's state, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateStanding {
    /// Serial, lower-case hex.
    pub serial: String,
    /// The device it names.
    pub device_serial: String,
    /// The issuing CA's name.
    pub issuer: String,
    /// The profile it was issued under.
    pub profile: String,
    /// Revocation state.
    pub status: CertificateStatus,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// When it was revoked or put on hold.
    pub revoked_at: Option<OffsetDateTime>,
    /// The RFC 5280 reason name.
    pub revocation_reason: Option<String>,
}

/// A change of a device's lifecycle, applied with its certificates in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleChange {
    /// Revoke every live certificate (valid or on hold) with this RFC 5280 reason name and
    /// mark the device so that it never enrolls again.
    Decommission {
        /// Reason name, e.g. `cessationOfOperation`.
        reason: String,
    },
    /// Put every valid certificate on hold (certificateHold) and block the device.
    Suspend,
    /// Release held certificates and unblock the device.
    Resume,
}

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedRecord {
    /// Serial, lower-case hex.
    pub serial: String,
    /// When.
    pub revoked_at: OffsetDateTime,
    /// RFC 5280 reason name.
    pub reason: String,
}

/// A CRL as recorded by the CA that built it (what nodes that do not build CRLs serve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCrl {
    /// Its CRL number.
    pub number: u64,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    pub next_update: OffsetDateTime,
    /// The signed CRL, DER.
    pub der: Vec<u8>,
}

/// A factory station's state.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StationStatus {
    /// May request birth certificates.
    Active,
    /// Temporarily refused.
    Suspended,
    /// Retired for good (its name is not reused).
    Removed,
}

text_enum!(StationStatus, "station status", Active => "active", Suspended => "suspended", Removed => "removed");

/// A station to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStation {
    /// Name (the CN of its credential).
    pub name: String,
    /// Regular expression device serials must match.
    pub serial_pattern: String,
    /// Lowest serial, inclusive.
    pub range_from: Option<String>,
    /// Highest serial, inclusive.
    pub range_to: Option<String>,
    /// Most birth certificates it may obtain.
    pub quota: Option<u64>,
    /// Validity of its credential in days.
    pub valid_days: u32,
    /// Whether it may re-issue a birth certificate for a device that has a live one.
    pub allow_reissue: bool,
    /// Serial (hex) of its current credential: only that certificate authenticates it.
    pub credential_serial: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// A stored station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationRecord {
    /// Name.
    pub name: String,
    /// Regular expression device serials must match.
    pub serial_pattern: String,
    /// Lowest serial, inclusive.
    pub range_from: Option<String>,
    /// Highest serial, inclusive.
    pub range_to: Option<String>,
    /// Most birth certificates it may obtain.
    pub quota: Option<u64>,
    /// Birth certificates obtained so far.
    pub issued: u64,
    /// Validity of its credential in days.
    pub valid_days: u32,
    /// Whether it may re-issue.
    pub allow_reissue: bool,
    /// State.
    pub status: StationStatus,
    /// Serial (hex) of its current credential.
    pub credential_serial: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// An audit event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When.
    pub at: OffsetDateTime,
    /// Who (`station:line-1`, `cli:alice` (an operator on the command line), `device:SN-1`,
    /// `account:boot`).
    pub actor: String,
    /// What (`birth-enroll`, `serverkeygen`, ...).
    pub action: String,
    /// On what (a device serial).
    pub subject: String,
    /// `granted` or `refused`.
    pub outcome: String,
    /// The reason or the issued certificate's serial.
    pub detail: String,
}

/// A stored audit event with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position.
    pub id: i64,
    /// The event.
    pub event: AuditEvent,
    /// Hash of the previous record (hex; zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over the previous hash and this event (hex).
    pub hash: String,
}

/// An imported manufacturer CA's scope (`fleetca trust add-manufacturer --serial-pattern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManufacturerRecord {
    /// The CA's name (its file name in the manufacturers directory).
    pub name: String,
    /// Regular expression the whole serial of its birth certificates must match (`None`:
    /// any serial).
    pub serial_pattern: Option<String>,
    /// When it was added or last changed.
    pub added_at: OffsetDateTime,
}
