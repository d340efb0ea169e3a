//! Private key files as factories and secure elements write them: PKCS#8 (`PRIVATE KEY`),
//! SEC1 (`EC PRIVATE KEY`, what `openssl ecparam -genkey` writes) or PKCS#1
//! (`RSA PRIVATE KEY`, `openssl genrsa -traditional`), PEM or DER. Parsing is
//! rustls-pki-types' (PEM and DER format detection) and aws-lc-rs' (the key itself); every
//! key is turned into PKCS#8, the only form fleetca keeps in memory and writes.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use crate::{PkiError, SoftwareKey};

/// The formats [`SoftwareKey::from_key_file`] reads, for error messages.
pub const KEY_FORMATS: &str = "PKCS#8 (PRIVATE KEY), SEC1 (EC PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY), PEM or DER, unencrypted";

/// Reads a private key file in any of [`KEY_FORMATS`] into rustls' form, without
/// converting it (rustls signs with PKCS#8, SEC1 and PKCS#1 keys alike).
pub fn private_key_der(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, PkiError> {
    if looks_like_pem(bytes) {
        PrivateKeyDer::from_pem_slice(bytes).map_err(|e| {
            PkiError::Key(format!(
                "not a PEM private key ({e}); fleetca reads {KEY_FORMATS}"
            ))
        })
    } else {
        PrivateKeyDer::try_from(bytes)
            .map(|k| k.clone_key())
            .map_err(|_| {
                PkiError::Key(format!(
                    "neither a PEM nor a DER private key; fleetca reads {KEY_FORMATS}"
                ))
            })
    }
}

impl SoftwareKey {
    /// Reads a private key in any of [`KEY_FORMATS`], for every algorithm fleetca issues
    /// to (P-256, P-384, Ed25519, RSA). An Ed25519 key only exists as PKCS#8.
    pub fn from_key_file(bytes: &[u8]) -> Result<Self, PkiError> {
        let key = private_key_der(bytes)?;
        let pkcs8 = match &key {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der())?,
            PrivateKeyDer::Pkcs1(k) => pkcs1_to_pkcs8(k.secret_pkcs1_der())?,
            _ => {
                return Err(PkiError::Key(format!(
                    "unknown private key format; fleetca reads {KEY_FORMATS}"
                )))
            }
        };
        Self::from_pkcs8_der(&pkcs8)
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn sec1_to_pkcs8(der: &[u8]) -> Result<Vec<u8>, PkiError> {
    for alg in [
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &ECDSA_P384_SHA384_ASN1_SIGNING,
    ] {
        if let Ok(key) = EcdsaKeyPair::from_private_key_der(alg, der) {
            return key
                .to_pkcs8v1()
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| PkiError::Key("cannot re-encode the EC key as PKCS#8".into()));
        }
    }
    Err(PkiError::Key(
        "SEC1 EC private key on a curve fleetca does not support (P-256 and P-384 are), or malformed".into(),
    ))
}

fn pkcs1_to_pkcs8(der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let key = RsaKeyPair::from_der(der)
        .map_err(|e| PkiError::Key(format!("PKCS#1 RSA private key rejected: {e}")))?;
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&key)
        .map_err(|_| PkiError::Key("cannot re-encode the RSA key as PKCS#8".into()))?;
    Ok(pkcs8.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;

    #[test]
    fn pkcs8_pem_and_der_are_read_for_every_algorithm() {
        for alg in KeyAlgorithm::ALL {
            let key = alg.generate().unwrap();
            let pem = SoftwareKey::from_key_file(key.to_pkcs8_pem().as_bytes()).unwrap();
            assert_eq!(pem.public_key_der(), key.public_key_der(), "{alg:?}");
            let der = SoftwareKey::from_key_file(&key.pkcs8_der()).unwrap();
            assert_eq!(der.public_key_der(), key.public_key_der(), "{alg:?}");
        }
    }

    #[test]
    fn something_else_names_the_accepted_formats() {
        for junk in [
            &b"hello"[..],
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            b"",
        ] {
            let e = SoftwareKey::from_key_file(junk).unwrap_err().to_string();
            assert!(
                e.contains("SEC1 (EC PRIVATE KEY)") && e.contains("PKCS#1"),
                "{e}"
            );
            assert!(!e.contains("is not supported is not supported"), "{e}");
        }
    }
}
