//! The EST `/csrattrs` response (RFC 7030 §4.5, as clarified by RFC 9908): a SEQUENCE OF
//! OIDs and attributes telling the client what to put in its CSR.

use der::asn1::{ObjectIdentifier, SetOfVec};
use der::{Any, Encode, Sequence, ValueOrd};

use crate::{CertificateProfile, KeyAlgorithm, PkiError};

#[derive(Clone, Debug, Eq, PartialEq, Sequence, ValueOrd)]
struct Attribute {
    attr_type: ObjectIdentifier,
    values: SetOfVec<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, der::Choice)]
enum AttrOrOid {
    Oid(ObjectIdentifier),
    Attribute(Attribute),
}

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
const OID_CHALLENGE_PASSWORD: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7");

/// The DER `CsrAttrs` for a profile: the preferred key type (the first allowed key
/// algorithm, as an attribute naming its curve for EC keys), its signature algorithm, the
/// `serialNumber` subject attribute, and `challengePassword` when the profile requires the
/// tls-exporter channel binding. tls-unique is never asked for.
pub fn csr_attributes(profile: &CertificateProfile) -> Result<Vec<u8>, PkiError> {
    let enc = |e: der::Error| PkiError::Encoding(format!("csrattrs: {e}"));
    let mut items = Vec::new();
    if let Some(first) = profile.allowed_keys.first() {
        match first {
            KeyAlgorithm::P256 | KeyAlgorithm::P384 => {
                let curve = if *first == KeyAlgorithm::P256 {
                    OID_P256
                } else {
                    OID_P384
                };
                let mut values = SetOfVec::new();
                values
                    .insert(Any::encode_from(&curve).map_err(enc)?)
                    .map_err(enc)?;
                items.push(AttrOrOid::Attribute(Attribute {
                    attr_type: OID_EC_PUBLIC_KEY,
                    values,
                }));
                let sig = if *first == KeyAlgorithm::P256 {
                    OID_ECDSA_SHA256
                } else {
                    OID_ECDSA_SHA384
                };
                items.push(AttrOrOid::Oid(sig));
            }
            KeyAlgorithm::Ed25519 => items.push(AttrOrOid::Oid(OID_ED25519)),
            _ => {
                items.push(AttrOrOid::Oid(OID_RSA));
                items.push(AttrOrOid::Oid(OID_SHA256_RSA));
            }
        }
    }
    items.push(AttrOrOid::Oid(OID_SERIAL_NUMBER));
    if profile.require_channel_binding {
        items.push(AttrOrOid::Oid(OID_CHALLENGE_PASSWORD));
    }
    items.to_der().map_err(enc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;

    #[test]
    fn default_profile_asks_for_p256_and_the_serial_number() {
        let der = csr_attributes(&CertificateProfile::default_operational()).unwrap();
        let items: Vec<AttrOrOid> = Vec::from_der(&der).unwrap();
        assert_eq!(items.len(), 3);
        match &items[0] {
            AttrOrOid::Attribute(a) => {
                assert_eq!(a.attr_type, OID_EC_PUBLIC_KEY);
                let curve: ObjectIdentifier = a.values.get(0).unwrap().decode_as().unwrap();
                assert_eq!(curve, OID_P256);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(items[1], AttrOrOid::Oid(OID_ECDSA_SHA256));
        assert_eq!(items[2], AttrOrOid::Oid(OID_SERIAL_NUMBER));
        assert!(!items.contains(&AttrOrOid::Oid(OID_CHALLENGE_PASSWORD)));
    }

    #[test]
    fn channel_binding_adds_challenge_password() {
        let mut p = CertificateProfile::default_operational();
        p.require_channel_binding = true;
        p.allowed_keys = vec![KeyAlgorithm::Rsa3072];
        let items: Vec<AttrOrOid> = Vec::from_der(&csr_attributes(&p).unwrap()).unwrap();
        assert_eq!(items.first(), Some(&AttrOrOid::Oid(OID_RSA)));
        assert_eq!(items.last(), Some(&AttrOrOid::Oid(OID_CHALLENGE_PASSWORD)));
    }
}
