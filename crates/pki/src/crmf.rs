//! Requests that are not PKCS#10: a CRMF certificate template (CMP `ir`, `cr`, `kur`) whose
//! proof of possession is a signature over the DER CertRequest (RFC 4211 section 4.1), and
//! the signature checks a CMP front end needs for message protection. The front end decodes
//! the messages (RustCrypto `cmpv2`/`crmf`); this module only sees DER pieces.

use x509_parser::prelude::FromDer;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Name};

use crate::csr::{accepted_signature, classify_extensions, refuse_control_characters};
use crate::name::name_attributes;
use crate::{CertificateRequest, CsrError, PublicKeyKind, RequestedExtensions};

/// A CRMF request with a signature proof of possession (POPOSigningKey without
/// poposkInput: the signature covers `cert_request_der`).
#[derive(Debug, Clone, Copy)]
pub struct CrmfRequest<'a> {
    /// The template's subject (DER Name), if any.
    pub subject_der: Option<&'a [u8]>,
    /// The template's public key (DER SubjectPublicKeyInfo).
    pub spki_der: &'a [u8],
    /// The template's extensions (DER Extensions), if any.
    pub extensions_der: Option<&'a [u8]>,
    /// The DER CertRequest the proof of possession signs.
    pub cert_request_der: &'a [u8],
    /// The signature algorithm of the proof of possession (DER AlgorithmIdentifier).
    pub pop_algorithm_der: &'a [u8],
    /// The signature.
    pub pop_signature: &'a [u8],
}

impl CertificateRequest {
    /// Reads a CRMF request: checks the proof of possession with the template's key and
    /// keeps what policy looks at, as [`CertificateRequest::from_der`] does for PKCS#10.
    pub fn from_crmf(request: &CrmfRequest<'_>) -> Result<Self, CsrError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(request.spki_der)
            .map_err(|e| CsrError::NotACsr(format!("template public key: {e}")))?;
        if !rest.is_empty() {
            return Err(CsrError::TrailingData);
        }
        let key_kind = PublicKeyKind::of_parsed_spki(&spki).map_err(CsrError::UnsupportedKey)?;
        if let PublicKeyKind::Rsa { bits } = key_kind {
            if bits < 2048 {
                return Err(CsrError::KeyTooSmall { bits });
            }
        }
        let (_, algorithm) = AlgorithmIdentifier::from_der(request.pop_algorithm_der)
            .map_err(|e| CsrError::NotACsr(format!("proof of possession algorithm: {e}")))?;
        let signature_algorithm = accepted_signature(&algorithm)?;
        let bits = x509_parser::der_parser::asn1_rs::BitString::new(0, request.pop_signature);
        x509_parser::verify::verify_signature(&spki, &algorithm, &bits, request.cert_request_der)
            .map_err(|_| CsrError::BadSignature)?;

        let subject = match request.subject_der {
            None => Vec::new(),
            Some(der) => {
                let (_, name) = X509Name::from_der(der)
                    .map_err(|e| CsrError::MalformedAttribute(format!("subject: {e}")))?;
                name_attributes(&name).map_err(CsrError::MalformedAttribute)?
            }
        };
        let mut extensions = RequestedExtensions::default();
        if let Some(der) = request.extensions_der {
            classify_extensions(der, &mut extensions)?;
        }
        refuse_control_characters(&subject, &extensions.subject_alt_names)?;
        Ok(Self::from_parts(
            subject,
            request.spki_der.to_vec(),
            key_kind,
            signature_algorithm,
            extensions,
        ))
    }
}

/// Verifies `signature` over `message` with the key of `spki_der`, under the signature
/// algorithm `algorithm_der` (DER AlgorithmIdentifier): ECDSA, RSA PKCS#1 v1.5 and PSS,
/// Ed25519, with SHA-256 or stronger. Used for CMP message protection.
pub fn verify_signature(
    spki_der: &[u8],
    algorithm_der: &[u8],
    signature: &[u8],
    message: &[u8],
) -> Result<(), CsrError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| CsrError::UnsupportedKey(e.to_string()))?;
    let (_, algorithm) = AlgorithmIdentifier::from_der(algorithm_der)
        .map_err(|e| CsrError::NotACsr(format!("signature algorithm: {e}")))?;
    accepted_signature(&algorithm)?;
    let bits = x509_parser::der_parser::asn1_rs::BitString::new(0, signature);
    x509_parser::verify::verify_signature(&spki, &algorithm, &bits, message)
        .map_err(|_| CsrError::BadSignature)
}
