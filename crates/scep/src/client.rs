//! The client side of a PKIOperation, for fleetca's own tools (the benchmark's SCEP
//! renewals, the fuzz seeds): build a signed and enveloped pkiMessage, read a CertRep.
//! The server never calls it; its tests are clients written by others (certmonger).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::EncapsulatedContentInfo;
use der::asn1::{OctetString, PrintableStringRef, SetOfVec};
use der::{Any, Decode, Encode, Tag};
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::algorithms::{ContentCipher, Digest, RSA_ENCRYPTION};
use crate::envelope;
use crate::message::{
    MessageCertificate, PkiMessage, CONTENT_TYPE, FAIL_INFO, ID_DATA, ID_SIGNED_DATA,
    MESSAGE_DIGEST, MESSAGE_TYPE, PKI_STATUS, RECIPIENT_NONCE, SENDER_NONCE, SIGNING_TIME,
    TRANSACTION_ID,
};
use crate::ra_credential::RaCredential;
use crate::wire::{self, IssuerSerial, SignerInfo};
use crate::{MessageType, ScepError};

const ECDSA_WITH_SHA256: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Who signs a request: a certificate (DER) and its key (PKCS#8 DER, RSA or P-256).
#[derive(Clone, Copy)]
pub struct RequestSigner<'a> {
    /// The signer's certificate.
    pub certificate_der: &'a [u8],
    /// Its private key.
    pub key_pkcs8: &'a [u8],
}

fn enc(e: der::Error) -> ScepError {
    ScepError::Internal(format!("pkiMessage encoding: {e}"))
}

fn code(message_type: MessageType) -> &'static str {
    match message_type {
        MessageType::PkcsReq => "19",
        MessageType::RenewalReq => "17",
        MessageType::CertPoll => "20",
        MessageType::GetCert => "21",
        MessageType::GetCrl => "22",
        MessageType::Other => "0",
    }
}

/// The transactionID of a request for the key `spki_der`: its SHA-256 in hex.
pub fn transaction_id(spki_der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        spki_der,
    ))
}

/// How a request is protected beyond the defaults (AES-256-CBC, SHA-256, no signingTime).
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageOptions {
    /// Envelope in DES-EDE3-CBC (accepted only for legacy profiles).
    pub triple_des: bool,
    /// A signingTime signed attribute.
    pub signing_time: Option<time::OffsetDateTime>,
}

/// A pkiMessage: `content` enveloped (AES-256-CBC) to the RA certificate, signed (SHA-256)
/// by `signer`.
pub fn pki_message(
    message_type: MessageType,
    transaction_id: &str,
    sender_nonce: &[u8],
    content: &[u8],
    signer: RequestSigner<'_>,
    ra_certificate_der: &[u8],
) -> Result<Vec<u8>, ScepError> {
    pki_message_with(
        message_type,
        transaction_id,
        sender_nonce,
        content,
        signer,
        ra_certificate_der,
        MessageOptions::default(),
    )
}

/// A pkiMessage as [`pki_message`], with `options`.
pub fn pki_message_with(
    message_type: MessageType,
    transaction_id: &str,
    sender_nonce: &[u8],
    content: &[u8],
    signer: RequestSigner<'_>,
    ra_certificate_der: &[u8],
    options: MessageOptions,
) -> Result<Vec<u8>, ScepError> {
    let bad = |what: &str| ScepError::Internal(format!("pkiMessage: {what}"));
    let ra = MessageCertificate::parse(ra_certificate_der).ok_or_else(|| bad("RA certificate"))?;
    let cipher = if options.triple_des {
        ContentCipher::Des3
    } else {
        ContentCipher::Aes256
    };
    let envelope = envelope::seal(content, &ra, cipher)?;
    let signer_cert = MessageCertificate::parse(signer.certificate_der)
        .ok_or_else(|| bad("signer certificate"))?;
    let attr = |oid, value: Any| -> Result<Attribute, ScepError> {
        Ok(Attribute {
            oid,
            values: SetOfVec::try_from(vec![value]).map_err(enc)?,
        })
    };
    let printable = |t: &str| -> Result<Any, ScepError> {
        Any::encode_from(&PrintableStringRef::new(t).map_err(enc)?).map_err(enc)
    };
    let octets = |b: &[u8]| -> Result<Any, ScepError> {
        Any::encode_from(&OctetString::new(b).map_err(enc)?).map_err(enc)
    };
    let mut attrs = vec![
        attr(CONTENT_TYPE, Any::encode_from(&ID_DATA).map_err(enc)?)?,
        attr(MESSAGE_DIGEST, octets(&Digest::Sha256.digest(&envelope))?)?,
        attr(MESSAGE_TYPE, printable(code(message_type))?)?,
        attr(TRANSACTION_ID, printable(transaction_id)?)?,
        attr(SENDER_NONCE, octets(sender_nonce)?)?,
    ];
    if let Some(at) = options.signing_time {
        let at = der::asn1::UtcTime::from_system_time(at.into()).map_err(enc)?;
        attrs.push(attr(SIGNING_TIME, Any::encode_from(&at).map_err(enc)?)?);
    }
    let attrs = SetOfVec::try_from(attrs).map_err(enc)?.into_vec();
    let to_sign = wire::signed_attributes_der(&attrs).map_err(enc)?;
    let rng = SystemRandom::new();
    let spki = signer_cert.spki()?;
    let (signature, signature_algorithm) = if spki.algorithm.oid == RSA_ENCRYPTION {
        let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(signer.key_pkcs8)
            .map_err(|_| bad("RSA signer key"))?;
        let mut sig = vec![0u8; key.public_modulus_len()];
        key.sign(&signature::RSA_PKCS1_SHA256, &rng, &to_sign, &mut sig)
            .map_err(|_| bad("RSA signature"))?;
        (
            sig,
            AlgorithmIdentifierOwned {
                oid: RSA_ENCRYPTION,
                parameters: Some(der::asn1::Null.into()),
            },
        )
    } else {
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, signer.key_pkcs8)
                .map_err(|_| bad("P-256 signer key"))?;
        let sig = key
            .sign(&rng, &to_sign)
            .map_err(|_| bad("ECDSA signature"))?;
        (
            sig.as_ref().to_vec(),
            AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA256,
                parameters: None,
            },
        )
    };
    let digest_alg = AlgorithmIdentifierOwned {
        oid: Digest::Sha256.oid(),
        parameters: None,
    };
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: IssuerSerial {
            issuer: signer_cert.issuer.clone(),
            serial_number: signer_cert.serial.clone(),
        },
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(attrs),
        signature_algorithm,
        signature: OctetString::new(signature).map_err(enc)?,
        unsigned_attrs: None,
    };
    let signed = wire::SignedData {
        version: CmsVersion::V1,
        digest_algorithms: Any::new(Tag::Set, digest_alg.to_der().map_err(enc)?).map_err(enc)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: Some(
                Any::encode_from(&OctetString::new(envelope).map_err(enc)?).map_err(enc)?,
            ),
        },
        certificates: Some(vec![Any::from_der(signer.certificate_der).map_err(enc)?]),
        crls: None,
        signer_infos: Any::new(Tag::Set, signer_info.to_der().map_err(enc)?).map_err(enc)?,
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)
}

/// A CertRep as a client reads it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// pkiStatus: `0` SUCCESS, `2` FAILURE, `3` PENDING.
    pub status: String,
    /// failInfo of a FAILURE.
    pub fail_info: Option<String>,
    /// The transactionID.
    pub transaction_id: String,
    /// The recipientNonce (the request's senderNonce).
    pub recipient_nonce: Vec<u8>,
    /// The certificates of a SUCCESS (DER), decrypted.
    pub certificates: Vec<Vec<u8>>,
    /// The CRLs of a SUCCESS answering GetCRL (DER), decrypted.
    pub crls: Vec<Vec<u8>>,
}

/// Reads a CertRep: checks the RA's signature, and decrypts a SUCCESS's content with the
/// requester's RSA key (`recipient`, the certificate the request was signed with), in
/// whatever cipher the server chose (the request's, DES and 3DES included).
pub fn read_reply(der: &[u8], recipient: RequestSigner<'_>) -> Result<Reply, ScepError> {
    let message = PkiMessage::parse(der)?;
    let verified = message.verify(false)?;
    let status = message
        .printable_attribute(&PKI_STATUS)
        .ok_or_else(|| ScepError::Malformed("CertRep without pkiStatus".into()))?;
    let fail_info = message.printable_attribute(&FAIL_INFO);
    let recipient_nonce = message
        .octets_attribute(&RECIPIENT_NONCE)
        .unwrap_or_default();
    let (certificates, crls) = if status == "0" {
        let own = RaCredential::new(recipient.certificate_der, recipient.key_pkcs8)?;
        let (content, _) = envelope::open(&verified.envelope, &own, true)?;
        let bad = |e: der::Error| ScepError::Malformed(format!("CertRep content: {e}"));
        let info = ContentInfo::from_der(&content).map_err(bad)?;
        let signed: wire::SignedData = info.content.decode_as().map_err(bad)?;
        let all = |set: Option<Vec<Any>>| -> Vec<Vec<u8>> {
            set.unwrap_or_default()
                .iter()
                .filter_map(|a| a.to_der().ok())
                .collect()
        };
        (all(signed.certificates), all(signed.crls))
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(Reply {
        status,
        fail_info,
        transaction_id: message.transaction_id.clone(),
        recipient_nonce,
        certificates,
        crls,
    })
}

/// The IssuerAndSerialNumber (DER) naming a certificate: the content of GetCert and
/// GetCRL.
pub fn issuer_and_serial(certificate_der: &[u8]) -> Result<Vec<u8>, ScepError> {
    let cert = MessageCertificate::parse(certificate_der)
        .ok_or_else(|| ScepError::Malformed("not a certificate".into()))?;
    IssuerSerial {
        issuer: cert.issuer,
        serial_number: cert.serial,
    }
    .to_der()
    .map_err(enc)
}

/// The pkiStatus and failInfo of a CertRep, read without checking its signature nor
/// opening its content (a load generator's quick look).
pub fn reply_status(der: &[u8]) -> Result<(String, Option<String>), ScepError> {
    let message = PkiMessage::parse(der)?;
    Ok((
        message.printable_attribute(&PKI_STATUS).unwrap_or_default(),
        message.printable_attribute(&FAIL_INFO),
    ))
}

/// A random 16-byte senderNonce.
pub fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    let _ = SystemRandom::new().fill(&mut n);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{cert_rep, Status};
    use crate::FailInfo;

    /// A self-signed certificate (DER) and PKCS#8 key of `alg`.
    fn self_signed(alg: fleetca_pki::KeyAlgorithm, cn: &str) -> (Vec<u8>, Vec<u8>) {
        let key = alg.generate().unwrap();
        let pkcs8 = key.pkcs8_der();
        let pair = fleetca_pki::rcgen::KeyPair::try_from(pkcs8.as_slice()).unwrap();
        let params = fleetca_pki::rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
        (params.self_signed(&pair).unwrap().der().to_vec(), pkcs8)
    }

    #[test]
    fn a_request_opens_with_the_ra_key_and_a_reply_with_the_requester_key() {
        let (ra_cert, ra_key) = self_signed(fleetca_pki::KeyAlgorithm::Rsa2048, "ra");
        let ra = RaCredential::new(&ra_cert, &ra_key).unwrap();
        for alg in [
            fleetca_pki::KeyAlgorithm::Rsa2048,
            fleetca_pki::KeyAlgorithm::P256,
        ] {
            let (cert, key) = self_signed(alg, "device");
            let signer = RequestSigner {
                certificate_der: &cert,
                key_pkcs8: &key,
            };
            let message = pki_message(
                MessageType::RenewalReq,
                "tx-1",
                b"nonce-0123456789",
                b"the content",
                signer,
                &ra_cert,
            )
            .unwrap();
            let parsed = PkiMessage::parse(&message).unwrap();
            assert_eq!(parsed.message_type(), MessageType::RenewalReq);
            assert_eq!(parsed.sender_nonce, b"nonce-0123456789");
            let verified = parsed.verify(false).unwrap();
            let (content, cipher) = envelope::open(&verified.envelope, &ra, false).unwrap();
            assert_eq!(content, b"the content");
            assert_eq!(cipher, ContentCipher::Aes256);
            // A wrong recipient: another RA cannot open it.
            let (other_cert, other_key) = self_signed(fleetca_pki::KeyAlgorithm::Rsa2048, "ra2");
            let other = RaCredential::new(&other_cert, &other_key).unwrap();
            let err = envelope::open(&verified.envelope, &other, false).unwrap_err();
            assert_eq!(err.fail_info(), Some(FailInfo::BadMessageCheck));
            // A tampered signature: badMessageCheck.
            let mut tampered = message.clone();
            let last = tampered.len() - 1;
            tampered[last] ^= 1;
            let err = PkiMessage::parse(&tampered)
                .unwrap()
                .verify(false)
                .unwrap_err();
            assert_eq!(err.fail_info(), Some(FailInfo::BadMessageCheck));
        }
        // The reply: FAILURE with its failInfo and the nonce echoed; SUCCESS decrypted.
        let (cert, key) = self_signed(fleetca_pki::KeyAlgorithm::Rsa2048, "device");
        let me = RequestSigner {
            certificate_der: &cert,
            key_pkcs8: &key,
        };
        let now = time::OffsetDateTime::now_utc();
        let failure = cert_rep(
            &ra,
            "tx-2",
            b"n1",
            Status::Failure(FailInfo::BadTime),
            Digest::Sha256,
            now,
        )
        .unwrap();
        let reply = read_reply(&failure, me).unwrap();
        assert_eq!(
            (reply.status.as_str(), reply.fail_info.as_deref()),
            ("2", Some("3"))
        );
        assert_eq!(reply.recipient_nonce, b"n1");
        assert_eq!(reply.transaction_id, "tx-2");
        let certs = fleetca_pki::certs_only(&[ra_cert.as_slice()]).unwrap();
        let recipient = MessageCertificate::parse(&cert).unwrap();
        let sealed = envelope::seal(&certs, &recipient, ContentCipher::Aes128).unwrap();
        let success = cert_rep(
            &ra,
            "tx-3",
            b"n2",
            Status::Success(sealed),
            Digest::Sha512,
            now,
        )
        .unwrap();
        let reply = read_reply(&success, me).unwrap();
        assert_eq!(reply.status, "0");
        assert_eq!(reply.certificates, vec![ra_cert.clone()]);
    }

    #[test]
    fn a_triple_des_envelope_opens_only_for_legacy_profiles_and_the_reply_matches_it() {
        let (ra_cert, ra_key) = self_signed(fleetca_pki::KeyAlgorithm::Rsa2048, "ra");
        let ra = RaCredential::new(&ra_cert, &ra_key).unwrap();
        let (cert, key) = self_signed(fleetca_pki::KeyAlgorithm::Rsa2048, "device");
        let signer = RequestSigner {
            certificate_der: &cert,
            key_pkcs8: &key,
        };
        let message = pki_message_with(
            MessageType::PkcsReq,
            "tx-3des",
            b"nonce-3des",
            b"a CSR",
            signer,
            &ra_cert,
            MessageOptions {
                triple_des: true,
                signing_time: None,
            },
        )
        .unwrap();
        let err = crate::open_request(&message, &ra, false).unwrap_err();
        assert_eq!(err.fail_info(), Some(FailInfo::BadAlg));
        assert!(err.to_string().contains("legacy"), "{err}");
        let (kind, content) = crate::open_request(&message, &ra, true).unwrap();
        assert_eq!(
            (kind, content.as_slice()),
            (MessageType::PkcsReq, &b"a CSR"[..])
        );
        // The reply sealed in the request's cipher opens with the requester's key.
        let verified = PkiMessage::parse(&message).unwrap().verify(true).unwrap();
        let (_, cipher) = envelope::open(&verified.envelope, &ra, true).unwrap();
        assert_eq!(cipher, ContentCipher::Des3);
        let certs = fleetca_pki::certs_only(&[ra_cert.as_slice()]).unwrap();
        let sealed =
            envelope::seal(&certs, &MessageCertificate::parse(&cert).unwrap(), cipher).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let rep = cert_rep(
            &ra,
            "tx-3des",
            b"n",
            Status::Success(sealed),
            Digest::Sha1,
            now,
        )
        .unwrap();
        let reply = read_reply(&rep, signer).unwrap();
        assert_eq!(reply.certificates, vec![ra_cert.clone()]);
        // Replies are never signed with SHA-1, even to a SHA-1 request.
        let parsed = PkiMessage::parse(&rep).unwrap();
        assert_eq!(parsed.digest_hint(), Some(Digest::Sha256));
    }
}
