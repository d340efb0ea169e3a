//! A CA key inside a PKCS#11 token, behind fleetca's [`Signer`] trait.
//!
//! Mechanisms: ECDSA keys sign with CKM_ECDSA over a digest computed on the host (SoftHSM
//! has no combined ECDSA-SHA256 mechanism, and hashing here sends 32 bytes to the token
//! instead of the whole to-be-signed certificate); the raw `r || s` the token returns is
//! re-encoded as the DER `ECDSA-Sig-Value` X.509 wants. RSA keys sign with
//! CKM_SHA256_RSA_PKCS, Ed25519 keys with CKM_EDDSA.

use std::fmt;
use std::sync::RwLock;

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::asn1::{ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Encode};
use fleetca_pki::{KeyAlgorithm, Signer};
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};

use crate::error::HsmError;
use crate::token::Token;

const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// How a key algorithm maps onto PKCS#11.
#[derive(Debug, Clone, Copy)]
enum Scheme {
    /// CKM_ECDSA over a host-side digest; coordinate length in bytes.
    Ecdsa {
        curve: ObjectIdentifier,
        digest: &'static aws_lc_rs::digest::Algorithm,
        coordinate: usize,
    },
    /// CKM_SHA256_RSA_PKCS.
    Rsa { bits: u64 },
    /// CKM_EDDSA (pure Ed25519).
    Ed25519,
}

impl Scheme {
    fn of(algorithm: KeyAlgorithm) -> Result<Self, HsmError> {
        Ok(match algorithm {
            KeyAlgorithm::P256 => Self::Ecdsa {
                curve: P256,
                digest: &aws_lc_rs::digest::SHA256,
                coordinate: 32,
            },
            KeyAlgorithm::P384 => Self::Ecdsa {
                curve: P384,
                digest: &aws_lc_rs::digest::SHA384,
                coordinate: 48,
            },
            KeyAlgorithm::Ed25519 => Self::Ed25519,
            KeyAlgorithm::Rsa2048 => Self::Rsa { bits: 2048 },
            KeyAlgorithm::Rsa3072 => Self::Rsa { bits: 3072 },
            KeyAlgorithm::Rsa4096 => Self::Rsa { bits: 4096 },
            other => {
                return Err(HsmError::UnsupportedAlgorithm {
                    algorithm: other.name().to_string(),
                })
            }
        })
    }

    fn key_type(self) -> KeyType {
        match self {
            Self::Ecdsa { .. } => KeyType::EC,
            Self::Rsa { .. } => KeyType::RSA,
            Self::Ed25519 => KeyType::EC_EDWARDS,
        }
    }
}

/// A private key in a PKCS#11 token, found by its label. Signs through a session pool
/// shared by every key of the token; the key material never leaves the token.
pub struct Pkcs11Key {
    token: Token,
    label: String,
    algorithm: KeyAlgorithm,
    scheme: Scheme,
    handle: RwLock<ObjectHandle>,
    /// The subjectPublicKey bits (EC point, RSAPublicKey DER, Ed25519 key).
    public_key: Vec<u8>,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("token", &self.token.reference().to_string())
            .field("label", &self.label)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn label_template(class: ObjectClass, label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

impl Pkcs11Key {
    /// Whether the token holds a private or public key labelled `label`.
    pub fn exists(token: &Token, label: &str) -> Result<bool, HsmError> {
        token.with_session(Some(label), |s| {
            let private = s.find_objects(&label_template(ObjectClass::PRIVATE_KEY, label))?;
            let public = s.find_objects(&label_template(ObjectClass::PUBLIC_KEY, label))?;
            Ok(!private.is_empty() || !public.is_empty())
        })
    }

    /// Destroys the private and public key objects labelled `label` (a key made for a
    /// step that failed afterwards, so that nothing is left half-created).
    pub fn destroy(token: &Token, label: &str) -> Result<(), HsmError> {
        token.with_session(Some(label), |s| {
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                for handle in s.find_objects(&label_template(class, label))? {
                    s.destroy_object(handle)?;
                }
            }
            Ok(())
        })?;
        tracing::info!(token = %token.reference(), key = label, "key pair destroyed in the token");
        Ok(())
    }

    /// Generates a key pair inside the token: a token object, private, sensitive, never
    /// extractable, usable only to sign. Refuses a label that is taken.
    pub fn generate(token: &Token, label: &str, algorithm: KeyAlgorithm) -> Result<Self, HsmError> {
        let scheme = Scheme::of(algorithm)?;
        if Self::exists(token, label)? {
            return Err(HsmError::KeyExists {
                token: token.reference().clone(),
                key: label.to_string(),
            });
        }
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id[..]).map_err(|_| HsmError::UnusableKey {
            token: token.reference().clone(),
            key: label.to_string(),
            reason: "no randomness for the key id".into(),
        })?;
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
                Attribute::KeyType(scheme.key_type()),
                Attribute::Private(private),
            ]
        };
        let mut public = common(false);
        public.push(Attribute::Verify(true));
        let mechanism = match scheme {
            Scheme::Ecdsa { curve, .. } => {
                public.push(Attribute::EcParams(oid_der(curve, token, label)?));
                Mechanism::EccKeyPairGen
            }
            Scheme::Ed25519 => {
                public.push(Attribute::EcParams(oid_der(ED25519, token, label)?));
                Mechanism::EccEdwardsKeyPairGen
            }
            Scheme::Rsa { bits } => {
                public.push(Attribute::ModulusBits(bits.into()));
                public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        let mut private = common(true);
        private.extend([
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Derive(false),
            Attribute::Unwrap(false),
        ]);
        token.with_session(Some(label), |s| {
            s.generate_key_pair(&mechanism, &public, &private)
                .map(|_| ())
        })?;
        tracing::info!(token = %token.reference(), key = label, %algorithm, "key pair generated in the token");
        Self::open_as(token, label, algorithm)
    }

    /// Finds the key labelled `label`, recognises its algorithm from the token's
    /// attributes (key type, curve, modulus size), then opens it as [`Self::open_as`] does.
    pub fn open(token: &Token, label: &str) -> Result<Self, HsmError> {
        let algorithm = Self::detect(token, label)?;
        Self::open_as(token, label, algorithm)
    }

    fn detect(token: &Token, label: &str) -> Result<KeyAlgorithm, HsmError> {
        let attrs = token.with_session(Some(label), |s| {
            let private = s.find_objects(&label_template(ObjectClass::PRIVATE_KEY, label))?;
            let Some(private) = private.into_iter().next() else {
                return Ok(None);
            };
            let mut attrs = s.get_attributes(private, &[AttributeType::KeyType])?;
            if let Some(public) = s
                .find_objects(&label_template(ObjectClass::PUBLIC_KEY, label))?
                .into_iter()
                .next()
            {
                attrs.extend(
                    s.get_attributes(public, &[AttributeType::EcParams, AttributeType::Modulus])?,
                );
            }
            Ok(Some(attrs))
        })?;
        let attrs = attrs.ok_or_else(|| HsmError::KeyNotFound {
            token: token.reference().clone(),
            key: label.to_string(),
        })?;
        let key_type = attrs.iter().find_map(|a| match a {
            Attribute::KeyType(t) => Some(*t),
            _ => None,
        });
        let curve = attrs.iter().find_map(|a| match a {
            Attribute::EcParams(p) => ObjectIdentifier::from_der(p).ok(),
            _ => None,
        });
        let modulus_bits = attrs.iter().find_map(|a| match a {
            Attribute::Modulus(m) => Some(
                m.iter()
                    .position(|b| *b != 0)
                    .map_or(0, |i| (m.len() - i) * 8),
            ),
            _ => None,
        });
        let found = match (key_type, curve, modulus_bits) {
            (Some(KeyType::EC), Some(c), _) if c == P256 => Some(KeyAlgorithm::P256),
            (Some(KeyType::EC), Some(c), _) if c == P384 => Some(KeyAlgorithm::P384),
            (Some(KeyType::EC_EDWARDS), _, _) => Some(KeyAlgorithm::Ed25519),
            (Some(KeyType::RSA), _, Some(2048)) => Some(KeyAlgorithm::Rsa2048),
            (Some(KeyType::RSA), _, Some(3072)) => Some(KeyAlgorithm::Rsa3072),
            (Some(KeyType::RSA), _, Some(4096)) => Some(KeyAlgorithm::Rsa4096),
            _ => None,
        };
        found.ok_or_else(|| HsmError::UnusableKey {
            token: token.reference().clone(),
            key: label.to_string(),
            reason: "is not a key fleetca can use (P-256, P-384, Ed25519 or RSA 2048/3072/4096 with a public key object of the same label)".into(),
        })
    }

    /// Finds the key labelled `label`, checks that it is a private key of `algorithm`
    /// that cannot leave the token, reads its public key, and signs a probe with it.
    pub fn open_as(token: &Token, label: &str, algorithm: KeyAlgorithm) -> Result<Self, HsmError> {
        let scheme = Scheme::of(algorithm)?;
        let unusable = |reason: String| HsmError::UnusableKey {
            token: token.reference().clone(),
            key: label.to_string(),
            reason,
        };
        let (handle, attrs, public_attrs) = token
            .with_session(Some(label), |s| {
                let Some(handle) = s
                    .find_objects(&label_template(ObjectClass::PRIVATE_KEY, label))?
                    .into_iter()
                    .next()
                else {
                    return Ok(None);
                };
                let attrs = s.get_attributes(
                    handle,
                    &[
                        AttributeType::KeyType,
                        AttributeType::Sign,
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                    ],
                )?;
                let public = s
                    .find_objects(&label_template(ObjectClass::PUBLIC_KEY, label))?
                    .into_iter()
                    .next();
                let public_attrs = match public {
                    Some(p) => s.get_attributes(
                        p,
                        &[
                            AttributeType::EcParams,
                            AttributeType::EcPoint,
                            AttributeType::Modulus,
                            AttributeType::PublicExponent,
                        ],
                    )?,
                    None => Vec::new(),
                };
                Ok(Some((handle, attrs, public_attrs)))
            })?
            .ok_or_else(|| HsmError::KeyNotFound {
                token: token.reference().clone(),
                key: label.to_string(),
            })?;
        for attr in &attrs {
            match attr {
                Attribute::KeyType(t) if *t != scheme.key_type() => {
                    return Err(unusable(format!("is a {t} key, not a {algorithm} key")))
                }
                Attribute::Sign(false) => {
                    return Err(unusable("may not sign (CKA_SIGN is false)".into()))
                }
                Attribute::Sensitive(false) => {
                    return Err(unusable(
                        "is not sensitive (CKA_SENSITIVE is false); a CA key must not be readable"
                            .into(),
                    ))
                }
                Attribute::Extractable(true) => return Err(unusable(
                    "is extractable (CKA_EXTRACTABLE is true); a CA key must not leave the token"
                        .into(),
                )),
                _ => {}
            }
        }
        let public_key = public_key(scheme, &public_attrs).map_err(unusable)?;
        let key = Self {
            token: token.clone(),
            label: label.to_string(),
            algorithm,
            scheme,
            handle: RwLock::new(handle),
            public_key,
        };
        key.probe()?;
        Ok(key)
    }

    /// The token label of the key.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Signs a fixed message and verifies it with the public key: the key can sign, the
    /// mechanism works, and the public key read from the token is this key's.
    fn probe(&self) -> Result<(), HsmError> {
        use aws_lc_rs::signature as sig;
        let message = b"fleetca PKCS#11 key check";
        let signature = self.try_sign(message)?;
        let verifier: &dyn sig::VerificationAlgorithm = match self.algorithm {
            KeyAlgorithm::P256 => &sig::ECDSA_P256_SHA256_ASN1,
            KeyAlgorithm::P384 => &sig::ECDSA_P384_SHA384_ASN1,
            KeyAlgorithm::Ed25519 => &sig::ED25519,
            _ => &sig::RSA_PKCS1_2048_8192_SHA256,
        };
        sig::UnparsedPublicKey::new(verifier, &self.public_key)
            .verify(message, &signature)
            .map_err(|_| HsmError::UnusableKey {
                token: self.token.reference().clone(),
                key: self.label.clone(),
                reason: "a test signature does not verify with the public key stored next to it"
                    .into(),
            })
    }

    /// Signs `msg` in the token, finding the key again if its handle went stale.
    pub fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, HsmError> {
        let (mechanism, input) = match self.scheme {
            Scheme::Ecdsa { digest, .. } => (
                Mechanism::Ecdsa,
                aws_lc_rs::digest::digest(digest, msg).as_ref().to_vec(),
            ),
            Scheme::Rsa { .. } => (Mechanism::Sha256RsaPkcs, msg.to_vec()),
            Scheme::Ed25519 => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                msg.to_vec(),
            ),
        };
        let sign = |s: &Session| {
            let handle = *self
                .handle
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.sign(&mechanism, handle, &input)
        };
        let raw = match self.token.with_session(Some(&self.label), sign) {
            Err(HsmError::Token { failure, .. }) if failure.handle_lost() => {
                tracing::warn!(token = %self.token.reference(), key = %self.label, %failure, "PKCS#11 key handle lost; logging in again and finding the key by label");
                self.token.reset_sessions();
                self.refind()?;
                self.token.with_session(Some(&self.label), sign)?
            }
            other => other?,
        };
        match self.scheme {
            Scheme::Ecdsa { coordinate, .. } => {
                ecdsa_der(&raw, coordinate).map_err(|reason| HsmError::UnusableKey {
                    token: self.token.reference().clone(),
                    key: self.label.clone(),
                    reason,
                })
            }
            Scheme::Rsa { .. } | Scheme::Ed25519 => Ok(raw),
        }
    }

    fn refind(&self) -> Result<(), HsmError> {
        let found = self.token.with_session(Some(&self.label), |s| {
            s.find_objects(&label_template(ObjectClass::PRIVATE_KEY, &self.label))
        })?;
        let handle = found
            .into_iter()
            .next()
            .ok_or_else(|| HsmError::KeyNotFound {
                token: self.token.reference().clone(),
                key: self.label.clone(),
            })?;
        *self
            .handle
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = handle;
        Ok(())
    }

    /// Reads the attributes the CA depends on, for checks and tests:
    /// (CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_NEVER_EXTRACTABLE, CKA_TOKEN, CKA_PRIVATE).
    pub fn protection(&self) -> Result<KeyProtection, HsmError> {
        let handle = *self
            .handle
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let attrs = self.token.with_session(Some(&self.label), |s| {
            s.get_attributes(
                handle,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::Token,
                    AttributeType::Private,
                ],
            )
        })?;
        let mut p = KeyProtection::default();
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => p.sensitive = v,
                Attribute::Extractable(v) => p.extractable = v,
                Attribute::NeverExtractable(v) => p.never_extractable = v,
                Attribute::Token(v) => p.token_object = v,
                Attribute::Private(v) => p.private = v,
                _ => {}
            }
        }
        Ok(p)
    }

    /// Whether the token lets the private value be read (it must not).
    pub fn private_value_readable(&self) -> Result<bool, HsmError> {
        let handle = *self
            .handle
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let attribute = match self.scheme {
            Scheme::Rsa { .. } => AttributeType::PrivateExponent,
            Scheme::Ecdsa { .. } | Scheme::Ed25519 => AttributeType::Value,
        };
        self.token.with_session(Some(&self.label), |s| {
            Ok(!s.get_attributes(handle, &[attribute])?.is_empty())
        })
    }
}

/// Protection attributes of a token key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyProtection {
    /// CKA_SENSITIVE.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE.
    pub extractable: bool,
    /// CKA_NEVER_EXTRACTABLE.
    pub never_extractable: bool,
    /// CKA_TOKEN (persistent).
    pub token_object: bool,
    /// CKA_PRIVATE (needs login).
    pub private: bool,
}

fn oid_der(oid: ObjectIdentifier, token: &Token, label: &str) -> Result<Vec<u8>, HsmError> {
    oid.to_der().map_err(|e| HsmError::UnusableKey {
        token: token.reference().clone(),
        key: label.to_string(),
        reason: format!("cannot encode the curve OID: {e}"),
    })
}

/// The subjectPublicKey bits from the public key object's attributes.
fn public_key(scheme: Scheme, attrs: &[Attribute]) -> Result<Vec<u8>, String> {
    let find = |wanted: AttributeType| {
        attrs.iter().find_map(|a| match (a, wanted) {
            (Attribute::EcPoint(v), AttributeType::EcPoint)
            | (Attribute::EcParams(v), AttributeType::EcParams)
            | (Attribute::Modulus(v), AttributeType::Modulus)
            | (Attribute::PublicExponent(v), AttributeType::PublicExponent) => Some(v.as_slice()),
            _ => None,
        })
    };
    let missing = "has no public key object with the same label".to_string();
    match scheme {
        Scheme::Ecdsa {
            curve, coordinate, ..
        } => {
            let params = find(AttributeType::EcParams).ok_or_else(|| missing.clone())?;
            if ObjectIdentifier::from_der(params).ok() != Some(curve) {
                return Err(
                    "its public key is on another curve than the configured algorithm".into(),
                );
            }
            let point = ec_point(find(AttributeType::EcPoint).ok_or(missing)?)?;
            if point.len() != 1 + 2 * coordinate || point.first() != Some(&0x04) {
                return Err("its public key is not an uncompressed point of the curve".into());
            }
            Ok(point)
        }
        Scheme::Ed25519 => {
            let point = ec_point(find(AttributeType::EcPoint).ok_or(missing)?)?;
            if point.len() != 32 {
                return Err("its public key is not an Ed25519 key".into());
            }
            Ok(point)
        }
        Scheme::Rsa { bits } => {
            let modulus = find(AttributeType::Modulus).ok_or_else(|| missing.clone())?;
            let exponent = find(AttributeType::PublicExponent).ok_or(missing)?;
            let modulus_bits = modulus
                .iter()
                .position(|b| *b != 0)
                .map_or(0, |i| (modulus.len() - i) * 8);
            if modulus_bits as u64 != bits {
                return Err(format!(
                    "its modulus has {modulus_bits} bits, the configured algorithm {bits}"
                ));
            }
            rsa_public_key(modulus, exponent)
        }
    }
}

/// CKA_EC_POINT is a DER OCTET STRING holding the point (PKCS#11 2.40); some modules
/// return the bare point.
fn ec_point(value: &[u8]) -> Result<Vec<u8>, String> {
    match OctetStringRef::from_der(value) {
        Ok(os) => Ok(os.as_bytes().to_vec()),
        Err(_) => Ok(value.to_vec()),
    }
}

/// DER RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }.
fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, String> {
    der_sequence_of_uints(&[modulus, exponent])
}

fn der_sequence_of_uints(parts: &[&[u8]]) -> Result<Vec<u8>, String> {
    let enc = |e: der::Error| format!("cannot encode: {e}");
    let uints = parts
        .iter()
        .map(|p| UintRef::new(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(enc)?;
    let mut body = Vec::new();
    for u in &uints {
        u.encode_to_vec(&mut body).map_err(enc)?;
    }
    let len = der::Length::try_from(body.len()).map_err(enc)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    der::Header::new(der::Tag::Sequence, len)
        .map_err(enc)?
        .encode_to_vec(&mut out)
        .map_err(enc)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// CKM_ECDSA returns `r || s`, each `coordinate` bytes; X.509 wants
/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
fn ecdsa_der(raw: &[u8], coordinate: usize) -> Result<Vec<u8>, String> {
    if raw.len() != 2 * coordinate {
        return Err(format!(
            "the token returned a {}-byte ECDSA signature, expected {}",
            raw.len(),
            2 * coordinate
        ));
    }
    let (r, s) = raw.split_at(coordinate);
    der_sequence_of_uints(&[r, s])
}

impl PublicKeyData for Pkcs11Key {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm.signature_algorithm()
    }
}

impl SigningKey for Pkcs11Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.try_sign(msg).map_err(|e| {
            // rcgen's error has no room for a cause; the log line has all of it.
            tracing::error!(error = %e, "PKCS#11 signature failed");
            rcgen::Error::RemoteKeyError
        })
    }
}

impl Signer for Pkcs11Key {
    fn key_algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_signatures_become_der_with_minimal_integers() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero byte
        raw[63] = 0x01; // s is 1 after stripping zeros
        let der = ecdsa_der(&raw, 32).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert_eq!(der[4], 0x00);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert!(ecdsa_der(&raw[..63], 32).is_err());
    }
}
