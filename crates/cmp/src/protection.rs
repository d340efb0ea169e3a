//! Message protection (RFC 9483 section 3.2, RFC 9481): a signature by the sender's
//! certificate (the first of extraCerts), or a MAC with a one-time shared secret
//! (PasswordBasedMac, RFC 4211 section 4.4). fleetca protects its own answers with its CMP
//! protection certificate, or with the client's MAC when the request was MAC-protected.

use std::sync::Arc;

use crate::mac::MacScheme;
use cmpv2::header::PkiHeader;
use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};
use fleetca_pki::Signer;
use x509_cert::name::Name;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use crate::CmpError;

/// How a request is protected.
pub(crate) enum Protection<'m> {
    /// A signature; the chain is extraCerts (the signer first).
    Signature {
        algorithm: &'m AlgorithmIdentifierOwned,
        chain: Vec<Vec<u8>>,
    },
    /// PBMAC1 or PasswordBasedMac with the secret named by senderKID.
    Mac {
        reference: String,
        parameters: MacScheme,
    },
}

/// Which protection a message claims (verified separately).
pub(crate) fn protection_of<'m>(
    message: &'m crate::message::Message<'_>,
) -> Result<Protection<'m>, CmpError> {
    let header = &message.header;
    let algorithm = header
        .protection_alg
        .as_ref()
        .ok_or_else(|| CmpError::BadMessageCheck("the message is not protected".into()))?;
    if message.protection.is_none() {
        return Err(CmpError::BadMessageCheck(
            "protectionAlg is set but protection is missing".into(),
        ));
    }
    if let Some(parameters) = MacScheme::of(algorithm)? {
        let reference = header
            .sender_kid
            .as_ref()
            .and_then(|k| std::str::from_utf8(k.as_bytes()).ok())
            .filter(|r| {
                !r.is_empty()
                    && r.len() <= 64
                    && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            .ok_or_else(|| {
                CmpError::BadRequest(
                    "a MAC-protected message names its shared secret's reference in senderKID"
                        .into(),
                )
            })?
            .to_string();
        return Ok(Protection::Mac {
            reference,
            parameters,
        });
    }
    let chain = message
        .extra_certs
        .as_ref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            CmpError::BadRequest(
                "a signature-protected message carries its signer's certificate first in extraCerts".into(),
            )
        })?
        .iter()
        .map(|c| c.to_der().map_err(CmpError::internal))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Protection::Signature { algorithm, chain })
}

/// Verifies a signature protection with the first certificate of `chain`.
pub(crate) fn verify_signature(
    message: &crate::message::Message<'_>,
    protected_part: &[u8],
    algorithm: &AlgorithmIdentifierOwned,
    signer_der: &[u8],
) -> Result<(), CmpError> {
    let signer = Certificate::from_der(signer_der)
        .map_err(|e| CmpError::BadRequest(format!("extraCerts: {e}")))?;
    let spki = signer
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(CmpError::internal)?;
    let algorithm_der = algorithm.to_der().map_err(CmpError::internal)?;
    let signature = message
        .protection
        .as_ref()
        .and_then(BitString::as_bytes)
        .ok_or_else(|| {
            CmpError::BadMessageCheck("protection is not a whole number of bytes".into())
        })?;
    fleetca_pki::verify_signature(&spki, &algorithm_der, signature, protected_part).map_err(|e| {
        match e {
            fleetca_pki::CsrError::UnsupportedSignatureAlgorithm(a) => CmpError::BadAlgorithm(a),
            _ => CmpError::BadMessageCheck(
                "the signature does not verify with the certificate first in extraCerts".into(),
            ),
        }
    })
}

/// Verifies a MAC protection with `secret`.
pub(crate) fn verify_mac(
    message: &crate::message::Message<'_>,
    protected_part: &[u8],
    parameters: &MacScheme,
    secret: &[u8],
) -> Result<(), CmpError> {
    let expected = parameters.mac(secret, protected_part)?;
    let got = message
        .protection
        .as_ref()
        .and_then(BitString::as_bytes)
        .unwrap_or_default();
    aws_lc_rs::constant_time::verify_slices_are_equal(&expected, got).map_err(|_| {
        CmpError::BadMessageCheck("the MAC does not verify (wrong shared secret?)".into())
    })
}

/// fleetca's messages: the body is encoded by the caller (see `message::error_body`).
#[derive(der::Sequence)]
struct OutgoingPart<'a> {
    header: PkiHeader<'a>,
    body: der::Any,
}

#[derive(der::Sequence)]
struct OutgoingMessage<'a> {
    header: PkiHeader<'a>,
    body: der::Any,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    protection: Option<BitString>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    extra_certs: Option<Vec<der::Any>>,
}

/// fleetca's CMP protection credential: its certificate (issued by the operational CA),
/// the issuer chain sent with it, and the key.
pub struct ProtectionCredential {
    certificate: Certificate,
    /// The certificate and the chain as sent in extraCerts (DER, encoded once).
    extra_der: Vec<der::Any>,
    signer: Arc<dyn Signer>,
    algorithm: AlgorithmIdentifierOwned,
    key_id: Vec<u8>,
}

impl std::fmt::Debug for ProtectionCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectionCredential")
            .field(
                "subject",
                &self.certificate.tbs_certificate.subject.to_string(),
            )
            .finish_non_exhaustive()
    }
}

impl ProtectionCredential {
    /// The credential of certificate `certificate_der` (its key is `signer`), sent with
    /// the issuer chain `chain_der` (issuing CA first; the root may be left out).
    pub fn new(
        certificate_der: &[u8],
        chain_der: &[Vec<u8>],
        signer: Arc<dyn Signer>,
    ) -> Result<Self, CmpError> {
        let certificate = Certificate::from_der(certificate_der).map_err(CmpError::internal)?;
        let algorithm = fleetca_pki::signature_algorithm_identifier(signer.key_algorithm())
            .map_err(CmpError::internal)?;
        let spki = certificate
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(CmpError::internal)?;
        // The key identifier fleetca puts in its certificates (RFC 7093 method 1).
        let key_id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki)
            .as_ref()
            .iter()
            .take(20)
            .copied()
            .collect();
        let extra_der = std::iter::once(certificate_der)
            .chain(chain_der.iter().map(Vec::as_slice))
            .map(|c| der::Any::from_der(c).map_err(CmpError::internal))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            certificate,
            extra_der,
            signer,
            algorithm,
            key_id,
        })
    }

    /// The subject, fleetca's sender name.
    pub fn subject(&self) -> &Name {
        &self.certificate.tbs_certificate.subject
    }

    /// The certificate and its chain, for extraCerts.
    pub(crate) fn extra_certs(&self) -> Vec<der::Any> {
        self.extra_der.clone()
    }

    /// Signs `header`+`body` and returns the protected message.
    pub(crate) fn sign<'a>(
        &self,
        mut header: PkiHeader<'a>,
        body: der::Any,
        extra: Vec<der::Any>,
    ) -> Result<Vec<u8>, CmpError> {
        header.protection_alg = Some(self.algorithm.clone());
        header.sender_kid =
            Some(OctetString::new(self.key_id.clone()).map_err(CmpError::internal)?);
        let part = OutgoingPart { header, body };
        let signature = self
            .signer
            .sign(&part.to_der().map_err(CmpError::internal)?)
            .map_err(CmpError::internal)?;
        let mut extra_certs = self.extra_certs();
        for c in extra {
            if !extra_certs.contains(&c) {
                extra_certs.push(c);
            }
        }
        OutgoingMessage {
            header: part.header,
            body: part.body,
            protection: Some(BitString::from_bytes(&signature).map_err(CmpError::internal)?),
            extra_certs: Some(extra_certs),
        }
        .to_der()
        .map_err(CmpError::internal)
    }
}

/// MAC-protects an answer with the client's own secret and parameters (a fresh salt).
pub(crate) fn mac_protect<'a>(
    mut header: PkiHeader<'a>,
    body: der::Any,
    request: &MacScheme,
    reference: &str,
    secret: &[u8],
    extra: Vec<der::Any>,
) -> Result<Vec<u8>, CmpError> {
    let (algorithm, scheme) = request.fresh()?;
    header.protection_alg = Some(algorithm);
    header.sender_kid = Some(OctetString::new(reference.as_bytes()).map_err(CmpError::internal)?);
    let part = OutgoingPart { header, body };
    let mac = scheme.mac(secret, &part.to_der().map_err(CmpError::internal)?)?;
    OutgoingMessage {
        header: part.header,
        body: part.body,
        protection: Some(BitString::from_bytes(&mac).map_err(CmpError::internal)?),
        extra_certs: (!extra.is_empty()).then_some(extra),
    }
    .to_der()
    .map_err(CmpError::internal)
}
