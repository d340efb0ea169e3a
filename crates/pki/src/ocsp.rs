//! OCSP (RFC 6960) encoding: request parsing and signed responses from a delegated
//! responder. Pure: the status of each certificate comes from the caller.

use std::sync::Arc;

use der::asn1::{BitString, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::ext::Extension;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    OcspResponseStatus, ResponderId, ResponseData, RevokedInfo, SingleResponse, Version,
};
use x509_parser::prelude::FromDer;

use crate::revocation::RevocationReason;
use crate::{CertificateSerial, KeyAlgorithm, PkiError, Signer};

const ID_PKIX_OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// Why an OCSP request gets no signed answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspRequestError {
    /// Not an OCSPRequest, or one fleetca cannot read (`malformedRequest`).
    #[error("malformed OCSP request: {0}")]
    Malformed(String),
    /// The request names a CA this responder does not serve, or several CAs at once
    /// (`unauthorized`).
    #[error("OCSP request for a CA this responder does not serve")]
    Unauthorized,
}

/// The status of one certificate, as the inventory knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspStatus {
    /// Issued and not revoked.
    Good,
    /// Revoked (or on hold) at this time, for this reason.
    Revoked {
        /// When.
        at: OffsetDateTime,
        /// Why.
        reason: RevocationReason,
    },
    /// Never issued by this CA.
    Unknown,
}

/// A CA as OCSP clients name it: hashes of its subject and public key.
#[derive(Debug, Clone)]
struct IssuerHashes {
    sha1_name: Vec<u8>,
    sha1_key: Vec<u8>,
    sha256_name: Vec<u8>,
    sha256_key: Vec<u8>,
}

impl IssuerHashes {
    fn of(ca_der: &[u8]) -> Result<Self, PkiError> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(ca_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let name = cert.subject().as_raw();
        let key = cert.public_key().subject_public_key.data.as_ref();
        Ok(Self {
            sha1_name: sha1(name),
            sha1_key: sha1(key),
            sha256_name: sha256(name),
            sha256_key: sha256(key),
        })
    }

    fn matches(&self, id: &CertId) -> bool {
        let (name, key) = if id.hash_algorithm.oid == SHA1 {
            (&self.sha1_name, &self.sha1_key)
        } else if id.hash_algorithm.oid == SHA256 {
            (&self.sha256_name, &self.sha256_key)
        } else {
            return false;
        };
        id.issuer_name_hash.as_bytes() == name.as_slice()
            && id.issuer_key_hash.as_bytes() == key.as_slice()
    }
}

fn sha1(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .to_vec()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// A parsed OCSP request for one CA.
#[derive(Debug, Clone)]
pub struct OcspQuery {
    /// Index of the responder (CA) it is for, in the slice given to [`parse_request`].
    pub responder: usize,
    /// The certificates asked about, with their serials (the CertIDs are echoed back).
    pub certificates: Vec<(CertId, Option<CertificateSerial>)>,
    /// The nonce extension's value, to echo.
    pub nonce: Option<Vec<u8>>,
}

impl OcspQuery {
    /// Whether the response may be shared (no nonce, so no per-request content).
    pub fn cacheable(&self) -> bool {
        self.nonce.is_none()
    }

    /// The key under which a signed answer to this request may be reused: the exact DER
    /// of its single CertID (hash algorithm and its parameters, issuer name and key hashes,
    /// serial). A signed answer repeats the requester's CertID byte for byte, so it may
    /// only go to requests with the same CertID; keying on anything coarser (the serial)
    /// would hand a SHA-256 requester's answer to a SHA-1 client, which then finds no
    /// status for its certificate. `None` when the answer cannot be shared: a nonce, several
    /// certificates, or a serial fleetca never issues.
    pub fn shared_answer_key(&self) -> Option<Vec<u8>> {
        if !self.cacheable() {
            return None;
        }
        match self.certificates.as_slice() {
            [(id, Some(_))] => id.to_der().ok(),
            _ => None,
        }
    }
}

/// Parses a DER OCSPRequest and finds which responder serves it.
pub fn parse_request(
    der: &[u8],
    responders: &[Arc<OcspResponder>],
) -> Result<OcspQuery, OcspRequestError> {
    let request =
        OcspRequest::from_der(der).map_err(|e| OcspRequestError::Malformed(e.to_string()))?;
    let tbs = &request.tbs_request;
    if tbs.request_list.is_empty() {
        return Err(OcspRequestError::Malformed("empty requestList".into()));
    }
    if tbs.request_list.len() > 16 {
        return Err(OcspRequestError::Malformed(
            "more than 16 certificates in one request".into(),
        ));
    }
    let mut responder = None;
    let mut certificates = Vec::with_capacity(tbs.request_list.len());
    for r in &tbs.request_list {
        let id = &r.req_cert;
        let index = responders
            .iter()
            .position(|resp| resp.issuer.matches(id))
            .ok_or(OcspRequestError::Unauthorized)?;
        if *responder.get_or_insert(index) != index {
            return Err(OcspRequestError::Unauthorized);
        }
        let serial = CertificateSerial::from_slice(id.serial_number.as_bytes());
        certificates.push((id.clone(), serial));
    }
    let nonce = tbs
        .request_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == ID_PKIX_OCSP_NONCE)
        .map(|e| e.extn_value.as_bytes().to_vec());
    if nonce.as_ref().is_some_and(|n| n.len() > 128) {
        return Err(OcspRequestError::Malformed(
            "nonce longer than 128 bytes".into(),
        ));
    }
    Ok(OcspQuery {
        responder: responder.unwrap_or_default(),
        certificates,
        nonce,
    })
}

/// A delegated OCSP responder for one CA: its certificate and key.
pub struct OcspResponder {
    ca_name: String,
    issuer: IssuerHashes,
    certificate: x509_cert::Certificate,
    key_hash: Vec<u8>,
    signer: Arc<dyn Signer>,
    signature_algorithm: x509_cert::spki::AlgorithmIdentifierOwned,
}

impl std::fmt::Debug for OcspResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspResponder")
            .field("ca", &self.ca_name)
            .finish_non_exhaustive()
    }
}

impl OcspResponder {
    /// A responder for the CA `ca_der`, signing with `signer`, whose delegated certificate
    /// is `responder_der` (issued by that CA).
    pub fn new(
        ca_name: &str,
        ca_der: &[u8],
        responder_der: &[u8],
        signer: Arc<dyn Signer>,
    ) -> Result<Self, PkiError> {
        let certificate = x509_cert::Certificate::from_der(responder_der)
            .map_err(|e| PkiError::MalformedCertificate(format!("OCSP responder: {e}")))?;
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(responder_der)
            .map_err(|e| PkiError::MalformedCertificate(format!("OCSP responder: {e}")))?;
        if rcgen::PublicKeyData::subject_public_key_info(signer.as_ref()) != parsed.public_key().raw
        {
            return Err(PkiError::Key(format!(
                "OCSP responder for '{ca_name}': the key does not belong to the certificate"
            )));
        }
        let key_hash = sha1(parsed.public_key().subject_public_key.data.as_ref());
        let signature_algorithm = signature_algorithm(signer.key_algorithm())?;
        Ok(Self {
            ca_name: ca_name.to_string(),
            issuer: IssuerHashes::of(ca_der)?,
            certificate,
            key_hash,
            signer,
            signature_algorithm,
        })
    }

    /// The CA this responder answers for.
    pub fn ca_name(&self) -> &str {
        &self.ca_name
    }

    /// A signed, successful OCSPResponse (DER) for `query` with these statuses (one per
    /// certificate, in order), valid from `this_update` to `next_update`.
    pub fn respond(
        &self,
        query: &OcspQuery,
        statuses: &[OcspStatus],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        let enc = |e: der::Error| PkiError::Encoding(format!("OCSP response: {e}"));
        let responses = query
            .certificates
            .iter()
            .zip(statuses)
            .map(|((id, _), status)| {
                Ok(SingleResponse {
                    cert_id: id.clone(),
                    cert_status: match status {
                        OcspStatus::Good => CertStatus::good(),
                        OcspStatus::Unknown => CertStatus::unknown(),
                        OcspStatus::Revoked { at, reason } => CertStatus::revoked(RevokedInfo {
                            revocation_time: generalized(*at)?,
                            revocation_reason: Some(reason.to_x509()),
                        }),
                    },
                    this_update: generalized(this_update)?,
                    next_update: Some(generalized(next_update)?),
                    single_extensions: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let response_extensions = match &query.nonce {
            Some(value) => Some(vec![Extension {
                extn_id: ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value: OctetString::new(value.clone()).map_err(enc)?,
            }]),
            None => None,
        };
        let data = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(OctetString::new(self.key_hash.clone()).map_err(enc)?),
            produced_at: generalized(this_update)?,
            responses,
            response_extensions,
        };
        let tbs = data.to_der().map_err(enc)?;
        let signature = self
            .signer
            .sign(&tbs)
            .map_err(|e| PkiError::Key(format!("OCSP signing failed: {e}")))?;
        let basic = BasicOcspResponse {
            tbs_response_data: data,
            signature_algorithm: self.signature_algorithm.clone(),
            signature: BitString::from_bytes(&signature).map_err(enc)?,
            certs: Some(vec![self.certificate.clone()]),
        };
        OcspResponse::successful(basic)
            .and_then(|r| r.to_der())
            .map_err(enc)
    }
}

/// A DER OCSPRequest for one certificate of the CA `ca_der` (SHA-1 CertID, as most
/// clients send), with an optional nonce. For clients, tests and benchmarks.
pub fn build_request(
    ca_der: &[u8],
    serial: &CertificateSerial,
    nonce: Option<&[u8]>,
) -> Result<Vec<u8>, PkiError> {
    let enc = |e: der::Error| PkiError::Encoding(format!("OCSP request: {e}"));
    let hashes = IssuerHashes::of(ca_der)?;
    let id = CertId {
        hash_algorithm: x509_cert::spki::AlgorithmIdentifierOwned {
            oid: SHA1,
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: OctetString::new(hashes.sha1_name).map_err(enc)?,
        issuer_key_hash: OctetString::new(hashes.sha1_key).map_err(enc)?,
        serial_number: x509_cert::serial_number::SerialNumber::new(serial.significant_bytes())
            .map_err(enc)?,
    };
    let request_extensions = match nonce {
        None => None,
        Some(n) => Some(vec![Extension {
            extn_id: ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(OctetString::new(n).map_err(enc)?.to_der().map_err(enc)?)
                .map_err(enc)?,
        }]),
    };
    OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            request_extensions,
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(enc)
}

/// The status of the first certificate in a DER OCSPResponse, without verifying its
/// signature (benchmarks and diagnostics; relying parties use a verifying client).
pub fn response_status_unverified(der: &[u8]) -> Result<OcspStatus, PkiError> {
    let bad = |e: der::Error| PkiError::MalformedCertificate(format!("OCSP response: {e}"));
    let response = OcspResponse::from_der(der).map_err(bad)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(PkiError::MalformedCertificate(format!(
            "OCSP response status {:?}",
            response.response_status
        )));
    }
    let bytes = response
        .response_bytes
        .ok_or_else(|| PkiError::MalformedCertificate("OCSP response without body".into()))?;
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(bad)?;
    let single =
        basic.tbs_response_data.responses.first().ok_or_else(|| {
            PkiError::MalformedCertificate("OCSP response without answers".into())
        })?;
    Ok(match single.cert_status {
        CertStatus::Good(_) => OcspStatus::Good,
        CertStatus::Unknown(_) => OcspStatus::Unknown,
        CertStatus::Revoked(_) => OcspStatus::Revoked {
            at: OffsetDateTime::UNIX_EPOCH,
            reason: RevocationReason::Unspecified,
        },
    })
}

/// An unsigned error response (`malformedRequest`, `unauthorized`, `internalError`, ...).
pub fn ocsp_error_response(error: &OcspRequestError) -> Vec<u8> {
    status_only(match error {
        OcspRequestError::Malformed(_) => OcspResponseStatus::MalformedRequest,
        OcspRequestError::Unauthorized => OcspResponseStatus::Unauthorized,
    })
}

/// The `internalError` response.
pub fn ocsp_internal_error() -> Vec<u8> {
    status_only(OcspResponseStatus::InternalError)
}

/// The `tryLater` response.
pub fn ocsp_try_later() -> Vec<u8> {
    status_only(OcspResponseStatus::TryLater)
}

fn status_only(status: OcspResponseStatus) -> Vec<u8> {
    // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } (3 + 2 bytes, cannot fail).
    vec![0x30, 0x03, 0x0a, 0x01, status as u8]
}

fn generalized(t: OffsetDateTime) -> Result<OcspGeneralizedTime, PkiError> {
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| PkiError::Encoding("time before 1970".into()))?;
    let dt = der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map_err(|e| PkiError::Encoding(format!("time: {e}")))?;
    Ok(OcspGeneralizedTime::from(dt))
}

/// The AlgorithmIdentifier of the signatures fleetca makes with a key of `alg`.
pub fn signature_algorithm(
    alg: KeyAlgorithm,
) -> Result<x509_cert::spki::AlgorithmIdentifierOwned, PkiError> {
    let (oid, null_params) = match alg {
        KeyAlgorithm::P256 => ("1.2.840.10045.4.3.2", false),
        KeyAlgorithm::P384 => ("1.2.840.10045.4.3.3", false),
        KeyAlgorithm::Ed25519 => ("1.3.101.112", false),
        _ => ("1.2.840.113549.1.1.11", true),
    };
    Ok(x509_cert::spki::AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new_unwrap(oid),
        parameters: if null_params {
            Some(der::asn1::Null.into())
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests;
