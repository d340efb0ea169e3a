//! The pkiMessage (RFC 8894 section 3.2): a CMS SignedData whose signed attributes carry
//! the SCEP fields and whose content is the pkcsPKIEnvelope. Read in two steps: the
//! structure and the SCEP attributes (without them there is no transaction to answer:
//! HTTP 400), then the signature and algorithms (answered as a SCEP FAILURE).

use cms::content_info::ContentInfo;
use der::asn1::{Int, OctetString, PrintableStringRef, UtcTime};
use der::oid::ObjectIdentifier;
use der::Decode;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_cert::name::Name;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::algorithms::{verify_signature, Digest, RSA_ENCRYPTION};
use crate::wire::{self, SignedData, SignerInfo};
use crate::ScepError;

const fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

pub(crate) const ID_DATA: ObjectIdentifier = oid("1.2.840.113549.1.7.1");
pub(crate) const ID_SIGNED_DATA: ObjectIdentifier = oid("1.2.840.113549.1.7.2");
pub(crate) const ID_ENVELOPED_DATA: ObjectIdentifier = oid("1.2.840.113549.1.7.3");
pub(crate) const CONTENT_TYPE: ObjectIdentifier = oid("1.2.840.113549.1.9.3");
pub(crate) const MESSAGE_DIGEST: ObjectIdentifier = oid("1.2.840.113549.1.9.4");
pub(crate) const SIGNING_TIME: ObjectIdentifier = oid("1.2.840.113549.1.9.5");
pub(crate) const MESSAGE_TYPE: ObjectIdentifier = oid("2.16.840.1.113733.1.9.2");
pub(crate) const PKI_STATUS: ObjectIdentifier = oid("2.16.840.1.113733.1.9.3");
pub(crate) const FAIL_INFO: ObjectIdentifier = oid("2.16.840.1.113733.1.9.4");
pub(crate) const SENDER_NONCE: ObjectIdentifier = oid("2.16.840.1.113733.1.9.5");
pub(crate) const RECIPIENT_NONCE: ObjectIdentifier = oid("2.16.840.1.113733.1.9.6");
pub(crate) const TRANSACTION_ID: ObjectIdentifier = oid("2.16.840.1.113733.1.9.7");

/// Largest transactionID and nonce accepted (they are echoed in the reply).
const MAX_FIELD: usize = 256;

/// The message types fleetca serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// PKCSReq (19): initial enrollment.
    PkcsReq,
    /// RenewalReq (17): renewal with the current certificate.
    RenewalReq,
    /// CertPoll / GetCertInitial (20).
    CertPoll,
    /// GetCert (21).
    GetCert,
    /// GetCRL (22).
    GetCrl,
    /// Anything else (answered badRequest).
    Other,
}

impl MessageType {
    fn from_code(code: &str) -> Self {
        match code {
            "19" => Self::PkcsReq,
            "17" => Self::RenewalReq,
            "20" => Self::CertPoll,
            "21" => Self::GetCert,
            "22" => Self::GetCrl,
            _ => Self::Other,
        }
    }

    /// The name in logs and the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            Self::PkcsReq => "PKCSReq",
            Self::RenewalReq => "RenewalReq",
            Self::CertPoll => "CertPoll",
            Self::GetCert => "GetCert",
            Self::GetCrl => "GetCRL",
            Self::Other => "unknown",
        }
    }
}

/// A pkiMessage whose structure and SCEP attributes were read, not yet verified.
pub struct PkiMessage {
    pub(crate) message_type: MessageType,
    pub(crate) transaction_id: String,
    pub(crate) sender_nonce: Vec<u8>,
    signed: SignedData,
    signer_info: SignerInfo,
}

/// A certificate of a message, read leniently (any serial length, any version).
#[derive(Debug, Clone)]
pub(crate) struct MessageCertificate {
    pub(crate) der: Vec<u8>,
    pub(crate) spki_der: Vec<u8>,
    pub(crate) issuer: Name,
    pub(crate) serial: Int,
}

impl MessageCertificate {
    pub(crate) fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let tbs = &cert.tbs_certificate;
        Some(Self {
            der: der.to_vec(),
            spki_der: tbs.subject_pki.raw.to_vec(),
            issuer: Name::from_der(tbs.issuer.as_raw()).ok()?,
            serial: Int::new(tbs.raw_serial()).ok()?,
        })
    }

    /// Its subjectPublicKeyInfo.
    pub(crate) fn spki(&self) -> Result<SubjectPublicKeyInfoOwned, ScepError> {
        SubjectPublicKeyInfoOwned::from_der(&self.spki_der)
            .map_err(|e| ScepError::BadMessageCheck(format!("signer key: {e}")))
    }

    /// Whether its key is RSA (the reply's envelope needs RSA key transport).
    pub(crate) fn is_rsa(&self) -> bool {
        self.spki().is_ok_and(|k| k.algorithm.oid == RSA_ENCRYPTION)
    }
}

/// A verified pkiMessage: its signer and its (still enveloped) content.
#[derive(Debug)]
pub(crate) struct Verified {
    /// The signer's certificate.
    pub(crate) signer: MessageCertificate,
    /// The signer first, then the other certificates of the message (its chain).
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// The pkcsPKIEnvelope (DER ContentInfo).
    pub(crate) envelope: Vec<u8>,
    /// The signingTime attribute, if sent.
    pub(crate) signing_time: Option<OffsetDateTime>,
    /// The digest algorithm the client signed with.
    pub(crate) digest: Digest,
}

fn malformed(what: impl std::fmt::Display) -> ScepError {
    ScepError::Malformed(what.to_string())
}

/// The single value of the signed attribute `oid`, if present.
fn attribute<'a>(info: &'a SignerInfo, oid: &ObjectIdentifier) -> Option<&'a der::Any> {
    info.signed_attrs
        .as_ref()?
        .iter()
        .find(|a| a.oid == *oid)
        .and_then(|a| a.values.iter().next())
}

fn printable(info: &SignerInfo, oid: &ObjectIdentifier, name: &str) -> Result<String, ScepError> {
    let value = attribute(info, oid).ok_or_else(|| malformed(format!("no {name} attribute")))?;
    let text = value
        .decode_as::<PrintableStringRef<'_>>()
        .map(|s| s.as_str().to_string())
        .map_err(|e| malformed(format!("{name} is not a PrintableString: {e}")))?;
    if text.len() > MAX_FIELD {
        return Err(malformed(format!(
            "{name} is longer than {MAX_FIELD} characters"
        )));
    }
    Ok(text)
}

fn octets(info: &SignerInfo, oid: &ObjectIdentifier, name: &str) -> Result<Vec<u8>, ScepError> {
    let value = attribute(info, oid).ok_or_else(|| malformed(format!("no {name} attribute")))?;
    let bytes = value
        .decode_as::<OctetString>()
        .map(|o| o.as_bytes().to_vec())
        .map_err(|e| malformed(format!("{name} is not an OCTET STRING: {e}")))?;
    if bytes.len() > MAX_FIELD {
        return Err(malformed(format!(
            "{name} is longer than {MAX_FIELD} bytes"
        )));
    }
    Ok(bytes)
}

impl PkiMessage {
    /// Reads the structure and the SCEP attributes of a pkiMessage (DER).
    pub fn parse(der: &[u8]) -> Result<Self, ScepError> {
        let info = ContentInfo::from_der(der).map_err(|e| malformed(format!("CMS: {e}")))?;
        if info.content_type != ID_SIGNED_DATA {
            return Err(malformed(format!(
                "content type is {}, not signedData",
                info.content_type
            )));
        }
        let signed: SignedData = info
            .content
            .decode_as()
            .map_err(|e| malformed(format!("SignedData: {e}")))?;
        let mut signers = wire::signer_infos(&signed.signer_infos)
            .map_err(|e| malformed(format!("SignerInfo: {e}")))?
            .into_iter();
        let signer_info = match (signers.next(), signers.next()) {
            (Some(s), None) => s,
            _ => return Err(malformed("a pkiMessage has exactly one signer")),
        };
        let message_type =
            MessageType::from_code(&printable(&signer_info, &MESSAGE_TYPE, "messageType")?);
        let transaction_id = printable(&signer_info, &TRANSACTION_ID, "transactionID")?;
        let sender_nonce = octets(&signer_info, &SENDER_NONCE, "senderNonce")?;
        Ok(Self {
            message_type,
            transaction_id,
            sender_nonce,
            signed,
            signer_info,
        })
    }

    /// A PrintableString signed attribute, if present.
    pub(crate) fn printable_attribute(&self, oid: &ObjectIdentifier) -> Option<String> {
        printable(&self.signer_info, oid, "attribute").ok()
    }

    /// An OCTET STRING signed attribute, if present.
    pub(crate) fn octets_attribute(&self, oid: &ObjectIdentifier) -> Option<Vec<u8>> {
        octets(&self.signer_info, oid, "attribute").ok()
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        self.message_type
    }

    /// The digest the client signed with, if fleetca knows it (to answer alike).
    pub(crate) fn digest_hint(&self) -> Option<Digest> {
        Digest::from_oid(&self.signer_info.digest_alg.oid, true).ok()
    }

    /// Checks the signature (over the signed attributes, whose messageDigest must be the
    /// content's) with the signer's certificate from the message, and the algorithms
    /// against the profile (`legacy`: SHA-1 allowed).
    pub(crate) fn verify(&self, legacy: bool) -> Result<Verified, ScepError> {
        let info = &self.signer_info;
        let digest = Digest::from_oid(&info.digest_alg.oid, legacy)?;
        let certificates: Vec<MessageCertificate> = self
            .signed
            .certificates
            .iter()
            .flatten()
            .filter_map(|c| der::Encode::to_der(c).ok())
            .filter_map(|der| MessageCertificate::parse(&der))
            .collect();
        let signer = certificates
            .iter()
            .find(|c| c.serial == info.sid.serial_number && c.issuer == info.sid.issuer)
            .cloned()
            .ok_or_else(|| {
                ScepError::BadMessageCheck(
                    "the signer's certificate (named by issuer and serial number) is not in the message".into(),
                )
            })?;
        let attrs = info
            .signed_attrs
            .as_ref()
            .ok_or_else(|| ScepError::BadMessageCheck("no signed attributes".into()))?;
        let signed_bytes = wire::signed_attributes_der(attrs)
            .map_err(|e| ScepError::BadMessageCheck(format!("signed attributes: {e}")))?;
        verify_signature(
            &signer.spki()?,
            &info.signature_algorithm.oid,
            digest,
            &signed_bytes,
            info.signature.as_bytes(),
        )?;
        // The content the signature covers.
        let content = &self.signed.encap_content_info;
        if content.econtent_type != ID_DATA {
            return Err(ScepError::BadMessageCheck(format!(
                "encapsulated content type is {}, not data",
                content.econtent_type
            )));
        }
        let envelope = content
            .econtent
            .as_ref()
            .ok_or_else(|| ScepError::BadMessageCheck("the pkiMessage has no content".into()))?
            .decode_as::<OctetString>()
            .map_err(|e| ScepError::BadMessageCheck(format!("content: {e}")))?
            .as_bytes()
            .to_vec();
        let claimed = attribute(info, &MESSAGE_DIGEST)
            .and_then(|v| v.decode_as::<OctetString>().ok())
            .ok_or_else(|| ScepError::BadMessageCheck("no messageDigest attribute".into()))?;
        if claimed.as_bytes() != digest.digest(&envelope).as_slice() {
            return Err(ScepError::BadMessageCheck(
                "messageDigest does not match the content".into(),
            ));
        }
        let signing_time = attribute(info, &SIGNING_TIME).and_then(|v| {
            v.decode_as::<UtcTime>()
                .ok()
                .map(|t| t.to_system_time())
                .or_else(|| {
                    v.decode_as::<der::asn1::GeneralizedTime>()
                        .ok()
                        .map(|t| t.to_system_time())
                })
                .map(OffsetDateTime::from)
        });
        let mut chain = Vec::with_capacity(certificates.len());
        chain.push(CertificateDer::from(signer.der.clone()));
        for c in &certificates {
            if c.der != signer.der {
                chain.push(CertificateDer::from(c.der.clone()));
            }
        }
        Ok(Verified {
            signer,
            chain,
            envelope,
            signing_time,
            digest,
        })
    }
}

/// Reads a request as the server does before the store and the RA see it: structure and
/// SCEP attributes, signature and algorithms (`legacy`: SHA-1, DES and 3DES allowed), then the envelope
/// opened with `ra`. Its message type and the envelope's content (the fuzz target's body).
pub fn open_request(
    der: &[u8],
    ra: &crate::RaCredential,
    legacy: bool,
) -> Result<(MessageType, Vec<u8>), ScepError> {
    let message = PkiMessage::parse(der)?;
    let verified = message.verify(legacy)?;
    let (content, _) = crate::envelope::open(&verified.envelope, ra, legacy)?;
    Ok((message.message_type, content))
}
