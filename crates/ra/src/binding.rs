//! Identity binding rules (issue 13): who may enroll which device, and what binds a device
//! once it is known.
//!
//! | stage | rule | checks |
//! |---|---|---|
//! | identity | `manufacturer-scope` | a birth certificate from an imported manufacturer CA names a serial within that CA's `--serial-pattern` |
//! | eligibility | `account-new-device` | an enrollment account enrolls only devices new to the inventory, each once (unless added with `--allow-known-devices`) |
//! | eligibility | `birth-issuer` | a known device's birth certificate comes from the CA it was born under |
//! | eligibility | `device-profile` | a first enrollment is under the profile the device is bound to (that of its first enrollment), or one that lists it in `enroll_from` or `renew_from` |
//! | eligibility | `birth-reenrollment` | a birth certificate enrolls again while the device has a live operational certificate, or after one was revoked for keyCompromise, only after `fleetca device force-reenroll` (`birth_reenrollment` in the profile) |
//!
//! What these rules establish is also handed to the recording commit as a
//! [`DeviceBinding`], which checks it again against concurrent requests.

use fleetca_pki::{BirthReenrollment, CertificateProfile};
use fleetca_store::{
    ApprovalState, DeviceBinding, DeviceLimits, DeviceStatus, InventoryReader, ProfileBinding,
    Standing,
};
use time::OffsetDateTime;

use crate::rules::Run;
use crate::{ClientIdentity, Decision, EnrollmentRequest, Operation, RaError};

/// What the binding rules established, for the issuance.
pub(crate) struct Bound {
    /// What the recording commit checks and records.
    pub binding: DeviceBinding,
    /// A birth certificate enrolls without an operator's override: the commit must find no
    /// live operational certificate of the device (two simultaneous requests cannot both
    /// pass what each checked alone).
    single_live: bool,
}

impl Bound {
    /// The profile's limits, narrowed to one live operational certificate if needed.
    pub(crate) fn limits(&self, mut limits: DeviceLimits) -> DeviceLimits {
        if self.single_live {
            limits.max_active = Some(limits.max_active.map_or(1, |m| m.min(1)));
        }
        limits
    }
}

/// Runs the binding rules of the eligibility stage, in order, recording each in `run`;
/// `Err` is the denial.
pub(crate) async fn check(
    req: &EnrollmentRequest<'_>,
    env: &crate::custom::Env<'_>,
    standing: &Standing,
    device_serial: &str,
    now: OffsetDateTime,
    run: &mut Run,
) -> Result<Result<Bound, Box<Decision>>, RaError> {
    macro_rules! rule {
        ($name:literal, $result:expr) => {
            if let Some(denied) = run.record($name, $result) {
                return Ok(Err(Box::new(denied)));
            }
        };
    }
    if let ClientIdentity::Account {
        name,
        known_devices,
        ..
    } = req.client
    {
        rule!(
            "account-new-device",
            account_new_device(name, *known_devices, device_serial, standing)
        );
    }
    if let Some(issuer) = birth_issuer_of(req) {
        rule!(
            "birth-issuer",
            birth_issuer(issuer, device_serial, standing)
        );
    }
    if req.operation == Operation::Enroll {
        rule!(
            "device-profile",
            device_profile(req.profile, device_serial, standing)
        );
    }
    let mut single_live = false;
    if let (Operation::Enroll, ClientIdentity::BirthCertificate { .. }) =
        (req.operation, req.client)
    {
        let (result, forced) = birth_reenrollment(req, env, standing, device_serial, now).await?;
        rule!("birth-reenrollment", result);
        single_live =
            !forced && req.profile.rules.birth_reenrollment == BirthReenrollment::NeedsOperator;
    }
    Ok(Ok(Bound {
        binding: binding_of(req),
        single_live,
    }))
}

/// The profiles whose devices may enroll under `profile`: itself, `enroll_from` and
/// `renew_from` (a device could renew into it from those anyway).
fn accepted_profiles(profile: &CertificateProfile) -> Vec<String> {
    std::iter::once(&profile.name)
        .chain(&profile.rules.enroll_from)
        .chain(&profile.renew_from)
        .cloned()
        .collect()
}

/// `device-profile`: a device is bound to the profile of its first operational
/// certificate; a first enrollment under another label's profile needs that profile to
/// accept it.
fn device_profile(
    profile: &CertificateProfile,
    device_serial: &str,
    standing: &Standing,
) -> Result<String, String> {
    match standing.device_profile.as_deref() {
        None => Ok(format!(
            "device {device_serial} is not bound to a profile yet; it binds to '{}'",
            profile.name
        )),
        Some(bound) if accepted_profiles(profile).iter().any(|p| p == bound) => Ok(format!(
            "device {device_serial} is bound to profile '{bound}', which '{}' accepts",
            profile.name
        )),
        Some(bound) => Err(format!(
            "device {device_serial} is bound to profile '{bound}' (its first enrollment); enroll under its label (profile '{}' does not list it in enroll_from)",
            profile.name
        )),
    }
}

/// `birth-reenrollment`: whether a birth certificate may enroll a device that has, or had,
/// an operational certificate; and whether an operator's override let it.
async fn birth_reenrollment(
    req: &EnrollmentRequest<'_>,
    env: &crate::custom::Env<'_>,
    standing: &Standing,
    device_serial: &str,
    now: OffsetDateTime,
) -> Result<(Result<String, String>, bool), RaError> {
    let profile = req.profile;
    // Only an active device ever had an operational certificate.
    if standing.device != Some(DeviceStatus::Active) {
        return Ok((
            Ok(format!("first enrollment of device {device_serial}")),
            false,
        ));
    }
    let compromised = env.inventory.key_compromise_pending(device_serial).await?;
    let live = env
        .inventory
        .active_operational_certificates(device_serial, now)
        .await?;
    let why = if compromised {
        "an operational certificate of it was revoked for keyCompromise".to_string()
    } else if live > 0 && profile.rules.birth_reenrollment == BirthReenrollment::NeedsOperator {
        format!("it has {live} live operational certificate(s)")
    } else {
        return Ok((
            Ok(format!(
                "device {device_serial} enrolls again with its birth certificate ({live} live operational certificate(s); profile '{}': {})",
                profile.name,
                profile.rules.birth_reenrollment.name()
            )),
            false,
        ));
    };
    // A poll of an approved request that was issued already: the approval stage returns
    // that certificate (it is the live one), nothing new is issued.
    let key = crate::custom::request_key(req, device_serial);
    if let Some(a) = env.records.approval_by_key(&key).await? {
        if a.state == ApprovalState::Issued {
            return Ok((
                Ok(format!(
                    "{why}; request {} was approved and issued already",
                    a.id
                )),
                true,
            ));
        }
    }
    Ok(match env.records.reenroll_forced_until(device_serial).await? {
        Some(until) if now < until => (
            Ok(format!(
                "{why}; enrollment forced by an operator until {until}"
            )),
            true,
        ),
        _ => (
            Err(format!(
                "device {device_serial} may not enroll again with its birth certificate: {why}; an operator must run `fleetca device force-reenroll {device_serial}` first"
            )),
            false,
        ),
    })
}

/// The CA whose birth certificate this request rests on: the authenticating birth
/// certificate's issuer for a first enrollment, the profile's issuer for a birth
/// issuance, none otherwise.
fn birth_issuer_of<'a>(req: &'a EnrollmentRequest<'_>) -> Option<&'a str> {
    match (req.operation, req.client) {
        (Operation::Enroll, ClientIdentity::BirthCertificate { issuer, .. }) => Some(issuer),
        (Operation::Birth, _) => Some(req.profile.issuer.as_str()),
        _ => None,
    }
}

/// `manufacturer-scope`: an imported manufacturer CA recorded with a serial pattern
/// (`trust add-manufacturer --serial-pattern`) vouches only for serials matching it whole.
/// `None` if the rule does not apply (not an imported CA's birth certificate).
pub(crate) async fn manufacturer_scope(
    client: &ClientIdentity,
    device_serial: &str,
    inventory: &dyn InventoryReader,
) -> Result<Option<Result<String, String>>, RaError> {
    let ClientIdentity::BirthCertificate {
        issuer,
        issued_here: false,
        ..
    } = client
    else {
        return Ok(None);
    };
    let record = inventory.manufacturer(issuer).await?;
    let Some(pattern) = record.and_then(|r| r.serial_pattern) else {
        return Ok(Some(Ok(format!(
            "manufacturer CA '{issuer}' has no serial scope"
        ))));
    };
    Ok(Some(match crate::serial_scope::whole_serial_pattern(&pattern) {
        Err(e) => Err(format!(
            "manufacturer CA '{issuer}' has an invalid serial pattern: {e}"
        )),
        Ok(re) if re.is_match(device_serial) => Ok(format!(
            "{device_serial} is within manufacturer CA '{issuer}' scope {pattern}"
        )),
        Ok(_) => Err(format!(
            "device serial {device_serial} is outside manufacturer CA '{issuer}' scope {pattern} (the whole serial)"
        )),
    }))
}

/// `birth-issuer`: a device is born under one CA; a birth certificate (or a birth
/// issuance) from another CA for a known device is refused.
fn birth_issuer(issuer: &str, device_serial: &str, standing: &Standing) -> Result<String, String> {
    match standing.birth_issuer.as_deref() {
        Some(born) if born == issuer => Ok(format!(
            "device {device_serial} was born under CA '{issuer}'"
        )),
        Some(born) => Err(format!(
            "device {device_serial} was born under CA '{born}'; a birth certificate from '{issuer}' cannot enroll it"
        )),
        None => Ok(format!(
            "no birth CA recorded for device {device_serial}; '{issuer}' is recorded"
        )),
    }
}

/// `account-new-device`: an account may enroll a device the inventory does not know yet,
/// and so each device once; `--allow-known-devices` widens that.
fn account_new_device(
    name: &str,
    known_devices: bool,
    device_serial: &str,
    standing: &Standing,
) -> Result<String, String> {
    match (standing.device, known_devices) {
        (None, _) => Ok(format!("device {device_serial} is new to the inventory")),
        (Some(_), true) => Ok(format!(
            "device {device_serial} is known; account '{name}' may enroll known devices"
        )),
        (Some(status), false) => Err(format!(
            "device {device_serial} is already in the inventory ({status}); account '{name}' enrolls only new devices, each once (an operator can add an account with --allow-known-devices)"
        )),
    }
}

/// What the recording commit must check and record for this request.
fn binding_of(req: &EnrollmentRequest<'_>) -> DeviceBinding {
    DeviceBinding {
        new_device: matches!(
            req.client,
            ClientIdentity::Account {
                known_devices: false,
                ..
            }
        ),
        profile: (req.operation == Operation::Enroll).then(|| ProfileBinding {
            profile: req.profile.name.clone(),
            accepts: accepted_profiles(req.profile),
        }),
        birth_issuer: birth_issuer_of(req).map(str::to_string),
    }
}
