//! Identity binding rules (issue 13): who may enroll which device, and what binds a device
//! once it is known.
//!
//! | stage | rule | checks |
//! |---|---|---|
//! | identity | `manufacturer-scope` | a birth certificate from an imported manufacturer CA names a serial within that CA's `--serial-pattern` |
//! | eligibility | `account-new-device` | an enrollment account enrolls only devices new to the inventory, each once (unless added with `--allow-known-devices`) |
//! | eligibility | `birth-issuer` | a known device's birth certificate comes from the CA it was born under |
//!
//! What these rules establish is also handed to the recording commit as a
//! [`DeviceBinding`], which checks it again against concurrent requests.

use fleetca_store::{DeviceBinding, InventoryReader, Standing};

use crate::{ClientIdentity, EnrollmentRequest, Operation, RaError};

/// The CA whose birth certificate this request rests on: the authenticating birth
/// certificate's issuer for a first enrollment, the profile's issuer for a birth
/// issuance, none otherwise.
pub(crate) fn birth_issuer_of<'a>(req: &'a EnrollmentRequest<'_>) -> Option<&'a str> {
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
pub(crate) fn birth_issuer(
    issuer: &str,
    device_serial: &str,
    standing: &Standing,
) -> Result<String, String> {
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
pub(crate) fn account_new_device(
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
pub(crate) fn binding_of(req: &EnrollmentRequest<'_>) -> DeviceBinding {
    DeviceBinding {
        new_device: matches!(
            req.client,
            ClientIdentity::Account {
                known_devices: false,
                ..
            }
        ),
        profile: None,
        birth_issuer: birth_issuer_of(req).map(str::to_string),
    }
}
