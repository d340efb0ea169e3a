//! "The same subject" at re-enrollment (RFC 7030 section 4.2.2): the same attributes, type
//! and value, whatever their order in the name and whatever ASN.1 string type encodes them
//! (a PrintableString and a UTF8String with the same text are equal; see
//! [`fleetca_pki::NameAttribute`]). Devices build renewal requests from their enrollment
//! template, which need not list the attributes in the profile's order.

use fleetca_pki::{validate_subject_alt_name, CertificateProfile, NameAttribute};

/// The profile's subjectAltName templates, rendered for `device_serial`, are valid names
/// (a serial `a b` in `DNS:{serial}.dev.example` is not a host name).
pub(crate) fn names_are_valid(
    profile: &CertificateProfile,
    device_serial: &str,
) -> Result<(), String> {
    for name in profile.subject_alt_names_for(device_serial) {
        validate_subject_alt_name(&name).map_err(|e| {
            format!(
                "device serial {device_serial} does not make a valid subjectAltName in profile '{}': {e}",
                profile.name
            )
        })?;
    }
    Ok(())
}

/// Compares a CSR subject with the current certificate's as multisets of attributes. The
/// refusal names the first attribute that differs, is missing or is extra.
pub(crate) fn same_subject(
    requested: &[NameAttribute],
    current: &[NameAttribute],
) -> Result<(), String> {
    let mut unmatched: Vec<&NameAttribute> = current.iter().collect();
    let mut extra = Vec::new();
    for attr in requested {
        match unmatched.iter().position(|c| *c == attr) {
            Some(i) => {
                unmatched.swap_remove(i);
            }
            None => extra.push(attr),
        }
    }
    let first_extra = extra.first();
    let first_missing = unmatched.first();
    match (first_extra, first_missing) {
        (None, None) => Ok(()),
        (Some(got), Some(want)) if got.oid == want.oid => Err(format!(
            "CSR subject attribute {got} differs from the current certificate's {want} (RFC 7030 section 4.2.2)"
        )),
        (_, Some(want)) => Err(format!(
            "CSR subject lacks the current certificate's attribute {want} (RFC 7030 section 4.2.2)"
        )),
        (Some(got), None) => Err(format!(
            "CSR subject attribute {got} is not in the current certificate's subject (RFC 7030 section 4.2.2)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(oid: &str, value: &str) -> NameAttribute {
        NameAttribute {
            oid: oid.into(),
            value: value.into(),
        }
    }

    fn issued() -> Vec<NameAttribute> {
        vec![attr("2.5.4.3", "SN-1"), attr("2.5.4.5", "SN-1")]
    }

    #[test]
    fn a_serial_that_is_no_host_name_label_is_refused_by_a_dns_template() {
        let mut profile = CertificateProfile::default_operational();
        profile.subject_alt_names = vec!["DNS:{serial}.dev.example".into()];
        names_are_valid(&profile, "SN-1").unwrap();
        let e = names_are_valid(&profile, "a b").unwrap_err();
        assert!(e.contains("a b.dev.example"), "{e}");
        assert!(names_are_valid(&profile, "x:y").is_err());
    }

    #[test]
    fn the_same_attributes_in_another_order_are_the_same_subject() {
        same_subject(
            &[attr("2.5.4.5", "SN-1"), attr("2.5.4.3", "SN-1")],
            &issued(),
        )
        .unwrap();
        same_subject(&issued(), &issued()).unwrap();
    }

    #[test]
    fn a_different_missing_or_extra_attribute_is_named() {
        let differs = same_subject(
            &[attr("2.5.4.5", "SN-1"), attr("2.5.4.3", "SN-2")],
            &issued(),
        )
        .unwrap_err();
        assert!(
            differs.contains("CN=SN-2") && differs.contains("CN=SN-1"),
            "{differs}"
        );
        let missing = same_subject(&[attr("2.5.4.5", "SN-1")], &issued()).unwrap_err();
        assert!(
            missing.contains("lacks") && missing.contains("CN=SN-1"),
            "{missing}"
        );
        let mut more = issued();
        more.push(attr("2.5.4.10", "Evil"));
        let extra = same_subject(&more, &issued()).unwrap_err();
        assert!(extra.contains("O=Evil"), "{extra}");
        // A repeated attribute is not the same subject.
        let mut twice = issued();
        twice.push(attr("2.5.4.3", "SN-1"));
        assert!(same_subject(&twice, &issued()).is_err());
    }
}
