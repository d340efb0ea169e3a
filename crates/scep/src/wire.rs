//! RFC 5652 structures as SCEP clients send them, where the `cms` crate's types are too
//! strict: they hold serial numbers as RFC 5280 `SerialNumber` (at most 20 octets), and
//! clients sign their requests with a self-signed certificate whose serial is a 32-octet
//! hash (certmonger does). These are the same ASN.1 definitions, derived with `der`
//! (no hand-written encoding), with the serial an INTEGER of any length and the signed
//! attributes kept in the order the client signed them.

use cms::content_info::CmsVersion;
use cms::enveloped_data::EncryptedContentInfo;
use cms::signed_data::EncapsulatedContentInfo;
use der::asn1::{Int, ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode, Reader, Sequence, Tag, Tagged};
use x509_cert::attr::Attribute;
use x509_cert::name::Name;
use x509_cert::spki::AlgorithmIdentifierOwned;

/// `IssuerAndSerialNumber` (RFC 5652 section 10.2.4), any serial length.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct IssuerSerial {
    pub(crate) issuer: Name,
    pub(crate) serial_number: Int,
}

/// `SignedData` (RFC 5652 section 5.1).
#[derive(Clone, Debug, Sequence)]
pub(crate) struct SignedData {
    pub(crate) version: CmsVersion,
    pub(crate) digest_algorithms: Any,
    pub(crate) encap_content_info: EncapsulatedContentInfo,
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub(crate) certificates: Option<Vec<Any>>,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub(crate) crls: Option<Vec<Any>>,
    /// `SET OF SignerInfo`, read with [`signer_infos`].
    pub(crate) signer_infos: Any,
}

/// `SignerInfo` (RFC 5652 section 5.3) with an issuerAndSerialNumber signer identifier
/// (what SCEP clients send).
#[derive(Clone, Debug, Sequence)]
pub(crate) struct SignerInfo {
    pub(crate) version: CmsVersion,
    pub(crate) sid: IssuerSerial,
    pub(crate) digest_alg: AlgorithmIdentifierOwned,
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub(crate) signed_attrs: Option<Vec<Attribute>>,
    pub(crate) signature_algorithm: AlgorithmIdentifierOwned,
    pub(crate) signature: OctetString,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub(crate) unsigned_attrs: Option<Vec<Attribute>>,
}

/// The SignerInfos of a SignedData.
pub(crate) fn signer_infos(set: &Any) -> der::Result<Vec<SignerInfo>> {
    if set.tag() != Tag::Set {
        return Err(der::Error::from(der::ErrorKind::TagUnexpected {
            expected: Some(Tag::Set),
            actual: set.tag(),
        }));
    }
    let mut reader = der::SliceReader::new(set.value())?;
    let mut out = Vec::new();
    while !der::Reader::is_finished(&reader) {
        out.push(SignerInfo::decode(&mut reader)?);
    }
    Ok(out)
}

/// The DER of the signed attributes as signed: `SET OF` (tag 0x31) over the attributes in
/// the order the signer encoded them (RFC 5652 section 5.4).
pub(crate) fn signed_attributes_der(attrs: &[Attribute]) -> der::Result<Vec<u8>> {
    let mut content = Vec::new();
    for a in attrs {
        a.encode_to_vec(&mut content)?;
    }
    Any::new(Tag::Set, content)?.to_der()
}

/// `KeyTransRecipientInfo` (RFC 5652 section 6.2.1), issuerAndSerialNumber form.
#[derive(Clone, Debug, Sequence)]
pub(crate) struct KeyTransRecipientInfo {
    pub(crate) version: CmsVersion,
    pub(crate) rid: IssuerSerial,
    pub(crate) key_enc_alg: AlgorithmIdentifierOwned,
    pub(crate) enc_key: OctetString,
}

/// `EnvelopedData` (RFC 5652 section 6.1) without originatorInfo and unprotectedAttrs.
#[derive(Clone, Debug, Sequence)]
pub(crate) struct EnvelopedData {
    pub(crate) version: CmsVersion,
    /// `SET OF RecipientInfo`, from [`recipient_set`].
    pub(crate) recip_infos: Any,
    pub(crate) encrypted_content: EncryptedContentInfo,
}

/// A `SET OF RecipientInfo` of one recipient.
pub(crate) fn recipient_set(recipient: &KeyTransRecipientInfo) -> der::Result<Any> {
    Any::new(Tag::Set, recipient.to_der()?)
}

/// `EnvelopedData` (RFC 5652 section 6.1) as a client sends it, read leniently: the
/// recipients one by one (see [`key_transport_recipients`]) and the encrypted content in
/// either of its forms (see [`encrypted_octets`]). No originatorInfo or unprotectedAttrs
/// (SCEP clients send none).
#[derive(Clone, Debug, Sequence)]
pub(crate) struct ReceivedEnvelopedData {
    pub(crate) version: CmsVersion,
    /// `SET OF RecipientInfo`.
    pub(crate) recip_infos: Any,
    pub(crate) encrypted_content: ReceivedEncryptedContentInfo,
}

/// `EncryptedContentInfo` with the `[0] IMPLICIT OCTET STRING` kept as read.
#[derive(Clone, Debug, Sequence)]
pub(crate) struct ReceivedEncryptedContentInfo {
    pub(crate) content_type: ObjectIdentifier,
    pub(crate) content_enc_alg: AlgorithmIdentifierOwned,
    pub(crate) encrypted_content: Option<Any>,
}

/// The key transport recipients (`KeyTransRecipientInfo` with an issuerAndSerialNumber)
/// of a `SET OF RecipientInfo`, in the order sent; other kinds of recipient are skipped.
pub(crate) fn key_transport_recipients(set: &Any) -> der::Result<Vec<KeyTransRecipientInfo>> {
    if set.tag() != Tag::Set {
        return Err(der::Error::from(der::ErrorKind::TagUnexpected {
            expected: Some(Tag::Set),
            actual: set.tag(),
        }));
    }
    let mut reader = der::SliceReader::new(set.value())?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        let any = Any::decode(&mut reader)?;
        if any.tag() == Tag::Sequence {
            if let Ok(ktri) = any.decode_as::<KeyTransRecipientInfo>() {
                out.push(ktri);
            }
        }
    }
    Ok(out)
}

/// The octets of an `[0] IMPLICIT OCTET STRING` (encryptedContent): primitive in DER, or
/// constructed from OCTET STRING segments in BER, as Go's pkcs7 (micromdm's scepclient)
/// sends it; RFC 5652 allows BER here.
pub(crate) fn encrypted_octets(content: &Any) -> der::Result<Vec<u8>> {
    if !content.tag().is_constructed() {
        return Ok(content.value().to_vec());
    }
    let mut reader = der::SliceReader::new(content.value())?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        out.extend_from_slice(OctetString::decode(&mut reader)?.as_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encryptedContent as Go's pkcs7 writes it (`[0]` constructed around an OCTET
    /// STRING, BER) and as DER has it (`[0]` primitive) read to the same octets.
    #[test]
    fn encrypted_content_reads_in_its_ber_and_der_forms() {
        let secret = b"ciphertext bytes".to_vec();
        let segment = OctetString::new(secret.clone()).unwrap().to_der().unwrap();
        let constructed = Any::new(
            Tag::ContextSpecific {
                constructed: true,
                number: der::TagNumber::N0,
            },
            segment,
        )
        .unwrap();
        assert_eq!(encrypted_octets(&constructed).unwrap(), secret);
        let primitive = Any::new(
            Tag::ContextSpecific {
                constructed: false,
                number: der::TagNumber::N0,
            },
            secret.clone(),
        )
        .unwrap();
        assert_eq!(encrypted_octets(&primitive).unwrap(), secret);
        // A constructed form whose segments are not OCTET STRINGs is an error, not a panic.
        let bad = Any::new(
            Tag::ContextSpecific {
                constructed: true,
                number: der::TagNumber::N0,
            },
            der::asn1::Null.to_der().unwrap(),
        )
        .unwrap();
        assert!(encrypted_octets(&bad).is_err());
        // The whole EncryptedContentInfo with the constructed form decodes.
        let info = ReceivedEncryptedContentInfo {
            content_type: ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1"),
            content_enc_alg: AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new_unwrap("1.3.14.3.2.7"),
                parameters: None,
            },
            encrypted_content: Some(constructed),
        };
        let read = ReceivedEncryptedContentInfo::from_der(&info.to_der().unwrap()).unwrap();
        assert_eq!(
            encrypted_octets(read.encrypted_content.as_ref().unwrap()).unwrap(),
            secret
        );
    }
}
