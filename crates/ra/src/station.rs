//! The `station-scope` rule: what a factory station may ask for.

use std::cmp::Ordering;

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

/// [`admit`], and the device serial is within the station's pattern, range and quota.
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
    let re = regex::Regex::new(&station.serial_pattern)
        .map_err(|e| format!("station '{name}' has an invalid serial pattern: {e}"))?;
    if !re.is_match(device_serial) {
        return Err(format!(
            "serial {device_serial} is outside station '{name}' pattern {}",
            station.serial_pattern
        ));
    }
    if let Some(from) = &station.range_from {
        if natural_cmp(device_serial, from) == Ordering::Less {
            return Err(format!(
                "serial {device_serial} is below station '{name}' range start {from}"
            ));
        }
    }
    if let Some(to) = &station.range_to {
        if natural_cmp(device_serial, to) == Ordering::Greater {
            return Err(format!(
                "serial {device_serial} is above station '{name}' range end {to}"
            ));
        }
    }
    if let Some(quota) = station.quota {
        if station.issued >= quota {
            return Err(format!(
                "station '{name}' has used its quota of {quota} birth certificates"
            ));
        }
    }
    Ok(format!(
        "serial {device_serial} is within station '{name}' scope"
    ))
}

/// Orders serials the way people read them: when both end in digits after the same prefix,
/// by the number (`SN-99` < `SN-100`); otherwise byte by byte.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn split(s: &str) -> (&str, &str) {
        let prefix = s.trim_end_matches(|c: char| c.is_ascii_digit());
        s.split_at(prefix.len())
    }
    let (pa, na) = split(a);
    let (pb, nb) = split(b);
    if pa == pb && !na.is_empty() && !nb.is_empty() {
        let na = na.trim_start_matches('0');
        let nb = nb.trim_start_matches('0');
        return na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
    }
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_naturally() {
        assert_eq!(natural_cmp("SN-99", "SN-100"), Ordering::Less);
        assert_eq!(natural_cmp("SN-0100", "SN-100"), Ordering::Equal);
        assert_eq!(natural_cmp("SN-200", "SN-1999"), Ordering::Less);
        assert_eq!(natural_cmp("AB-5", "SN-1"), Ordering::Less);
        assert_eq!(natural_cmp("SN-5", "SN-5"), Ordering::Equal);
        assert_eq!(natural_cmp("SN-A", "SN-B"), Ordering::Less);
    }
}
