//! Serial scopes: the patterns and ranges that confine an account, a station or a
//! manufacturer CA to its devices.
//!
//! Every serial pattern is a **whole match**: it is compiled as `^(?:PATTERN)$`, so
//! `AC-[0-9]{4}` accepts `AC-0001` and refuses `XAC-0001`, `AC-00011` and `AC-0001 evil`.
//! Stored patterns keep working with this meaning (an already anchored `^AC-[0-9]{4}$`
//! compiles to the same language). A serial range `FROM..TO` has one shape, a prefix and a
//! number (`ST-1000..ST-1999`); a serial of another shape (`ST-1001x`, `XST-1500`) is
//! outside it, whatever its bytes compare to.

use std::cmp::Ordering;

/// `pattern` compiled to match the whole serial (the profile's `serial_pattern`, account,
/// station and manufacturer patterns alike).
pub fn whole_serial_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

/// A serial split into its prefix and its trailing decimal number (possibly empty).
fn shape(serial: &str) -> (&str, &str) {
    let prefix = serial.trim_end_matches(|c: char| c.is_ascii_digit());
    serial.split_at(prefix.len())
}

/// Checks that `FROM..TO` is a range fleetca can enforce: both ends share a prefix and end
/// in a number, and FROM is not above TO.
pub fn validate_serial_range(from: &str, to: &str) -> Result<(), String> {
    let (pf, nf) = shape(from);
    let (pt, nt) = shape(to);
    if nf.is_empty() || nt.is_empty() || pf != pt {
        return Err(format!(
            "serial range {from}..{to} must be PREFIX<number>..PREFIX<number> with the same prefix (e.g. SN-1000..SN-1999)"
        ));
    }
    if numeric_cmp(nf, nt) == Ordering::Greater {
        return Err(format!("serial range {from}..{to} starts above its end"));
    }
    Ok(())
}

/// Compares two decimal digit strings as numbers (`0100` = `100`, `99` < `100`).
fn numeric_cmp(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Whether `serial` lies within the inclusive range `from..to` (either end optional). The
/// serial must have the range's shape: the bound's prefix followed by a number. A bound
/// without a number (stored before ranges were validated) refuses every serial.
pub(crate) fn within_range(
    serial: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(), String> {
    let (sp, sn) = shape(serial);
    for (bound, refused, word) in [
        (from, Ordering::Less, "below"),
        (to, Ordering::Greater, "above"),
    ] {
        let Some(bound) = bound else { continue };
        let (bp, bn) = shape(bound);
        if bn.is_empty() {
            return Err(format!(
                "range bound {bound} does not end in a number; register the range again as PREFIX<number>..PREFIX<number>"
            ));
        }
        if sp != bp || sn.is_empty() {
            return Err(format!(
                "serial {serial} is not of the range's shape ({bp} followed by a number)"
            ));
        }
        if numeric_cmp(sn, bn) == refused {
            return Err(format!("serial {serial} is {word} the range bound {bound}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_whole_serial() {
        let re = whole_serial_pattern("AC-[0-9]{4}").unwrap();
        assert!(re.is_match("AC-0001"));
        for bad in ["XAC-0001", "AC-00011", "AC-0001 evil", "evilAC-1234zz", ""] {
            assert!(!re.is_match(bad), "{bad}");
        }
        // An alternation is anchored as a whole, and an anchored pattern keeps its meaning.
        let re = whole_serial_pattern("A-1|B-2").unwrap();
        assert!(re.is_match("B-2") && !re.is_match("A-12") && !re.is_match("xB-2"));
        let re = whole_serial_pattern("^AC-[0-9]{4}$").unwrap();
        assert!(re.is_match("AC-1234") && !re.is_match("AC-12345"));
    }

    #[test]
    fn ranges_refuse_serials_of_another_shape() {
        let (f, t) = (Some("ST-1000"), Some("ST-1999"));
        assert!(within_range("ST-1001", f, t).is_ok());
        assert!(within_range("ST-1999", f, t).is_ok());
        assert!(within_range("ST-01500", f, t).is_ok());
        for bad in [
            "ST-1001x",
            "ST-999",
            "ST-2000",
            "XST-1500",
            "ST-",
            "ST-1500-2",
            "st-1500",
        ] {
            assert!(within_range(bad, f, t).is_err(), "{bad}");
        }
        assert!(within_range("SN-99", Some("SN-50"), None).is_ok());
        assert!(within_range("SN-100", None, Some("SN-99")).is_err());
        assert!(within_range("SN-A", Some("SN-A"), Some("SN-B")).is_err());
    }

    #[test]
    fn ranges_are_validated() {
        assert!(validate_serial_range("ST-1000", "ST-1999").is_ok());
        assert!(validate_serial_range("ST-1000", "SX-1999").is_err());
        assert!(validate_serial_range("ST-A", "ST-B").is_err());
        assert!(validate_serial_range("ST-2000", "ST-1999").is_err());
    }
}
