//! MAC-based protection (RFC 9481 section 6.1): PBMAC1 (PBKDF2 then HMAC, RFC 8018), the
//! scheme RFC 9483 recommends, and PasswordBasedMac (RFC 4211 section 4.4) for older clients
//! such as OpenSSL 3.0. Both with bounded iteration counts: the work per request stays
//! small however a client sets them.

use cmpv2::parameter::PbmParameter;
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use pkcs5::pbes2::{Kdf, Pbkdf2Params, Pbkdf2Prf};
use x509_cert::spki::{AlgorithmIdentifierOwned, AlgorithmIdentifierRef};

use crate::CmpError;

/// id-PasswordBasedMac (RFC 4211 section 4.4).
pub(crate) const PASSWORD_BASED_MAC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113533.7.66.13");
/// id-PBMAC1 (RFC 8018 appendix A.5).
pub(crate) const PBMAC1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.14");
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const HMAC_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.8.1.2");
const HMAC_WITH_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.7");
const HMAC_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.9");
const HMAC_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.10");
const HMAC_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.11");

/// Iteration counts accepted (PasswordBasedMac hashes, PBKDF2 rounds): enough to slow
/// guessing, bounded so that one request cannot keep a core busy.
const ITERATIONS: std::ops::RangeInclusive<u64> = 100..=100_000;

/// `PBMAC1-params` (RFC 8018 appendix A.5).
#[derive(der::Sequence)]
struct Pbmac1Params<'a> {
    key_derivation_func: Kdf<'a>,
    message_auth_scheme: AlgorithmIdentifierRef<'a>,
}

/// The MAC scheme and parameters of a message.
#[derive(Clone)]
pub(crate) enum MacScheme {
    /// PasswordBasedMac.
    PasswordBased(PbmParameter),
    /// PBMAC1, its DER parameters.
    Pbmac1(Vec<u8>),
}

fn bad(what: &str) -> impl Fn(der::Error) -> CmpError + '_ {
    move |e| CmpError::BadAlgorithm(format!("{what} parameters: {e}"))
}

fn hmac_algorithm(oid: &ObjectIdentifier) -> Option<aws_lc_rs::hmac::Algorithm> {
    Some(match *oid {
        HMAC_SHA1 | HMAC_WITH_SHA1 => aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        HMAC_SHA256 => aws_lc_rs::hmac::HMAC_SHA256,
        HMAC_SHA384 => aws_lc_rs::hmac::HMAC_SHA384,
        HMAC_SHA512 => aws_lc_rs::hmac::HMAC_SHA512,
        _ => return None,
    })
}

fn check_iterations(scheme: &str, n: u64) -> Result<(), CmpError> {
    if ITERATIONS.contains(&n) {
        return Ok(());
    }
    Err(CmpError::BadAlgorithm(format!(
        "{scheme} iteration count {n} (accepted: {} to {})",
        ITERATIONS.start(),
        ITERATIONS.end()
    )))
}

impl MacScheme {
    /// The scheme of a protectionAlg, `None` when it is not a MAC.
    pub(crate) fn of(algorithm: &AlgorithmIdentifierOwned) -> Result<Option<Self>, CmpError> {
        let parameters = || {
            algorithm
                .parameters
                .as_ref()
                .ok_or_else(|| {
                    CmpError::BadAlgorithm(format!("{} without parameters", algorithm.oid))
                })?
                .to_der()
                .map_err(CmpError::internal)
        };
        match algorithm.oid {
            PASSWORD_BASED_MAC => Ok(Some(Self::PasswordBased(
                PbmParameter::from_der(&parameters()?).map_err(bad("PasswordBasedMac"))?,
            ))),
            PBMAC1 => {
                let der = parameters()?;
                Pbmac1Params::from_der(&der).map_err(bad("PBMAC1"))?;
                Ok(Some(Self::Pbmac1(der)))
            }
            _ => Ok(None),
        }
    }

    /// PBMAC1 with PBKDF2-HMAC-SHA256 (`iterations`, a random salt) and HMAC-SHA256.
    pub(crate) fn pbmac1_sha256(
        iterations: u32,
    ) -> Result<(AlgorithmIdentifierOwned, Self), CmpError> {
        let params = Pbmac1Params {
            key_derivation_func: Kdf::Pbkdf2(Pbkdf2Params {
                salt: &[0; 16],
                iteration_count: iterations,
                key_length: Some(32),
                prf: Pbkdf2Prf::HmacWithSha256,
            }),
            message_auth_scheme: AlgorithmIdentifierRef {
                oid: HMAC_SHA256,
                parameters: None,
            },
        };
        Self::Pbmac1(params.to_der().map_err(CmpError::internal)?).fresh()
    }

    /// The MAC of `data` under `secret`.
    pub(crate) fn mac(&self, secret: &[u8], data: &[u8]) -> Result<Vec<u8>, CmpError> {
        match self {
            Self::PasswordBased(p) => password_based_mac(p, secret, data),
            Self::Pbmac1(der) => {
                let p = Pbmac1Params::from_der(der).map_err(bad("PBMAC1"))?;
                pbmac1(&p, secret, data)
            }
        }
    }

    /// The same scheme with a fresh salt, as a protectionAlg (fleetca's answers).
    pub(crate) fn fresh(&self) -> Result<(AlgorithmIdentifierOwned, Self), CmpError> {
        let salt = crate::message::random_bytes::<16>()?;
        let (oid, scheme) = match self {
            Self::PasswordBased(p) => (
                PASSWORD_BASED_MAC,
                Self::PasswordBased(PbmParameter {
                    salt: OctetString::new(salt.to_vec()).map_err(CmpError::internal)?,
                    ..p.clone()
                }),
            ),
            Self::Pbmac1(der) => {
                let p = Pbmac1Params::from_der(der).map_err(bad("PBMAC1"))?;
                let Kdf::Pbkdf2(kdf) = &p.key_derivation_func else {
                    return Err(CmpError::BadAlgorithm(
                        "PBMAC1 with a KDF other than PBKDF2".into(),
                    ));
                };
                let fresh = Pbmac1Params {
                    key_derivation_func: Kdf::Pbkdf2(Pbkdf2Params {
                        salt: &salt,
                        ..*kdf
                    }),
                    message_auth_scheme: p.message_auth_scheme,
                };
                (
                    PBMAC1,
                    Self::Pbmac1(fresh.to_der().map_err(CmpError::internal)?),
                )
            }
        };
        let parameters = match &scheme {
            Self::PasswordBased(p) => der::Any::encode_from(p),
            Self::Pbmac1(der) => der::Any::from_der(der),
        }
        .map_err(CmpError::internal)?;
        Ok((
            AlgorithmIdentifierOwned {
                oid,
                parameters: Some(parameters),
            },
            scheme,
        ))
    }
}

/// PasswordBasedMac (RFC 4211 section 4.4): the key is the one-way function iterated over
/// secret || salt, then HMAC.
fn password_based_mac(p: &PbmParameter, secret: &[u8], data: &[u8]) -> Result<Vec<u8>, CmpError> {
    let owf: &'static aws_lc_rs::digest::Algorithm = match p.owf.oid {
        SHA1 => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        SHA256 => &aws_lc_rs::digest::SHA256,
        SHA384 => &aws_lc_rs::digest::SHA384,
        SHA512 => &aws_lc_rs::digest::SHA512,
        other => {
            return Err(CmpError::BadAlgorithm(format!(
                "PasswordBasedMac one-way function {other}"
            )))
        }
    };
    let mac = hmac_algorithm(&p.mac.oid)
        .ok_or_else(|| CmpError::BadAlgorithm(format!("PasswordBasedMac MAC {}", p.mac.oid)))?;
    check_iterations("PasswordBasedMac", p.iteration_count)?;
    let mut context = aws_lc_rs::digest::Context::new(owf);
    context.update(secret);
    context.update(p.salt.as_bytes());
    let mut key = context.finish();
    for _ in 1..p.iteration_count {
        key = aws_lc_rs::digest::digest(owf, key.as_ref());
    }
    let key = aws_lc_rs::hmac::Key::new(mac, key.as_ref());
    Ok(aws_lc_rs::hmac::sign(&key, data).as_ref().to_vec())
}

/// PBMAC1 (RFC 8018 section 7.1): PBKDF2 gives the key, the message authentication
/// scheme (HMAC) the MAC.
fn pbmac1(p: &Pbmac1Params<'_>, secret: &[u8], data: &[u8]) -> Result<Vec<u8>, CmpError> {
    let Kdf::Pbkdf2(kdf) = &p.key_derivation_func else {
        return Err(CmpError::BadAlgorithm(
            "PBMAC1 with a KDF other than PBKDF2".into(),
        ));
    };
    let prf = match kdf.prf {
        Pbkdf2Prf::HmacWithSha1 => aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA1,
        Pbkdf2Prf::HmacWithSha256 => aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        Pbkdf2Prf::HmacWithSha384 => aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA384,
        Pbkdf2Prf::HmacWithSha512 => aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA512,
        other => {
            return Err(CmpError::BadAlgorithm(format!("PBKDF2 PRF {other:?}")));
        }
    };
    let mac = hmac_algorithm(&p.message_auth_scheme.oid).ok_or_else(|| {
        CmpError::BadAlgorithm(format!("PBMAC1 MAC {}", p.message_auth_scheme.oid))
    })?;
    check_iterations("PBKDF2", u64::from(kdf.iteration_count))?;
    let iterations = std::num::NonZeroU32::new(kdf.iteration_count)
        .ok_or_else(|| CmpError::BadAlgorithm("PBKDF2 iteration count 0".into()))?;
    // The key is as long as the MAC's hash unless keyLength says otherwise (at most 64).
    let length = kdf
        .key_length
        .map_or(mac.digest_algorithm().output_len(), usize::from);
    if !(16..=64).contains(&length) {
        return Err(CmpError::BadAlgorithm(format!(
            "PBKDF2 key length {length}"
        )));
    }
    let mut key = vec![0u8; length];
    aws_lc_rs::pbkdf2::derive(prf, iterations, kdf.salt, secret, &mut key);
    let key = aws_lc_rs::hmac::Key::new(mac, &key);
    Ok(aws_lc_rs::hmac::sign(&key, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pbmac1_scheme(iterations: u32) -> MacScheme {
        let params = Pbmac1Params {
            key_derivation_func: Kdf::Pbkdf2(Pbkdf2Params {
                salt: b"0123456789abcdef",
                iteration_count: iterations,
                key_length: Some(32),
                prf: Pbkdf2Prf::HmacWithSha256,
            }),
            message_auth_scheme: AlgorithmIdentifierRef {
                oid: HMAC_SHA256,
                parameters: None,
            },
        };
        MacScheme::Pbmac1(params.to_der().unwrap())
    }

    /// PBMAC1 is PBKDF2-HMAC-SHA256 then HMAC-SHA256 (computed here step by step).
    #[test]
    fn pbmac1_is_pbkdf2_then_hmac() {
        let scheme = pbmac1_scheme(1000);
        let mut key = [0u8; 32];
        aws_lc_rs::pbkdf2::derive(
            aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(1000).unwrap(),
            b"0123456789abcdef",
            b"secret",
            &mut key,
        );
        let expected = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key),
            b"data",
        );
        assert_eq!(scheme.mac(b"secret", b"data").unwrap(), expected.as_ref());
        assert_ne!(scheme.mac(b"other", b"data").unwrap(), expected.as_ref());
        // A fresh salt: another MAC, the same scheme otherwise.
        let (alg, fresh) = scheme.fresh().unwrap();
        assert_eq!(alg.oid, PBMAC1);
        assert!(matches!(
            MacScheme::of(&alg).unwrap(),
            Some(MacScheme::Pbmac1(_))
        ));
        assert_ne!(fresh.mac(b"secret", b"data").unwrap(), expected.as_ref());
    }

    #[test]
    fn iteration_counts_are_bounded() {
        assert!(matches!(
            pbmac1_scheme(10_000_000).mac(b"s", b"d"),
            Err(CmpError::BadAlgorithm(_))
        ));
        assert!(matches!(
            pbmac1_scheme(1).mac(b"s", b"d"),
            Err(CmpError::BadAlgorithm(_))
        ));
    }
}
