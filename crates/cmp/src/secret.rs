//! One-time shared secrets for MAC-protected `ir` (RFC 9483 section 4.1.5).
//!
//! The server must compute the MAC, so it needs the secret; the database must not hold it.
//! The secret is therefore derived: HMAC-SHA256 under the server's CMP secret key (a file
//! among the data directory's keys) over the reference and the device serial. The database
//! records the reference (the client's senderKID), the serial, the expiry, who created it,
//! whether it was used, and a SHA-256 of the derived secret (so that a secret derived under
//! another key, after the key file was replaced, is refused rather than silently accepted).
//! Someone with a copy of the database alone cannot compute any secret.

use base64::Engine as _;

use crate::CmpError;

/// The server's key secrets are derived under (32 random bytes).
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key from its 32 bytes (the key file's content).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CmpError> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CmpError::Internal("the CMP secret key file must hold 32 bytes".into()))?;
        Ok(Self(key))
    }

    /// A new random key (the content of a new key file).
    pub fn generate() -> Result<Self, CmpError> {
        Ok(Self(crate::message::random_bytes::<32>()?))
    }

    /// The key file's content.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The secret for `reference` and `device_serial`: 26 characters of URL-safe base64
    /// (156 bits), what the operator hands to the production line.
    pub fn secret(&self, reference: &str, device_serial: &str) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        let mut context = aws_lc_rs::hmac::Context::with_key(&key);
        context.update(b"fleetca cmp secret\0");
        context.update(reference.as_bytes());
        context.update(b"\0");
        context.update(device_serial.as_bytes());
        let tag = context.sign();
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref());
        encoded.chars().take(26).collect()
    }
}

/// SHA-256 of a secret, lower-case hex (what the database keeps).
pub fn secret_sha256(secret: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        secret.as_bytes(),
    ))
}

/// A new reference: 16 random bytes, hex.
pub fn new_reference() -> Result<String, CmpError> {
    Ok(hex::encode(crate::message::random_bytes::<16>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_depend_on_key_reference_and_serial() {
        let a = SecretKey::from_bytes(&[1; 32]).unwrap();
        let b = SecretKey::from_bytes(&[2; 32]).unwrap();
        let s = a.secret("r1", "SN-1");
        assert_eq!(s.len(), 26);
        assert_eq!(s, a.secret("r1", "SN-1"));
        assert_ne!(s, a.secret("r2", "SN-1"));
        assert_ne!(s, a.secret("r1", "SN-2"));
        assert_ne!(s, b.secret("r1", "SN-1"));
        assert!(SecretKey::from_bytes(&[0; 31]).is_err());
    }
}
