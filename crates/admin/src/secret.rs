//! The secrets of the admin API (API tokens `fca_...`, sessions `fcs_...`): 32 random
//! bytes, base64url, shown once; only their SHA-256 is stored.

use std::fmt;

use base64::Engine;

/// The prefix of API tokens.
pub const TOKEN_PREFIX: &str = "fca_";
/// The prefix of login sessions.
pub const SESSION_PREFIX: &str = "fcs_";

/// A bearer secret in the clear, for showing once. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A new secret with `prefix` and 32 bytes from the system's random generator.
    pub(crate) fn generate(prefix: &str) -> Result<Self, crate::AdminError> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| crate::AdminError::Internal("no random bytes".into()))?;
        Ok(Self(format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// A new secret of `bytes` random bytes in lower-case hex, no prefix (SCEP challenge
    /// passwords: a PrintableString every client can send).
    pub(crate) fn generate_hex(bytes: usize) -> Result<Self, crate::AdminError> {
        let mut random = vec![0u8; bytes];
        aws_lc_rs::rand::fill(&mut random)
            .map_err(|_| crate::AdminError::Internal("no random bytes".into()))?;
        Ok(Self(random.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The secret itself: to show to its owner, once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, lower-case hex (what the store keeps).
    pub fn sha256(&self) -> String {
        sha256_hex(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// SHA-256 of `text`, lower-case hex.
pub(crate) fn sha256_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two hashes are equal, in time independent of where they differ.
pub(crate) fn same_hash(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Whether `secret` has the shape of one of ours: prefix and 43 base64url characters.
pub(crate) fn well_formed(secret: &str, prefix: &str) -> bool {
    secret.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}
