//! pkcsPKIEnvelope (RFC 8894 section 3.2.2): CMS EnvelopedData with one RSA key transport
//! recipient and AES-CBC content encryption (DES/3DES-CBC for legacy profiles). Requests
//! are opened with the RA key; replies are sealed to the requester's certificate, in the
//! cipher the request used.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{Pkcs1PublicEncryptingKey, PublicEncryptingKey};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::EncryptedContentInfo;
use der::asn1::OctetString;
use der::{Decode, Encode};
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::algorithms::{ContentCipher, RSA_ENCRYPTION};
use crate::message::{MessageCertificate, ID_DATA, ID_ENVELOPED_DATA};
use crate::ra_credential::RaCredential;
use crate::wire::{self, IssuerSerial, KeyTransRecipientInfo};
use crate::ScepError;

fn check(reason: impl Into<String>) -> ScepError {
    ScepError::BadMessageCheck(reason.into())
}

/// Opens a request's envelope with the RA key: its content and the cipher it used
/// (`legacy`: DES and 3DES allowed).
pub(crate) fn open(
    envelope: &[u8],
    ra: &RaCredential,
    legacy: bool,
) -> Result<(Vec<u8>, ContentCipher), ScepError> {
    let info = ContentInfo::from_der(envelope)
        .map_err(|e| check(format!("pkcsPKIEnvelope is not a CMS ContentInfo: {e}")))?;
    if info.content_type != ID_ENVELOPED_DATA {
        return Err(check(format!(
            "pkcsPKIEnvelope content type is {}, not envelopedData",
            info.content_type
        )));
    }
    let enveloped: wire::ReceivedEnvelopedData = info
        .content
        .decode_as()
        .map_err(|e| check(format!("pkcsPKIEnvelope EnvelopedData: {e}")))?;
    let recipient = wire::key_transport_recipients(&enveloped.recip_infos)
        .map_err(|e| check(format!("pkcsPKIEnvelope recipients: {e}")))?
        .into_iter()
        .find(|k| ra.is_named(&k.rid))
        .ok_or_else(|| {
            check("the envelope is not addressed to this server's current SCEP RA certificate (fetch it again with GetCACert)")
        })?;
    if recipient.key_enc_alg.oid != RSA_ENCRYPTION {
        return Err(ScepError::BadAlg(format!(
            "key transport algorithm {} is not supported; use rsaEncryption",
            recipient.key_enc_alg.oid
        )));
    }
    let content = &enveloped.encrypted_content;
    let cipher = ContentCipher::from_oid(&content.content_enc_alg.oid, legacy)?;
    let iv = content
        .content_enc_alg
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<OctetString>().ok())
        .filter(|iv| iv.as_bytes().len() == cipher.iv_len())
        .ok_or_else(|| {
            check(format!(
                "the content encryption parameters are not a {}-byte IV for {}",
                cipher.iv_len(),
                cipher.name()
            ))
        })?;
    let encrypted = content
        .encrypted_content
        .as_ref()
        .ok_or_else(|| check("the envelope carries no encrypted content"))
        .and_then(|c| {
            wire::encrypted_octets(c).map_err(|e| check(format!("encryptedContent: {e}")))
        })?;

    // PKCS#1 v1.5 key transport: a failed unwrap goes on with a random key, so that a
    // wrong key and a wrong padding fail alike, at the content's decryption (the
    // Bleichenbacher countermeasure of RFC 3218 section 2.3.2).
    let mut unwrapped = vec![0u8; ra.decrypting.min_output_size()];
    let cek = match ra
        .decrypting
        .decrypt(recipient.enc_key.as_bytes(), &mut unwrapped)
    {
        Ok(k) if k.len() == cipher.key_len() => k.to_vec(),
        _ => cipher.random_key()?,
    };
    let plain = cipher
        .decrypt(&cek, iv.as_bytes(), &encrypted)
        .map_err(|_| check("the envelope cannot be decrypted with the SCEP RA key"))?;
    Ok((plain, cipher))
}

/// Seals `content` (DER) to the certificate `recipient` (its RSA key), DER ContentInfo.
pub(crate) fn seal(
    content: &[u8],
    recipient: &MessageCertificate,
    cipher: ContentCipher,
) -> Result<Vec<u8>, ScepError> {
    let internal = |what: &str| ScepError::Internal(format!("envelope: {what}"));
    let public = PublicEncryptingKey::from_der(&recipient.spki_der)
        .map_err(|_| {
            ScepError::BadAlg(
                "the requester's certificate has no RSA key: SCEP replies are encrypted to it with RSA key transport".into(),
            )
        })
        .and_then(|k| Pkcs1PublicEncryptingKey::new(k).map_err(|_| internal("recipient key")))?;
    let cek = cipher.random_key()?;
    let mut iv = vec![0u8; cipher.iv_len()];
    SystemRandom::new()
        .fill(&mut iv)
        .map_err(|_| internal("randomness"))?;
    let mut wrapped = vec![0u8; public.ciphertext_size()];
    let wrapped = public
        .encrypt(&cek, &mut wrapped)
        .map_err(|_| internal("key transport"))?
        .to_vec();
    let in_out = cipher
        .encrypt(&cek, &iv, content)
        .map_err(|_| internal("encryption"))?;

    let enc = |e: der::Error| ScepError::Internal(format!("envelope encoding: {e}"));
    let recipient_info = KeyTransRecipientInfo {
        version: CmsVersion::V0,
        rid: IssuerSerial {
            issuer: recipient.issuer.clone(),
            serial_number: recipient.serial.clone(),
        },
        key_enc_alg: AlgorithmIdentifierOwned {
            oid: RSA_ENCRYPTION,
            parameters: Some(der::asn1::Null.into()),
        },
        enc_key: OctetString::new(wrapped).map_err(enc)?,
    };
    let enveloped = wire::EnvelopedData {
        version: CmsVersion::V0,
        recip_infos: wire::recipient_set(&recipient_info).map_err(enc)?,
        encrypted_content: EncryptedContentInfo {
            content_type: ID_DATA,
            content_enc_alg: AlgorithmIdentifierOwned {
                oid: cipher.oid(),
                parameters: Some(
                    der::Any::encode_from(&OctetString::new(iv).map_err(enc)?).map_err(enc)?,
                ),
            },
            encrypted_content: Some(OctetString::new(in_out).map_err(enc)?),
        },
    };
    ContentInfo {
        content_type: ID_ENVELOPED_DATA,
        content: der::Any::encode_from(&enveloped).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)
}
