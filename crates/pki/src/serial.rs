use std::fmt;

use rand::RngCore;

/// A certificate serial number: positive, exactly 20 bytes on the wire (RFC 5280
/// §4.1.2.2 allows at most 20), unique without coordination between nodes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificateSerial([u8; 20]);

/// Bytes of a generated serial taken from the operating system's CSPRNG (112 bits; the
/// CA/Browser Forum's Baseline Requirements ask for at least 64).
pub const SERIAL_RANDOM_BYTES: usize = 14;

impl CertificateSerial {
    /// A fresh serial: the milliseconds since the Unix epoch (6 bytes, big-endian), then
    /// [`SERIAL_RANDOM_BYTES`] from the CSPRNG. The first byte is in `0x01..=0x7f`:
    /// positive, and never a leading zero that DER would strip.
    ///
    /// The time prefix orders serials by issuance, so the inventory's indexes that hold
    /// serials (the serial itself, `(not_after, serial)` for expiry listings, a renewal's
    /// `replaces`) grow at their ends instead of at a random page each; the random part
    /// keeps serials unpredictable and unique across nodes issuing in the same
    /// millisecond. The issuing moment it reveals is in the certificate's notBefore anyway.
    pub fn generate() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut bytes = [0u8; 20];
        let time = (millis as u64).to_be_bytes();
        bytes[..6].copy_from_slice(&time[2..]);
        rand::rngs::OsRng.fill_bytes(&mut bytes[20 - SERIAL_RANDOM_BYTES..]);
        bytes[0] = (bytes[0] & 0x7f).max(1);
        Self(bytes)
    }

    /// The serial's big-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The serial without leading zero bytes (how it appears in a certificate).
    pub fn significant_bytes(&self) -> &[u8] {
        let start = self.0.iter().position(|b| *b != 0).unwrap_or(19);
        self.0.get(start..).unwrap_or(&self.0)
    }

    /// Parses the lower-case or upper-case hex form (colons allowed, as `openssl` prints
    /// them). Returns `None` for anything that is not 1 to 20 bytes of hex.
    ///
    /// Decodes in place, without allocating: a CRL of a million entries parses a million
    /// serials.
    pub fn from_hex(text: &str) -> Option<Self> {
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            }
        }
        let mut out = [0u8; 20];
        let mut len = 0usize;
        let mut high: Option<u8> = None;
        for c in text.bytes().filter(|c| *c != b':') {
            let n = nibble(c)?;
            let Some(h) = high.take() else {
                high = Some(n);
                continue;
            };
            let byte = (h << 4) | n;
            // Leading zero bytes are not significant (as in `from_slice`).
            if len == 0 && byte == 0 {
                continue;
            }
            *out.get_mut(len)? = byte;
            len += 1;
        }
        if high.is_some() || len == 0 {
            return None;
        }
        // Right-align the significant bytes.
        out.copy_within(..len, 20 - len);
        out.get_mut(..20 - len)?.fill(0);
        Some(Self(out))
    }

    /// From big-endian bytes of a certificate's serial (leading zero bytes are dropped).
    /// Serials of other CAs may be shorter than 20 bytes; they are left-padded.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let significant = bytes.get(start..)?;
        if significant.is_empty() || significant.len() > 20 {
            return None;
        }
        let mut out = [0u8; 20];
        out.get_mut(20 - significant.len()..)?
            .copy_from_slice(significant);
        Some(Self(out))
    }

    /// Lower-case hex, 40 characters: the form used in the inventory and on the CLI.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for CertificateSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CertificateSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateSerial({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_serials_are_positive_twenty_bytes_and_distinct() {
        let a = CertificateSerial::generate();
        let b = CertificateSerial::generate();
        assert_ne!(a, b);
        for s in [&a, &b] {
            assert_eq!(s.as_bytes().len(), 20);
            assert!(s.as_bytes()[0] >= 1 && s.as_bytes()[0] <= 0x7f);
            assert_eq!(s.significant_bytes().len(), 20);
        }
    }

    #[test]
    fn generated_serials_follow_issuance_order_and_keep_112_random_bits() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let serials: Vec<CertificateSerial> =
            (0..200).map(|_| CertificateSerial::generate()).collect();
        let millis = |s: &CertificateSerial| {
            let mut t = [0u8; 8];
            t[2..].copy_from_slice(&s.as_bytes()[..6]);
            u64::from_be_bytes(t)
        };
        for s in &serials {
            assert!(millis(s) >= before && millis(s) <= before + 60_000, "{s}");
        }
        // Later milliseconds sort later, in bytes and in the inventory's hex text.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = CertificateSerial::generate();
        for s in &serials {
            assert!(*s < later && s.to_hex() < later.to_hex());
        }
        // The random part differs between any two (also within one millisecond), and
        // its bytes are not constant.
        let mut random: Vec<&[u8]> = serials.iter().map(|s| &s.as_bytes()[6..]).collect();
        random.sort();
        random.dedup();
        assert_eq!(random.len(), serials.len());
        assert_eq!(SERIAL_RANDOM_BYTES, 20 - 6);
        for i in 6..20 {
            let first = serials[0].as_bytes()[i];
            assert!(serials.iter().any(|s| s.as_bytes()[i] != first), "byte {i}");
        }
    }

    #[test]
    fn hex_round_trip_and_colons() {
        let s = CertificateSerial::generate();
        assert_eq!(CertificateSerial::from_hex(&s.to_hex()), Some(s.clone()));
        let colon: Vec<String> = s.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(CertificateSerial::from_hex(&colon.join(":")), Some(s));
        assert_eq!(CertificateSerial::from_hex("zz"), None);
        assert_eq!(CertificateSerial::from_hex(""), None);
        assert_eq!(CertificateSerial::from_hex(&"ab".repeat(21)), None);
        assert_eq!(CertificateSerial::from_hex("abc"), None);
        assert_eq!(CertificateSerial::from_hex("0000"), None);
        assert_eq!(CertificateSerial::from_hex("é1"), None);
        // Leading zero bytes do not count toward the 20.
        let padded = format!("0000{}", "7f".repeat(20));
        assert_eq!(
            CertificateSerial::from_hex(&padded).map(|s| s.to_hex()),
            Some("7f".repeat(20))
        );
        assert_eq!(
            CertificateSerial::from_hex("0:5").map(|s| s.to_hex()),
            Some(format!("{}05", "00".repeat(19)))
        );
    }

    #[test]
    fn from_hex_agrees_with_decoding_then_from_slice() {
        let reference = |text: &str| {
            hex::decode(text.replace(':', ""))
                .ok()
                .and_then(|b| CertificateSerial::from_slice(&b))
        };
        let mut inputs = vec![
            String::new(),
            ":".into(),
            "0".into(),
            "00".into(),
            "0001".into(),
            "ff".into(),
            "FF:0a".into(),
            "g0".into(),
            "00".repeat(21),
            format!("00{}", "ff".repeat(20)),
            format!("01{}", "ff".repeat(20)),
        ];
        for _ in 0..50 {
            let s = CertificateSerial::generate().to_hex();
            for cut in [1, 2, 3, 17, 38, 40] {
                inputs.push(s.get(..cut).unwrap().to_string());
                inputs.push(s.get(40 - cut..).unwrap().to_uppercase());
            }
        }
        for text in &inputs {
            assert_eq!(
                CertificateSerial::from_hex(text),
                reference(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn short_serials_are_left_padded() {
        let s = CertificateSerial::from_slice(&[0, 0, 5]).unwrap();
        assert_eq!(s.to_hex(), format!("{}05", "00".repeat(19)));
    }
}
