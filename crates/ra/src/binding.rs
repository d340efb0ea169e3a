//! Identity binding rules (issue 13): who may enroll which device, and what binds a device
//! once it is known.
//!
//! | stage | rule | checks |
//! |---|---|---|
//! | eligibility | `account-new-device` | an enrollment account enrolls only devices new to the inventory, each once (unless added with `--allow-known-devices`) |
//!
//! What these rules establish is also handed to the recording commit as a
//! [`DeviceBinding`], which checks it again against concurrent requests.

use fleetca_store::{DeviceBinding, Standing};

use crate::{ClientIdentity, EnrollmentRequest};

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
        birth_issuer: None,
    }
}
