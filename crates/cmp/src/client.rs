//! The client side of a key update (`kur`), for `fleetca bench` and the fuzz seeds: a
//! request as RFC 9483 section 4.1.3 describes it, signed with the current certificate's
//! key, with implicit confirmation asked (one round trip, like EST `simplereenroll`).

use cmpv2::body::PkiBody;
use cmpv2::certified_key_pair::CertOrEncCert;
use cmpv2::gen::InfoTypeAndValue;
use cmpv2::header::{PkiHeader, Pvno};
use cmpv2::message::{PkiMessage, ProtectedPart};
use crmf::pop::{PopoSigningKey, ProofOfPossession};
use crmf::request::{CertReqMsg, CertRequest, CertTemplate};
use der::asn1::{BitString, GeneralizedTime, Int, OctetString};
use der::{Decode, Encode};
use fleetca_pki::Signer;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;

use crate::message::{random_bytes, IMPLICIT_CONFIRM};
use crate::CmpError;

/// A DER `kur` renewing `current_certificate` (whose key is `current_key`) for `new_key`,
/// the same subject, signed by the current key, the certificate in extraCerts.
pub fn key_update_request(
    current_certificate: &[u8],
    current_key: &dyn Signer,
    new_key: &dyn Signer,
    now: time::OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    let certificate = Certificate::from_der(current_certificate).map_err(CmpError::internal)?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&rcgen::PublicKeyData::subject_public_key_info(
        new_key,
    ))
    .map_err(CmpError::internal)?;
    let cert_req = CertRequest {
        cert_req_id: Int::new(&[0]).map_err(CmpError::internal)?,
        cert_template: CertTemplate {
            version: None,
            serial_number: None,
            signature: None,
            issuer: None,
            validity: None,
            subject: Some(certificate.tbs_certificate.subject.clone()),
            subject_public_key_info: Some(spki),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: None,
        },
        controls: None,
    };
    let pop_signature = new_key
        .sign(&cert_req.to_der().map_err(CmpError::internal)?)
        .map_err(CmpError::internal)?;
    let pop = PopoSigningKey {
        poposk_input: None,
        alg_id: fleetca_pki::signature_algorithm_identifier(new_key.key_algorithm())
            .map_err(CmpError::internal)?,
        signature: BitString::from_bytes(&pop_signature).map_err(CmpError::internal)?,
    };
    let body = PkiBody::KUr(vec![CertReqMsg {
        cert_req,
        popo: Some(ProofOfPossession::Signature(Box::new(pop))),
        reg_info: None,
    }]);
    let secs = u64::try_from(now.unix_timestamp()).map_err(CmpError::internal)?;
    let header = PkiHeader {
        pvno: Pvno::Cmp2000,
        sender: GeneralName::DirectoryName(certificate.tbs_certificate.subject.clone()),
        recipient: GeneralName::DirectoryName(certificate.tbs_certificate.issuer.clone()),
        message_time: Some(
            GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))
                .map_err(CmpError::internal)?,
        ),
        protection_alg: Some(
            fleetca_pki::signature_algorithm_identifier(current_key.key_algorithm())
                .map_err(CmpError::internal)?,
        ),
        sender_kid: None,
        recip_kid: None,
        trans_id: Some(
            OctetString::new(random_bytes::<16>()?.to_vec()).map_err(CmpError::internal)?,
        ),
        sender_nonce: Some(
            OctetString::new(random_bytes::<16>()?.to_vec()).map_err(CmpError::internal)?,
        ),
        recip_nonce: None,
        free_text: None,
        general_info: Some(vec![InfoTypeAndValue {
            oid: IMPLICIT_CONFIRM,
            value: Some(der::Any::from(der::asn1::Null)),
        }]),
    };
    let part = ProtectedPart { header, body };
    let protection = current_key
        .sign(&part.to_der().map_err(CmpError::internal)?)
        .map_err(CmpError::internal)?;
    PkiMessage {
        header: part.header,
        body: part.body,
        protection: Some(BitString::from_bytes(&protection).map_err(CmpError::internal)?),
        extra_certs: Some(vec![certificate]),
    }
    .to_der()
    .map_err(CmpError::internal)
}

/// The certificate of an `ip`, `cp` or `kup` answer (DER), or why there is none. The
/// answer's protection is not checked: this is a load generator's reading.
pub fn issued_certificate(answer: &[u8]) -> Result<Vec<u8>, String> {
    let received = crate::message::parse(answer).map_err(|e| e.to_string())?;
    let body = match &received.message.body {
        crate::message::Body::Cmp(body) => body,
        crate::message::Body::Error(text) => return Err(format!("CMP error message: {text}")),
        crate::message::Body::PollReq(_) => return Err("a pollReq is no answer".into()),
    };
    let body: &PkiBody<'_> = body;
    let response = match body {
        PkiBody::Ip(r) | PkiBody::Cp(r) | PkiBody::Kup(r) => r,
        other => {
            return Err(format!(
                "unexpected CMP answer {}",
                crate::message::body_name(&crate::message::Body::Cmp(Box::new(other.clone())))
            ))
        }
    };
    let first = response
        .response
        .first()
        .ok_or_else(|| "empty certificate response".to_string())?;
    match first
        .certified_key_pair
        .as_ref()
        .map(|k| &k.cert_or_enc_cert)
    {
        Some(CertOrEncCert::Certificate(c)) => c.to_der().map_err(|e| e.to_string()),
        _ => Err(format!("no certificate (status {:?})", first.status.status)),
    }
}

/// A DER `ir` for `subject` (RFC 4514 text, e.g. `CN=SN-1,serialNumber=SN-1`) and
/// `new_key`, MAC-protected with PBMAC1 (PBKDF2-HMAC-SHA256, 10,000 iterations, then
/// HMAC-SHA256) under the one-time secret of `reference`, implicit confirmation asked.
pub fn pbmac1_initial_request(
    reference: &str,
    secret: &[u8],
    new_key: &dyn Signer,
    subject: &str,
    now: time::OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    use std::str::FromStr;
    let subject = x509_cert::name::Name::from_str(subject)
        .map_err(|e| CmpError::BadRequest(format!("subject: {e}")))?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&rcgen::PublicKeyData::subject_public_key_info(
        new_key,
    ))
    .map_err(CmpError::internal)?;
    let cert_req = CertRequest {
        cert_req_id: Int::new(&[0]).map_err(CmpError::internal)?,
        cert_template: CertTemplate {
            version: None,
            serial_number: None,
            signature: None,
            issuer: None,
            validity: None,
            subject: Some(subject.clone()),
            subject_public_key_info: Some(spki),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: None,
        },
        controls: None,
    };
    let pop_signature = new_key
        .sign(&cert_req.to_der().map_err(CmpError::internal)?)
        .map_err(CmpError::internal)?;
    let pop = PopoSigningKey {
        poposk_input: None,
        alg_id: fleetca_pki::signature_algorithm_identifier(new_key.key_algorithm())
            .map_err(CmpError::internal)?,
        signature: BitString::from_bytes(&pop_signature).map_err(CmpError::internal)?,
    };
    let body = PkiBody::Ir(vec![CertReqMsg {
        cert_req,
        popo: Some(ProofOfPossession::Signature(Box::new(pop))),
        reg_info: None,
    }]);
    let (algorithm, scheme) = crate::mac::MacScheme::pbmac1_sha256(10_000)?;
    let secs = u64::try_from(now.unix_timestamp()).map_err(CmpError::internal)?;
    let header = PkiHeader {
        pvno: Pvno::Cmp2000,
        sender: GeneralName::DirectoryName(subject),
        recipient: GeneralName::DirectoryName(x509_cert::name::Name::default()),
        message_time: Some(
            GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))
                .map_err(CmpError::internal)?,
        ),
        protection_alg: Some(algorithm),
        sender_kid: Some(OctetString::new(reference.as_bytes()).map_err(CmpError::internal)?),
        recip_kid: None,
        trans_id: Some(
            OctetString::new(random_bytes::<16>()?.to_vec()).map_err(CmpError::internal)?,
        ),
        sender_nonce: Some(
            OctetString::new(random_bytes::<16>()?.to_vec()).map_err(CmpError::internal)?,
        ),
        recip_nonce: None,
        free_text: None,
        general_info: Some(vec![InfoTypeAndValue {
            oid: IMPLICIT_CONFIRM,
            value: Some(der::Any::from(der::asn1::Null)),
        }]),
    };
    let part = ProtectedPart { header, body };
    let mac = scheme.mac(secret, &part.to_der().map_err(CmpError::internal)?)?;
    PkiMessage {
        header: part.header,
        body: part.body,
        protection: Some(BitString::from_bytes(&mac).map_err(CmpError::internal)?),
        extra_certs: None,
    }
    .to_der()
    .map_err(CmpError::internal)
}

/// Checks that an answer is MAC-protected (PBMAC1 or PasswordBasedMac) with `secret`;
/// returns the scheme's OID.
pub fn check_mac_protection(answer: &[u8], secret: &[u8]) -> Result<String, String> {
    let received = crate::message::parse(answer).map_err(|e| e.to_string())?;
    let algorithm = received
        .message
        .header
        .protection_alg
        .as_ref()
        .map(|a| a.oid.to_string())
        .unwrap_or_default();
    match crate::protection::protection_of(&received.message).map_err(|e| e.to_string())? {
        crate::protection::Protection::Mac { parameters, .. } => {
            crate::protection::verify_mac(
                &received.message,
                &received.protected_part,
                &parameters,
                secret,
            )
            .map_err(|e| e.to_string())?;
            Ok(algorithm)
        }
        crate::protection::Protection::Signature { .. } => Err("signed, not MAC-protected".into()),
    }
}

/// `CRLStatus ::= SEQUENCE { source CRLSource, thisUpdate Time OPTIONAL }` with the
/// source `[1] issuer` (RFC 9483 section 4.3.4).
#[derive(der::Sequence)]
struct CrlStatus {
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT")]
    issuer: Vec<GeneralName>,
}

/// A DER `genm` asking for CRL updates (id-it-crlStatusList) for the CRLs of `issuer`
/// (the CA certificate, DER), signed with `certificate` and its `key`.
pub fn crl_update_request(
    certificate: &[u8],
    key: &dyn Signer,
    issuer: &[u8],
    now: time::OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    let issuer = Certificate::from_der(issuer).map_err(CmpError::internal)?;
    let status = vec![CrlStatus {
        issuer: vec![GeneralName::DirectoryName(
            issuer.tbs_certificate.subject.clone(),
        )],
    }];
    general_request(
        certificate,
        key,
        InfoTypeAndValue {
            oid: der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.22"),
            value: Some(der::Any::encode_from(&status).map_err(CmpError::internal)?),
        },
        now,
    )
}

/// A DER `genm` asking whether the root `old_root` (DER, the root the client trusts) has
/// an update (id-it-rootCaCert, RFC 9483 section 4.3.2), signed with `certificate` and
/// its `key`.
pub fn root_ca_update_request(
    certificate: &[u8],
    key: &dyn Signer,
    old_root: &[u8],
    now: time::OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    let old_root = Certificate::from_der(old_root).map_err(CmpError::internal)?;
    general_request(
        certificate,
        key,
        InfoTypeAndValue {
            oid: der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.20"),
            value: Some(der::Any::encode_from(&old_root).map_err(CmpError::internal)?),
        },
        now,
    )
}

/// A root CA update as a client reads it (DER certificates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCaUpdate {
    /// The new root.
    pub new_with_new: Vec<u8>,
    /// The new root certified by the old one.
    pub new_with_old: Option<Vec<u8>>,
    /// The old root certified by the new one.
    pub old_with_new: Option<Vec<u8>>,
}

/// The root update of a genp answering id-it-rootCaCert: None when the value is absent
/// (no update).
pub fn root_ca_update_of_answer(answer: &[u8]) -> Result<Option<RootCaUpdate>, String> {
    let infos = general_response(answer)?;
    let [info] = infos.as_slice() else {
        return Err(format!("{} InfoTypeAndValues, not one", infos.len()));
    };
    if info.oid != der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.18") {
        return Err(format!("InfoType {} is not rootCaKeyUpdate", info.oid));
    }
    let Some(value) = &info.value else {
        return Ok(None);
    };
    let content: crate::general::RootCaKeyUpdateContent =
        value.decode_as().map_err(|e| e.to_string())?;
    let der = |c: &Certificate| c.to_der().map_err(|e| e.to_string());
    Ok(Some(RootCaUpdate {
        new_with_new: der(&content.new_with_new)?,
        new_with_old: content.new_with_old.as_ref().map(der).transpose()?,
        old_with_new: content.old_with_new.as_ref().map(der).transpose()?,
    }))
}

/// A genm with one InfoTypeAndValue, signed with `certificate` and its `key`.
fn general_request(
    certificate: &[u8],
    key: &dyn Signer,
    info: InfoTypeAndValue,
    now: time::OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    let certificate = Certificate::from_der(certificate).map_err(CmpError::internal)?;
    let body = PkiBody::GenM(vec![info]);
    let secs = u64::try_from(now.unix_timestamp()).map_err(CmpError::internal)?;
    let header = PkiHeader {
        pvno: Pvno::Cmp2000,
        sender: GeneralName::DirectoryName(certificate.tbs_certificate.subject.clone()),
        recipient: GeneralName::DirectoryName(certificate.tbs_certificate.issuer.clone()),
        message_time: Some(
            GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))
                .map_err(CmpError::internal)?,
        ),
        protection_alg: Some(
            fleetca_pki::signature_algorithm_identifier(key.key_algorithm())
                .map_err(CmpError::internal)?,
        ),
        sender_kid: None,
        recip_kid: None,
        trans_id: Some(
            OctetString::new(random_bytes::<16>()?.to_vec()).map_err(CmpError::internal)?,
        ),
        sender_nonce: Some(
            OctetString::new(random_bytes::<16>()?.to_vec()).map_err(CmpError::internal)?,
        ),
        recip_nonce: None,
        free_text: None,
        general_info: None,
    };
    let part = ProtectedPart { header, body };
    let signature = key
        .sign(&part.to_der().map_err(CmpError::internal)?)
        .map_err(CmpError::internal)?;
    PkiMessage {
        header: part.header,
        body: part.body,
        protection: Some(BitString::from_bytes(&signature).map_err(CmpError::internal)?),
        extra_certs: Some(vec![certificate]),
    }
    .to_der()
    .map_err(CmpError::internal)
}

/// The CRLs (DER) of a genp answering id-it-crlStatusList.
pub fn crls_of_answer(answer: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let infos = general_response(answer)?;
    let mut out = Vec::new();
    for info in infos {
        if let Some(value) = &info.value {
            let crls: Vec<x509_cert::crl::CertificateList> =
                value.decode_as().map_err(|e| e.to_string())?;
            for crl in crls {
                out.push(crl.to_der().map_err(|e| e.to_string())?);
            }
        }
    }
    Ok(out)
}

/// The InfoTypeAndValues of a genp (its protection is not checked: a test's reading).
fn general_response(answer: &[u8]) -> Result<Vec<InfoTypeAndValue>, String> {
    let received = crate::message::parse(answer).map_err(|e| e.to_string())?;
    match &received.message.body {
        crate::message::Body::Cmp(body) => match body.as_ref() {
            PkiBody::GenP(infos) => Ok(infos.clone()),
            _ => Err("not a genp".into()),
        },
        crate::message::Body::Error(text) => Err(format!("CMP error message: {text}")),
        crate::message::Body::PollReq(_) => Err("not a genp".into()),
    }
}
