//! Syntax of the subjectAltName entries fleetca issues: a dNSName is a host name of LDH
//! labels (RFC 5280 section 4.2.1.6, RFC 1034 section 3.5 as amended by RFC 1123), a
//! uniformResourceIdentifier an absolute URI (RFC 3986). A `{serial}` template can render
//! an invalid name for some serials (`a b`, `x:y`): the RA refuses such a request and the
//! lint refuses such a certificate.

/// Checks one rendered entry (`DNS:...`, `URI:...`, `IP:...`). `Err` says what is wrong.
pub fn validate_subject_alt_name(entry: &str) -> Result<(), String> {
    if let Some(host) = entry.strip_prefix("DNS:") {
        host_name(host).map_err(|e| format!("dNSName '{}': {e}", crate::escape_controls(host)))
    } else if let Some(uri) = entry.strip_prefix("URI:") {
        fluent_uri::Uri::parse(uri).map(|_| ()).map_err(|e| {
            format!(
                "URI '{}' is not an absolute URI (RFC 3986): {e}",
                crate::escape_controls(uri)
            )
        })
    } else {
        Ok(())
    }
}

fn host_name(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > 253 {
        return Err("a host name has 1 to 253 characters".into());
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label '{label}' must have 1 to 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "label '{label}' contains {c:?}; host names have letters, digits and hyphens only"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "label '{label}' must not start or end with a hyphen"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_ldh_labels() {
        for ok in [
            "localhost",
            "sn-1.dev.example",
            "A1.example",
            "xn--bcher-kva.example",
        ] {
            validate_subject_alt_name(&format!("DNS:{ok}")).unwrap();
        }
        for bad in [
            "a b.dev.example",
            "x:y.dev.example",
            "-a.example",
            "a..b",
            "",
            "a_b.example",
        ] {
            assert!(
                validate_subject_alt_name(&format!("DNS:{bad}")).is_err(),
                "{bad}"
            );
        }
        assert!(validate_subject_alt_name(&format!("DNS:{}.x", "a".repeat(64))).is_err());
    }

    #[test]
    fn uris_are_absolute_rfc3986() {
        for ok in [
            "urn:dev:serial:SN-1",
            "https://dev.example/d/SN-1",
            "urn:x:a%20b",
        ] {
            validate_subject_alt_name(&format!("URI:{ok}")).unwrap();
        }
        for bad in [
            "urn:dev:serial:a b",
            "no-scheme",
            "https://x/<y>",
            "urn:x:%zz",
        ] {
            let e = validate_subject_alt_name(&format!("URI:{bad}")).unwrap_err();
            assert!(e.contains("RFC 3986"), "{e}");
        }
        validate_subject_alt_name("IP:127.0.0.1").unwrap();
    }
}
