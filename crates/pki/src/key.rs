use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, PublicKeyData, RsaKeySize, SignatureAlgorithm, SigningKey};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::PkiError;

/// Key algorithms fleetca generates and accepts.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 (the default).
    P256,
    /// ECDSA on NIST P-384 with SHA-384.
    P384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256.
    Rsa2048,
    /// RSA 3072 with PKCS#1 v1.5 SHA-256.
    Rsa3072,
    /// RSA 4096 with PKCS#1 v1.5 SHA-256.
    Rsa4096,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order they are documented.
    pub const ALL: [Self; 6] = [
        Self::P256,
        Self::P384,
        Self::Ed25519,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
    ];

    /// The configuration and CLI name (`p256`, `rsa3072`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::P384 => "p384",
            Self::Ed25519 => "ed25519",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
        }
    }

    /// The X.509 signature algorithm fleetca uses with keys of this algorithm.
    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// The kind of public key this algorithm produces.
    pub fn public_key_kind(self) -> PublicKeyKind {
        match self {
            Self::P256 => PublicKeyKind::EcP256,
            Self::P384 => PublicKeyKind::EcP384,
            Self::Ed25519 => PublicKeyKind::Ed25519,
            Self::Rsa2048 => PublicKeyKind::Rsa { bits: 2048 },
            Self::Rsa3072 => PublicKeyKind::Rsa { bits: 3072 },
            Self::Rsa4096 => PublicKeyKind::Rsa { bits: 4096 },
        }
    }

    /// Generates a new software key of this algorithm.
    pub fn generate(self) -> Result<SoftwareKey, PkiError> {
        let alg = self.signature_algorithm();
        let size = match self {
            Self::Rsa2048 => Some(RsaKeySize::_2048),
            Self::Rsa3072 => Some(RsaKeySize::_3072),
            Self::Rsa4096 => Some(RsaKeySize::_4096),
            Self::P256 | Self::P384 | Self::Ed25519 => None,
        };
        let key = match size {
            Some(size) => KeyPair::generate_rsa_for(alg, size),
            None => KeyPair::generate_for(alg),
        }
        .map_err(|e| PkiError::Key(format!("cannot generate a {} key: {e}", self.name())))?;
        Ok(SoftwareKey {
            key,
            algorithm: self,
        })
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.name()).collect();
                format!(
                    "unknown key algorithm '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// The kind of a public key found in a CSR or certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublicKeyKind {
    /// EC on P-256.
    EcP256,
    /// EC on P-384.
    EcP384,
    /// Ed25519.
    Ed25519,
    /// RSA with the modulus size in bits.
    Rsa {
        /// Modulus length.
        bits: usize,
    },
}

impl PublicKeyKind {
    /// Classifies a DER SubjectPublicKeyInfo. Unsupported curves and algorithms are errors.
    pub fn of_spki(spki_der: &[u8]) -> Result<Self, String> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| format!("malformed SubjectPublicKeyInfo: {e}"))?;
        Self::of_parsed_spki(&spki)
    }

    pub(crate) fn of_parsed_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, String> {
        let alg = &spki.algorithm.algorithm;
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => Ok(Self::Rsa {
                bits: rsa.key_size(),
            }),
            Ok(PublicKey::EC(_)) => {
                // Only a named curve (an OID); explicit curve parameters are a SEQUENCE and
                // are never shown (they are bytes, not a name).
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .filter(|p| p.tag() == x509_parser::der_parser::asn1_rs::Tag::Oid)
                    .and_then(|p| p.as_oid().ok())
                    .ok_or_else(|| {
                        "an EC key with explicit curve parameters is not supported; use a named curve (P-256 or P-384)".to_string()
                    })?;
                if curve == x509_parser::oid_registry::OID_EC_P256 {
                    Ok(Self::EcP256)
                } else if curve == x509_parser::oid_registry::OID_NIST_EC_P384 {
                    Ok(Self::EcP384)
                } else {
                    Err(format!(
                        "EC curve {curve} is not supported (P-256 and P-384 are)"
                    ))
                }
            }
            _ if *alg == x509_parser::oid_registry::OID_SIG_ED25519 => Ok(Self::Ed25519),
            _ if *alg == x509_parser::oid_registry::OID_PKCS1_RSASSAPSS => Err(
                "RSASSA-PSS public keys (1.2.840.113549.1.1.10) are not supported; use an rsaEncryption key (RSASSA-PSS signatures with it are accepted)".to_string(),
            ),
            _ => Err(format!(
                "public key algorithm {alg} is not supported (EC P-256 and P-384, Ed25519 and RSA are)"
            )),
        }
    }

    /// Whether a key of this kind is what `algorithm` produces.
    pub fn matches(self, algorithm: KeyAlgorithm) -> bool {
        self == algorithm.public_key_kind()
    }
}

impl fmt::Display for PublicKeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcP256 => f.write_str("p256"),
            Self::EcP384 => f.write_str("p384"),
            Self::Ed25519 => f.write_str("ed25519"),
            Self::Rsa { bits } => write!(f, "rsa{bits}"),
        }
    }
}

/// Something that signs certificates: a key in a file today, a PKCS#11 token later. The
/// rest of the code never sees key material, only this trait.
pub trait Signer: SigningKey + Send + Sync + fmt::Debug {
    /// The algorithm of the key.
    fn key_algorithm(&self) -> KeyAlgorithm;
}

/// A private key held in memory, loaded from or saved to a PKCS#8 file.
pub struct SoftwareKey {
    key: KeyPair,
    algorithm: KeyAlgorithm,
}

impl SoftwareKey {
    /// Parses a PKCS#8 PEM private key. The algorithm is recognised from the key itself.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, PkiError> {
        let probe = KeyPair::from_pem(pem)
            .map_err(|e| PkiError::Key(format!("not a usable PKCS#8 private key: {e}")))?;
        let kind =
            PublicKeyKind::of_spki(&probe.subject_public_key_info()).map_err(PkiError::Key)?;
        let algorithm = KeyAlgorithm::ALL
            .into_iter()
            .find(|a| kind.matches(*a))
            .ok_or_else(|| PkiError::Key(format!("{kind} keys are not supported")))?;
        // Re-load with the signature algorithm fleetca uses for this key type.
        let key = KeyPair::from_pkcs8_pem_and_sign_algo(pem, algorithm.signature_algorithm())
            .map_err(|e| PkiError::Key(format!("not a usable PKCS#8 private key: {e}")))?;
        Ok(Self { key, algorithm })
    }

    /// Parses a PKCS#8 DER private key (see also [`SoftwareKey::from_key_file`]).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, PkiError> {
        let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der);
        let probe = KeyPair::try_from(der)
            .map_err(|e| PkiError::Key(format!("not a usable PKCS#8 private key: {e}")))?;
        let kind =
            PublicKeyKind::of_spki(&probe.subject_public_key_info()).map_err(PkiError::Key)?;
        let algorithm = KeyAlgorithm::ALL
            .into_iter()
            .find(|a| kind.matches(*a))
            .ok_or_else(|| PkiError::Key(format!("{kind} keys are not supported")))?;
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, algorithm.signature_algorithm())
            .map_err(|e| PkiError::Key(format!("not a usable PKCS#8 private key: {e}")))?;
        Ok(Self { key, algorithm })
    }

    /// The PKCS#8 PEM encoding of the private key. Secret: write it only to a 0600 file.
    pub fn to_pkcs8_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The PKCS#8 DER encoding of the private key. Secret.
    pub fn pkcs8_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }

    /// Builds a PKCS#10 request for `subject` signed by this key (tools and tests).
    pub fn certificate_request(
        &self,
        subject: rcgen::DistinguishedName,
        subject_alt_names: Vec<rcgen::SanType>,
        attributes: &[rcgen::Attribute],
    ) -> Result<Vec<u8>, PkiError> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = subject;
        params.subject_alt_names = subject_alt_names;
        let csr = params.serialize_request_with_attributes(&self.key, attributes.to_vec())?;
        Ok(csr.der().to_vec())
    }
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PublicKeyData for SoftwareKey {
    fn der_bytes(&self) -> &[u8] {
        self.key.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.key.algorithm()
    }
}

impl SigningKey for SoftwareKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key.sign(msg)
    }
}

impl Signer for SoftwareKey {
    fn key_algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_round_trips_and_classifies() {
        for alg in KeyAlgorithm::ALL {
            if alg == KeyAlgorithm::Rsa4096 {
                continue; // slow to generate; covered by the same code path as 2048/3072
            }
            let key = alg.generate().unwrap();
            let pem = key.to_pkcs8_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let back = SoftwareKey::from_pkcs8_pem(&pem).unwrap();
            assert_eq!(back.key_algorithm(), alg);
            assert_eq!(back.public_key_der(), key.public_key_der());
            assert_eq!(
                PublicKeyKind::of_spki(&key.public_key_der()).unwrap(),
                alg.public_key_kind()
            );
        }
    }

    #[test]
    fn names_parse_case_insensitively_and_unknown_names_are_explained() {
        assert_eq!("P256".parse::<KeyAlgorithm>(), Ok(KeyAlgorithm::P256));
        let err = "dsa1024".parse::<KeyAlgorithm>().unwrap_err();
        assert!(err.contains("p256, p384, ed25519"), "{err}");
    }

    #[test]
    fn debug_never_prints_key_material() {
        let key = KeyAlgorithm::P256.generate().unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
        assert!(debug.contains("P256"));
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(SoftwareKey::from_pkcs8_pem("hello").is_err());
    }
}
