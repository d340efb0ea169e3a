//! The `no-extra-extensions` rule: what a CSR's extensionRequest may ask for.
//!
//! EST clients commonly build a renewal request by copying the current certificate,
//! extensions included (authorityKeyIdentifier, cRLDistributionPoints, keyUsage, ...).
//! The profile decides every extension of the issued certificate, so a request is refused
//! only when it asks for more than the profile grants: a key usage or extended key usage
//! the profile does not issue, or an unknown extension marked critical. basicConstraints
//! CA:TRUE is the `no-ca-request` rule and names are the `subject` rule. Everything else
//! is ignored and named in the rule's detail.

use fleetca_pki::{CertificateProfile, RequestedExtensions};

pub(crate) fn within_profile(
    requested: &RequestedExtensions,
    profile: &CertificateProfile,
) -> Result<String, String> {
    if !requested.unknown_critical.is_empty() {
        return Err(format!(
            "the CSR requests critical extensions fleetca does not issue: {}",
            requested.unknown_critical.join(", ")
        ));
    }
    let issued_usages: Vec<String> = profile.key_usages.iter().map(|k| k.to_string()).collect();
    let extra: Vec<&str> = requested
        .key_usages
        .iter()
        .filter(|u| !issued_usages.contains(u))
        .map(String::as_str)
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "the CSR requests key usage {}, which profile '{}' does not issue (it issues {})",
            extra.join(", "),
            profile.name,
            issued_usages.join(", ")
        ));
    }
    let issued_purposes: Vec<String> = profile
        .extended_key_usages
        .iter()
        .map(|k| k.to_string())
        .collect();
    let extra: Vec<&str> = requested
        .extended_key_usages
        .iter()
        .filter(|u| !issued_purposes.contains(u))
        .map(String::as_str)
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "the CSR requests extended key usage {}, which profile '{}' does not issue (it issues {})",
            extra.join(", "),
            profile.name,
            issued_purposes.join(", ")
        ));
    }
    if requested.ignored.is_empty() {
        Ok("no extensions beyond those the profile decides".into())
    } else {
        Ok(format!(
            "requested extensions ignored (the profile decides them): {}",
            requested.ignored.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied_from_current_certificate() -> RequestedExtensions {
        RequestedExtensions {
            ca: false,
            subject_alt_names: vec![],
            key_usages: vec!["digitalSignature".into()],
            extended_key_usages: vec!["clientAuth".into()],
            ignored: [
                "basicConstraints",
                "keyUsage",
                "extendedKeyUsage",
                "subjectKeyIdentifier",
                "authorityKeyIdentifier",
                "cRLDistributionPoints",
                "authorityInfoAccess",
            ]
            .map(String::from)
            .to_vec(),
            unknown_critical: vec![],
        }
    }

    #[test]
    fn copied_extensions_are_accepted_and_named() {
        let detail = within_profile(
            &copied_from_current_certificate(),
            &CertificateProfile::default_operational(),
        )
        .unwrap();
        assert!(
            detail.contains("authorityKeyIdentifier")
                && detail.contains("cRLDistributionPoints")
                && detail.contains("authorityInfoAccess"),
            "{detail}"
        );
    }

    #[test]
    fn more_than_the_profile_grants_is_refused_with_what() {
        let profile = CertificateProfile::default_operational();
        let mut ku = copied_from_current_certificate();
        ku.key_usages.push("keyCertSign".into());
        let reason = within_profile(&ku, &profile).unwrap_err();
        assert!(reason.contains("key usage keyCertSign"), "{reason}");

        let mut eku = copied_from_current_certificate();
        eku.extended_key_usages.push("serverAuth".into());
        let reason = within_profile(&eku, &profile).unwrap_err();
        assert!(reason.contains("extended key usage serverAuth"), "{reason}");

        let mut critical = copied_from_current_certificate();
        critical.unknown_critical.push("1.2.3.4".into());
        let reason = within_profile(&critical, &profile).unwrap_err();
        assert!(reason.contains("critical extensions") && reason.contains("1.2.3.4"));
    }
}
