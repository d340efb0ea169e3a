//! The algorithms a SCEP message may use, by OID: SHA-256 or better and AES-CBC always;
//! SHA-1 and DES/3DES only under a profile that allows legacy algorithms; MD5 never.

use aws_lc_rs::{cipher, digest, signature};
use der::oid::ObjectIdentifier;

use crate::ScepError;

const fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

pub(crate) const SHA1: ObjectIdentifier = oid("1.3.14.3.2.26");
pub(crate) const SHA256: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.1");
pub(crate) const SHA384: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.2");
pub(crate) const SHA512: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.3");
const MD5: ObjectIdentifier = oid("1.2.840.113549.2.5");

pub(crate) const RSA_ENCRYPTION: ObjectIdentifier = oid("1.2.840.113549.1.1.1");
const SHA1_WITH_RSA: ObjectIdentifier = oid("1.2.840.113549.1.1.5");
const SHA256_WITH_RSA: ObjectIdentifier = oid("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = oid("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = oid("1.2.840.113549.1.1.13");
const EC_PUBLIC_KEY: ObjectIdentifier = oid("1.2.840.10045.2.1");
const ECDSA_SHA256: ObjectIdentifier = oid("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = oid("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = oid("1.2.840.10045.4.3.4");
const P256: ObjectIdentifier = oid("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = oid("1.3.132.0.34");

pub(crate) const AES128_CBC: ObjectIdentifier = oid("2.16.840.1.101.3.4.1.2");
pub(crate) const AES192_CBC: ObjectIdentifier = oid("2.16.840.1.101.3.4.1.22");
pub(crate) const AES256_CBC: ObjectIdentifier = oid("2.16.840.1.101.3.4.1.42");
pub(crate) const DES_EDE3_CBC: ObjectIdentifier = oid("1.2.840.113549.3.7");
pub(crate) const DES_CBC: ObjectIdentifier = oid("1.3.14.3.2.7");

/// A message digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digest {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    /// The digest an OID names; SHA-1 only when `legacy`.
    pub(crate) fn from_oid(oid: &ObjectIdentifier, legacy: bool) -> Result<Self, ScepError> {
        match *oid {
            SHA256 => Ok(Self::Sha256),
            SHA384 => Ok(Self::Sha384),
            SHA512 => Ok(Self::Sha512),
            SHA1 if legacy => Ok(Self::Sha1),
            SHA1 => Err(ScepError::BadAlg(
                "SHA-1 is refused: use SHA-256 or better (a profile may allow legacy algorithms)"
                    .into(),
            )),
            MD5 => Err(ScepError::BadAlg("MD5 is never accepted".into())),
            other => Err(ScepError::BadAlg(format!(
                "unsupported digest algorithm {other}"
            ))),
        }
    }

    pub(crate) fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => SHA1,
            Self::Sha256 => SHA256,
            Self::Sha384 => SHA384,
            Self::Sha512 => SHA512,
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }
}

/// Verifies a SignerInfo signature made with the key of `spki` (an
/// `x509_cert::spki::SubjectPublicKeyInfoOwned`).
pub(crate) fn verify_signature(
    spki: &x509_cert::spki::SubjectPublicKeyInfoOwned,
    signature_algorithm: &ObjectIdentifier,
    digest: Digest,
    message: &[u8],
    signature_value: &[u8],
) -> Result<(), ScepError> {
    let key = spki.subject_public_key.raw_bytes();
    let alg: &dyn signature::VerificationAlgorithm = match spki.algorithm.oid {
        RSA_ENCRYPTION => {
            let signed_with = match *signature_algorithm {
                RSA_ENCRYPTION => digest,
                SHA1_WITH_RSA => Digest::Sha1,
                SHA256_WITH_RSA => Digest::Sha256,
                SHA384_WITH_RSA => Digest::Sha384,
                SHA512_WITH_RSA => Digest::Sha512,
                other => {
                    return Err(ScepError::BadAlg(format!(
                        "signature algorithm {other} does not fit the signer's RSA key"
                    )))
                }
            };
            if signed_with != digest {
                return Err(ScepError::BadAlg(
                    "the signature algorithm's digest differs from the signer's digest algorithm"
                        .into(),
                ));
            }
            match digest {
                Digest::Sha1 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                Digest::Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Digest::Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Digest::Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            }
        }
        EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            let signed_with = match *signature_algorithm {
                EC_PUBLIC_KEY => digest,
                ECDSA_SHA256 => Digest::Sha256,
                ECDSA_SHA384 => Digest::Sha384,
                ECDSA_SHA512 => Digest::Sha512,
                other => {
                    return Err(ScepError::BadAlg(format!(
                        "signature algorithm {other} does not fit the signer's EC key"
                    )))
                }
            };
            if signed_with != digest {
                return Err(ScepError::BadAlg(
                    "the signature algorithm's digest differs from the signer's digest algorithm"
                        .into(),
                ));
            }
            match (curve, digest) {
                (Some(P256), Digest::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
                (Some(P256), Digest::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
                (Some(P256), Digest::Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
                (Some(P384), Digest::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
                (Some(P384), Digest::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
                (Some(P384), Digest::Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
                _ => {
                    return Err(ScepError::BadAlg(
                        "unsupported EC curve or digest for the signer's key".into(),
                    ))
                }
            }
        }
        other => {
            return Err(ScepError::BadAlg(format!(
                "unsupported signer key algorithm {other}"
            )))
        }
    };
    signature::UnparsedPublicKey::new(alg, key)
        .verify(message, signature_value)
        .map_err(|_| ScepError::BadMessageCheck("the pkiMessage signature does not verify".into()))
}

/// A content encryption algorithm of the envelope: AES-CBC. DES and 3DES are refused with
/// badAlg whatever the profile (aws-lc-rs offers them only behind a build feature that
/// would rebuild every crate of the workspace; see the README's SCEP section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentCipher {
    Aes128,
    Aes192,
    Aes256,
}

impl ContentCipher {
    /// The cipher an OID names.
    pub(crate) fn from_oid(oid: &ObjectIdentifier) -> Result<Self, ScepError> {
        match *oid {
            AES128_CBC => Ok(Self::Aes128),
            AES192_CBC => Ok(Self::Aes192),
            AES256_CBC => Ok(Self::Aes256),
            DES_EDE3_CBC | DES_CBC => Err(ScepError::BadAlg(
                "DES and 3DES content encryption is refused: use AES-128-CBC or AES-256-CBC".into(),
            )),
            other => Err(ScepError::BadAlg(format!(
                "unsupported content encryption algorithm {other}; use AES-128-CBC or AES-256-CBC"
            ))),
        }
    }

    pub(crate) fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Aes128 => AES128_CBC,
            Self::Aes192 => AES192_CBC,
            Self::Aes256 => AES256_CBC,
        }
    }

    pub(crate) fn algorithm(self) -> &'static cipher::Algorithm {
        match self {
            Self::Aes128 => &cipher::AES_128,
            Self::Aes192 => &cipher::AES_192,
            Self::Aes256 => &cipher::AES_256,
        }
    }

    pub(crate) fn key_len(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes192 => 24,
            Self::Aes256 => 32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailInfo;

    #[test]
    fn sha1_only_for_legacy_profiles_md5_and_des_never() {
        let alg = |r: Result<Digest, ScepError>| r.map_err(|e| e.fail_info());
        assert_eq!(alg(Digest::from_oid(&SHA256, false)), Ok(Digest::Sha256));
        assert_eq!(alg(Digest::from_oid(&SHA512, false)), Ok(Digest::Sha512));
        assert_eq!(
            alg(Digest::from_oid(&SHA1, false)),
            Err(Some(FailInfo::BadAlg))
        );
        assert_eq!(alg(Digest::from_oid(&SHA1, true)), Ok(Digest::Sha1));
        assert_eq!(
            alg(Digest::from_oid(&MD5, true)),
            Err(Some(FailInfo::BadAlg))
        );
        for oid in [DES_EDE3_CBC, DES_CBC] {
            let err = ContentCipher::from_oid(&oid).unwrap_err();
            assert_eq!(err.fail_info(), Some(FailInfo::BadAlg));
        }
        assert_eq!(
            ContentCipher::from_oid(&AES128_CBC).unwrap(),
            ContentCipher::Aes128
        );
        assert_eq!(ContentCipher::from_oid(&AES256_CBC).unwrap().key_len(), 32);
    }
}
