//! The algorithms a SCEP message may use, by OID: SHA-256 or better and AES-CBC always;
//! SHA-1 and DES/3DES only under a profile that allows legacy algorithms; MD5 never.

use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{cipher, digest, signature};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
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

    /// The name in logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA-1",
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
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

/// A content encryption algorithm of the envelope: AES-CBC always; DES-CBC and
/// DES-EDE3-CBC only under a profile that allows legacy algorithms. AES runs on aws-lc-rs;
/// DES and 3DES on RustCrypto's `des` and `cbc` (aws-lc-rs offers them only behind a
/// build feature that would rebuild every crate of the workspace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentCipher {
    Aes128,
    Aes192,
    Aes256,
    /// DES-EDE3-CBC (legacy profiles only).
    Des3,
    /// Single DES-CBC (legacy profiles only).
    Des,
}

/// Content decryption failed (wrong key or padding); the caller says what to the client.
#[derive(Debug)]
pub(crate) struct CipherFailed;

impl ContentCipher {
    /// The cipher an OID names; DES and 3DES only when `legacy`.
    pub(crate) fn from_oid(oid: &ObjectIdentifier, legacy: bool) -> Result<Self, ScepError> {
        match *oid {
            AES128_CBC => Ok(Self::Aes128),
            AES192_CBC => Ok(Self::Aes192),
            AES256_CBC => Ok(Self::Aes256),
            DES_EDE3_CBC if legacy => Ok(Self::Des3),
            DES_CBC if legacy => Ok(Self::Des),
            DES_EDE3_CBC | DES_CBC => Err(ScepError::BadAlg(
                "DES and 3DES content encryption is refused: use AES-128-CBC or AES-256-CBC (a profile may allow legacy algorithms)".into(),
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
            Self::Des3 => DES_EDE3_CBC,
            Self::Des => DES_CBC,
        }
    }

    /// The name in logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Aes128 => "AES-128-CBC",
            Self::Aes192 => "AES-192-CBC",
            Self::Aes256 => "AES-256-CBC",
            Self::Des3 => "DES-EDE3-CBC",
            Self::Des => "DES-CBC",
        }
    }

    pub(crate) fn key_len(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes192 => 24,
            Self::Aes256 => 32,
            Self::Des3 => 24,
            Self::Des => 8,
        }
    }

    /// The IV length: the cipher's block size.
    pub(crate) fn iv_len(self) -> usize {
        match self {
            Self::Aes128 | Self::Aes192 | Self::Aes256 => 16,
            Self::Des3 | Self::Des => 8,
        }
    }

    /// A fresh random key. DES keys get odd parity in every byte (RFC 1423 section 1.1;
    /// most implementations ignore it, some check it).
    pub(crate) fn random_key(self) -> Result<Vec<u8>, ScepError> {
        let mut key = vec![0u8; self.key_len()];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| ScepError::Internal("no randomness".into()))?;
        if matches!(self, Self::Des3 | Self::Des) {
            for b in &mut key {
                let high = *b & 0xfe;
                *b = high | u8::from(high.count_ones() % 2 == 0);
            }
        }
        Ok(key)
    }

    /// aws-lc-rs's AES of an AES cipher (AES-256 for the others, which never ask).
    fn aes(self) -> &'static cipher::Algorithm {
        match self {
            Self::Aes128 => &cipher::AES_128,
            Self::Aes192 => &cipher::AES_192,
            _ => &cipher::AES_256,
        }
    }

    /// CBC decryption with PKCS#7 padding.
    pub(crate) fn decrypt(
        self,
        key: &[u8],
        iv: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, CipherFailed> {
        match self {
            Self::Aes128 | Self::Aes192 | Self::Aes256 => {
                let iv: [u8; 16] = iv.try_into().map_err(|_| CipherFailed)?;
                let key = cipher::UnboundCipherKey::new(self.aes(), key)
                    .and_then(cipher::PaddedBlockDecryptingKey::cbc_pkcs7)
                    .map_err(|_| CipherFailed)?;
                let mut in_out = data.to_vec();
                let plain = key
                    .decrypt(
                        &mut in_out,
                        cipher::DecryptionContext::Iv128(FixedLength::from(iv)),
                    )
                    .map_err(|_| CipherFailed)?;
                Ok(plain.to_vec())
            }
            Self::Des3 => cbc::Decryptor::<des::TdesEde3>::new_from_slices(key, iv)
                .map_err(|_| CipherFailed)?
                .decrypt_padded_vec::<Pkcs7>(data)
                .map_err(|_| CipherFailed),
            Self::Des => cbc::Decryptor::<des::Des>::new_from_slices(key, iv)
                .map_err(|_| CipherFailed)?
                .decrypt_padded_vec::<Pkcs7>(data)
                .map_err(|_| CipherFailed),
        }
    }

    /// CBC encryption with PKCS#7 padding.
    pub(crate) fn encrypt(
        self,
        key: &[u8],
        iv: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, CipherFailed> {
        match self {
            Self::Aes128 | Self::Aes192 | Self::Aes256 => {
                let iv: [u8; 16] = iv.try_into().map_err(|_| CipherFailed)?;
                let key = cipher::UnboundCipherKey::new(self.aes(), key)
                    .and_then(cipher::PaddedBlockEncryptingKey::cbc_pkcs7)
                    .map_err(|_| CipherFailed)?;
                let mut in_out = data.to_vec();
                key.less_safe_encrypt(
                    &mut in_out,
                    cipher::EncryptionContext::Iv128(FixedLength::from(iv)),
                )
                .map_err(|_| CipherFailed)?;
                Ok(in_out)
            }
            Self::Des3 => Ok(cbc::Encryptor::<des::TdesEde3>::new_from_slices(key, iv)
                .map_err(|_| CipherFailed)?
                .encrypt_padded_vec::<Pkcs7>(data)),
            Self::Des => Ok(cbc::Encryptor::<des::Des>::new_from_slices(key, iv)
                .map_err(|_| CipherFailed)?
                .encrypt_padded_vec::<Pkcs7>(data)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailInfo;

    #[test]
    fn sha1_des_and_3des_only_for_legacy_profiles_md5_never() {
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
            let err = ContentCipher::from_oid(&oid, false).unwrap_err();
            assert_eq!(err.fail_info(), Some(FailInfo::BadAlg));
        }
        assert_eq!(
            ContentCipher::from_oid(&DES_EDE3_CBC, true).unwrap(),
            ContentCipher::Des3
        );
        assert_eq!(
            ContentCipher::from_oid(&DES_CBC, true).unwrap(),
            ContentCipher::Des
        );
        assert_eq!(
            ContentCipher::from_oid(&AES128_CBC, false).unwrap(),
            ContentCipher::Aes128
        );
        assert_eq!(
            ContentCipher::from_oid(&AES256_CBC, false)
                .unwrap()
                .key_len(),
            32
        );
    }

    /// Every cipher round-trips, and DES/3DES match known answers (the NIST SP 800-67
    /// single-block example is ECB; here CBC with a zero IV over one block is the same).
    #[test]
    fn every_cipher_round_trips_with_pkcs7_padding() {
        for c in [
            ContentCipher::Aes128,
            ContentCipher::Aes192,
            ContentCipher::Aes256,
            ContentCipher::Des3,
            ContentCipher::Des,
        ] {
            let key = c.random_key().unwrap();
            let iv = vec![7u8; c.iv_len()];
            for len in [0, 1, 7, 8, 15, 16, 17, 100] {
                let plain = vec![0x5au8; len];
                let sealed = c.encrypt(&key, &iv, &plain).unwrap();
                assert_eq!(sealed.len() % c.iv_len(), 0);
                assert!(sealed.len() > len, "{c:?}: always padded");
                assert_eq!(c.decrypt(&key, &iv, &sealed).unwrap(), plain, "{c:?}");
            }
            // A wrong key fails at the padding (or decrypts to something else).
            let other = c.random_key().unwrap();
            let sealed = c.encrypt(&key, &iv, b"0123456789abcdef0123").unwrap();
            assert_ne!(
                c.decrypt(&other, &iv, &sealed).ok().as_deref(),
                Some(&b"0123456789abcdef0123"[..])
            );
            // A wrong IV length is refused, not a panic.
            assert!(c.decrypt(&key, &[0u8; 3], &sealed).is_err());
        }
        // DES keys have odd parity.
        for b in ContentCipher::Des3.random_key().unwrap() {
            assert_eq!(b.count_ones() % 2, 1);
        }
        // Known answer: the classic DES example (key 133457799BBCDFF1, plaintext
        // 0123456789ABCDEF, ciphertext 85E813540F0AB405), then a padding block.
        let key = hex::decode("133457799BBCDFF1").unwrap();
        let sealed = ContentCipher::Des
            .encrypt(&key, &[0u8; 8], &hex::decode("0123456789ABCDEF").unwrap())
            .unwrap();
        assert_eq!(hex::encode_upper(&sealed[..8]), "85E813540F0AB405");
        assert_eq!(sealed.len(), 16);
        // 3DES with three equal keys is single DES.
        let key3 = [key.clone(), key.clone(), key].concat();
        let sealed3 = ContentCipher::Des3
            .encrypt(&key3, &[0u8; 8], &hex::decode("0123456789ABCDEF").unwrap())
            .unwrap();
        assert_eq!(sealed3, sealed);
    }
}
