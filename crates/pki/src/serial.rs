use std::fmt;

use rand::RngCore;

/// A certificate serial number: random, positive, exactly 20 bytes on the wire (RFC 5280
/// §4.1.2.2 allows at most 20). 159 bits come from the operating system's CSPRNG, so
/// several nodes can issue without coordination.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificateSerial([u8; 20]);

impl CertificateSerial {
    /// A fresh random serial. The first byte is in `0x01..=0x7f`: positive, and never a
    /// leading zero that DER would strip.
    pub fn random() -> Self {
        let mut bytes = [0u8; 20];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
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
    pub fn from_hex(text: &str) -> Option<Self> {
        let cleaned: String = text.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(cleaned).ok()?;
        Self::from_slice(&bytes)
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
    fn random_serials_are_positive_twenty_bytes_and_distinct() {
        let a = CertificateSerial::random();
        let b = CertificateSerial::random();
        assert_ne!(a, b);
        for s in [&a, &b] {
            assert_eq!(s.as_bytes().len(), 20);
            assert!(s.as_bytes()[0] >= 1 && s.as_bytes()[0] <= 0x7f);
        }
    }

    #[test]
    fn hex_round_trip_and_colons() {
        let s = CertificateSerial::random();
        assert_eq!(CertificateSerial::from_hex(&s.to_hex()), Some(s.clone()));
        let colon: Vec<String> = s.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(CertificateSerial::from_hex(&colon.join(":")), Some(s));
        assert_eq!(CertificateSerial::from_hex("zz"), None);
        assert_eq!(CertificateSerial::from_hex(""), None);
        assert_eq!(CertificateSerial::from_hex(&"ab".repeat(21)), None);
    }

    #[test]
    fn short_serials_are_left_padded() {
        let s = CertificateSerial::from_slice(&[0, 0, 5]).unwrap();
        assert_eq!(s.to_hex(), format!("{}05", "00".repeat(19)));
    }
}
