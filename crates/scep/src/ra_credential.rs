//! The SCEP RA credential: its certificate (issued by the operational CA, renewed by
//! fleetca) and its RSA key, which opens the requests' envelopes (key transport) and signs
//! the replies.

use aws_lc_rs::rsa::{KeyPair, Pkcs1PrivateDecryptingKey, PrivateDecryptingKey};
use cms::cert::IssuerAndSerialNumber;
use der::{Decode, Encode};

use crate::ScepError;

/// The RA certificate and key.
pub struct RaCredential {
    pub(crate) certificate_der: Vec<u8>,
    pub(crate) certificate: x509_cert::Certificate,
    pub(crate) issuer_and_serial: IssuerAndSerialNumber,
    pub(crate) decrypting: Pkcs1PrivateDecryptingKey,
    pub(crate) signing: KeyPair,
}

impl std::fmt::Debug for RaCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaCredential")
            .field("serial", &self.issuer_and_serial.serial_number)
            .finish_non_exhaustive()
    }
}

impl RaCredential {
    /// The credential from its certificate (DER) and its RSA key (PKCS#8 DER).
    pub fn new(certificate_der: &[u8], pkcs8_der: &[u8]) -> Result<Self, ScepError> {
        let certificate = x509_cert::Certificate::from_der(certificate_der)
            .map_err(|e| ScepError::Internal(format!("SCEP RA certificate: {e}")))?;
        let decrypting = PrivateDecryptingKey::from_pkcs8(pkcs8_der)
            .map_err(|e| ScepError::Internal(format!("SCEP RA key: {e}")))
            .and_then(|k| {
                Pkcs1PrivateDecryptingKey::new(k)
                    .map_err(|e| ScepError::Internal(format!("SCEP RA key: {e}")))
            })?;
        let signing = KeyPair::from_pkcs8(pkcs8_der)
            .map_err(|e| ScepError::Internal(format!("SCEP RA key: {e}")))?;
        // The key must be the certificate's.
        let cert_key = certificate
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        if aws_lc_rs::signature::KeyPair::public_key(&signing).as_ref() != cert_key {
            return Err(ScepError::Internal(
                "the SCEP RA key does not belong to the SCEP RA certificate".into(),
            ));
        }
        let issuer_and_serial = IssuerAndSerialNumber {
            issuer: certificate.tbs_certificate.issuer.clone(),
            serial_number: certificate.tbs_certificate.serial_number.clone(),
        };
        Ok(Self {
            certificate_der: certificate_der.to_vec(),
            certificate,
            issuer_and_serial,
            decrypting,
            signing,
        })
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// Whether `rid` (a recipient's issuer and serial number) names this credential's
    /// certificate.
    pub(crate) fn is_named(&self, rid: &crate::wire::IssuerSerial) -> bool {
        // Compare encodings: names compare equal only when encoded alike, as RFC 5652
        // recipients are matched by clients too.
        rid.serial_number.to_der().ok() == self.issuer_and_serial.serial_number.to_der().ok()
            && rid.issuer.to_der().ok() == self.issuer_and_serial.issuer.to_der().ok()
    }
}
