//! The `station-scope` rule: what a factory station may ask for.

use fleetca_pki::CertificateInfo;
use fleetca_store::{StationRecord, StationStatus};

/// The station exists, is active, and this is its current credential.
pub(crate) fn admit(
    name: &str,
    credential: &CertificateInfo,
    station: Option<&StationRecord>,
) -> Result<String, String> {
    let station = station.ok_or_else(|| format!("station '{name}' is not registered"))?;
    if station.status != StationStatus::Active {
        return Err(format!("station '{name}' is {}", station.status));
    }
    if station.credential_serial != credential.serial.to_hex() {
        return Err(format!(
            "certificate {} is not the current credential of station '{name}'",
            credential.serial
        ));
    }
    Ok(format!("station '{name}' is active"))
}

/// [`admit`], and the device serial is within the station's pattern and range.
pub(crate) fn scope(
    name: &str,
    credential: &CertificateInfo,
    station: Option<&StationRecord>,
    device_serial: &str,
) -> Result<String, String> {
    admit(name, credential, station)?;
    let Some(station) = station else {
        return Err(format!("station '{name}' is not registered"));
    };
    let re = crate::serial_scope::whole_serial_pattern(&station.serial_pattern)
        .map_err(|e| format!("station '{name}' has an invalid serial pattern: {e}"))?;
    if !re.is_match(device_serial) {
        return Err(format!(
            "serial {device_serial} does not match station '{name}' pattern {} (the whole serial)",
            station.serial_pattern
        ));
    }
    crate::serial_scope::within_range(
        device_serial,
        station.range_from.as_deref(),
        station.range_to.as_deref(),
    )
    .map_err(|e| format!("station '{name}': {e}"))?;
    Ok(format!(
        "serial {device_serial} is within station '{name}' scope"
    ))
}

/// The `station-quota` rule: the station has birth certificates left. (The recording
/// commit checks it again under the same name, for concurrent requests.)
pub(crate) fn quota(name: &str, station: Option<&StationRecord>) -> Result<String, String> {
    let Some(station) = station else {
        return Err(format!("station '{name}' is not registered"));
    };
    match station.quota {
        Some(quota) if station.issued >= quota => Err(format!(
            "station '{name}' has used its quota of {quota} birth certificates (`fleetca factory set-quota {name} N` raises it)"
        )),
        Some(quota) => Ok(format!(
            "station '{name}' has {} of {quota} birth certificates left",
            quota - station.issued
        )),
        None => Ok(format!("station '{name}' has no quota")),
    }
}
