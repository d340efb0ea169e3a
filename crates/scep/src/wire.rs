//! RFC 5652 structures as SCEP clients send them, where the `cms` crate's types are too
//! strict: they hold serial numbers as RFC 5280 `SerialNumber` (at most 20 octets), and
//! clients sign their requests with a self-signed certificate whose serial is a 32-octet
//! hash (certmonger does). These are the same ASN.1 definitions, derived with `der`
//! (no hand-written encoding), with the serial an INTEGER of any length and the signed
//! attributes kept in the order the client signed them.

use cms::content_info::CmsVersion;
use cms::enveloped_data::EncryptedContentInfo;
use cms::signed_data::EncapsulatedContentInfo;
use der::asn1::{Int, OctetString};
use der::{Any, Decode, Encode, Sequence, Tag, Tagged};
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
