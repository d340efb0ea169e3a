//! CertRep (RFC 8894 section 3.3.2): a SignedData signed by the SCEP RA with pkiStatus,
//! failInfo, the transactionID, a fresh senderNonce and the client's nonce echoed as
//! recipientNonce; on SUCCESS its content is a pkcsPKIEnvelope of a certs-only message.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature;
use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{OctetString, PrintableStringRef, SetOfVec, UtcTime};
use der::Encode;
use time::OffsetDateTime;
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::algorithms::{Digest, RSA_ENCRYPTION};
use crate::message::{
    CONTENT_TYPE, FAIL_INFO, ID_DATA, ID_SIGNED_DATA, MESSAGE_DIGEST, MESSAGE_TYPE, PKI_STATUS,
    RECIPIENT_NONCE, SENDER_NONCE, SIGNING_TIME, TRANSACTION_ID,
};
use crate::ra_credential::RaCredential;
use crate::{FailInfo, ScepError};

/// What a CertRep says.
#[derive(Debug)]
pub(crate) enum Status {
    /// SUCCESS with this pkcsPKIEnvelope (DER ContentInfo).
    Success(Vec<u8>),
    /// PENDING: poll with CertPoll.
    Pending,
    /// FAILURE with this failInfo.
    Failure(FailInfo),
}

impl Status {
    /// The pkiStatus name, for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Success(_) => "SUCCESS",
            Self::Pending => "PENDING",
            Self::Failure(_) => "FAILURE",
        }
    }
}

fn enc(e: der::Error) -> ScepError {
    ScepError::Internal(format!("CertRep encoding: {e}"))
}

fn attr(oid: der::oid::ObjectIdentifier, value: der::Any) -> Result<Attribute, ScepError> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).map_err(enc)?,
    })
}

fn printable(text: &str) -> Result<der::Any, ScepError> {
    der::Any::encode_from(&PrintableStringRef::new(text).map_err(enc)?).map_err(enc)
}

fn octets(bytes: &[u8]) -> Result<der::Any, ScepError> {
    der::Any::encode_from(&OctetString::new(bytes).map_err(enc)?).map_err(enc)
}

/// The CertRep (DER) answering `transaction_id` / `recipient_nonce` with `status`.
pub(crate) fn cert_rep(
    ra: &RaCredential,
    transaction_id: &str,
    recipient_nonce: &[u8],
    status: Status,
    digest: Digest,
    now: OffsetDateTime,
) -> Result<Vec<u8>, ScepError> {
    // Replies are signed with SHA-256 or the client's stronger digest, never SHA-1.
    let digest = match digest {
        Digest::Sha1 => Digest::Sha256,
        d => d,
    };
    let (code, fail, content) = match status {
        Status::Success(envelope) => ("0", None, Some(envelope)),
        Status::Failure(info) => ("2", Some(info), None),
        Status::Pending => ("3", None, None),
    };
    let mut nonce = [0u8; 16];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| ScepError::Internal("no randomness".into()))?;
    let content_digest = digest.digest(content.as_deref().unwrap_or_default());
    let signing_time = UtcTime::from_system_time(now.into()).map_err(enc)?;
    let mut attrs = vec![
        attr(CONTENT_TYPE, der::Any::encode_from(&ID_DATA).map_err(enc)?)?,
        attr(MESSAGE_DIGEST, octets(&content_digest)?)?,
        attr(
            SIGNING_TIME,
            der::Any::encode_from(&signing_time).map_err(enc)?,
        )?,
        attr(MESSAGE_TYPE, printable("3")?)?,
        attr(PKI_STATUS, printable(code)?)?,
        attr(TRANSACTION_ID, printable(transaction_id)?)?,
        attr(SENDER_NONCE, octets(&nonce)?)?,
        attr(RECIPIENT_NONCE, octets(recipient_nonce)?)?,
    ];
    if let Some(info) = fail {
        attrs.push(attr(FAIL_INFO, printable(info.code())?)?);
    }
    let signed_attrs = SetOfVec::try_from(attrs).map_err(enc)?;
    let to_sign = signed_attrs.to_der().map_err(enc)?;
    let scheme = match digest {
        Digest::Sha384 => &signature::RSA_PKCS1_SHA384,
        Digest::Sha512 => &signature::RSA_PKCS1_SHA512,
        Digest::Sha1 | Digest::Sha256 => &signature::RSA_PKCS1_SHA256,
    };
    let mut sig = vec![0u8; ra.signing.public_modulus_len()];
    ra.signing
        .sign(scheme, &SystemRandom::new(), &to_sign, &mut sig)
        .map_err(|_| ScepError::Internal("the SCEP RA key could not sign".into()))?;
    let digest_alg = AlgorithmIdentifierOwned {
        oid: digest.oid(),
        parameters: None,
    };
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(ra.issuer_and_serial.clone()),
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: RSA_ENCRYPTION,
            parameters: Some(der::asn1::Null.into()),
        },
        signature: OctetString::new(sig).map_err(enc)?,
        unsigned_attrs: None,
    };
    // PENDING and FAILURE carry an empty content rather than none: OpenSSL-based clients
    // (certmonger) refuse to verify a SignedData without content.
    let econtent = Some(
        OctetString::new(content.unwrap_or_default())
            .and_then(|o| der::Any::encode_from(&o))
            .map_err(enc)?,
    );
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![digest_alg]).map_err(enc)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent,
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(vec![CertificateChoices::Certificate(
                ra.certificate.clone(),
            )])
            .map_err(enc)?,
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info]).map_err(enc)?),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: der::Any::encode_from(&signed).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)
}
