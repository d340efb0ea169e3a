//! GetCert and GetCRL (RFC 8894 sections 3.3.4 and 3.3.5): a certificate or its CA's
//! published CRL, named by issuer and serial number, returned in an envelope to the
//! requester.

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::revocation::{RevocationInfoChoice, RevocationInfoChoices};
use cms::signed_data::{EncapsulatedContentInfo, SignedData, SignerInfos};
use der::asn1::SetOfVec;
use der::{Decode, Encode};
use fleetca_ra::ClientIdentity;
use fleetca_store::CertificateRecord;

use crate::envelope;
use crate::message::{ID_DATA, ID_SIGNED_DATA};
use crate::operation::Request;
use crate::reply::Status;
use crate::{ScepError, ScepFrontEnd};

impl ScepFrontEnd {
    /// The certificate the envelope's IssuerAndSerialNumber names.
    async fn named_certificate(
        &self,
        r: &Request<'_>,
    ) -> Result<(CertificateRecord, crate::algorithms::ContentCipher), ScepError> {
        crate::enroll::require_rsa(&r.verified.signer)?;
        let (content, cipher) = r.open_envelope()?;
        let named = IssuerAndSerialNumber::from_der(&content).map_err(|e| {
            ScepError::refused("scep-message", format!("IssuerAndSerialNumber: {e}"))
        })?;
        let bytes = named.serial_number.as_bytes();
        let hex = hex::encode(bytes);
        let trimmed = hex::encode(bytes.strip_prefix(&[0u8]).unwrap_or(bytes));
        let record = match self.stores.inventory.certificate(&hex).await? {
            Some(r) => Some(r),
            None => self.stores.inventory.certificate(&trimmed).await?,
        };
        let record = record.ok_or_else(|| {
            ScepError::BadCertId(format!("no certificate with serial number {hex}"))
        })?;
        Ok((record, cipher))
    }

    /// GetCert: only the device's own certificates, to a signer that identifies as it.
    pub(crate) async fn get_cert(&self, r: &Request<'_>) -> Result<Status, ScepError> {
        let (record, cipher) = self.named_certificate(r).await?;
        let device = match r.context.identify(&r.verified.chain) {
            Ok(
                ClientIdentity::OperationalCertificate { certificate }
                | ClientIdentity::BirthCertificate { certificate, .. },
            ) => certificate.device_serial().map(str::to_string),
            _ => None,
        };
        if device.as_deref() != Some(record.device_serial.as_str()) {
            return Err(ScepError::refused(
                "scep-get-cert",
                "GetCert must be signed by a certificate of the same device",
            ));
        }
        let certs = fleetca_pki::certs_only(&[record.der.as_slice()])
            .map_err(|e| ScepError::Internal(e.to_string()))?;
        Ok(Status::Success(envelope::seal(
            &certs,
            &r.verified.signer,
            cipher,
        )?))
    }

    /// GetCRL: the newest published CRL of the named certificate's CA.
    pub(crate) async fn get_crl(&self, r: &Request<'_>) -> Result<Status, ScepError> {
        let (record, cipher) = self.named_certificate(r).await?;
        let crl = self
            .stores
            .revocation
            .stored_crl(&record.issuer, 0)
            .await?
            .ok_or_else(|| {
                ScepError::BadCertId(format!("no CRL is published for CA '{}'", record.issuer))
            })?;
        let list = x509_cert::crl::CertificateList::from_der(&crl.der)
            .map_err(|e| ScepError::Internal(format!("stored CRL: {e}")))?;
        let enc = |e: der::Error| ScepError::Internal(format!("CRL message: {e}"));
        let signed = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::new(),
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent: None,
            },
            certificates: None,
            crls: Some(RevocationInfoChoices(
                SetOfVec::try_from(vec![RevocationInfoChoice::Crl(list)]).map_err(enc)?,
            )),
            signer_infos: SignerInfos(SetOfVec::new()),
        };
        let message = ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: der::Any::encode_from(&signed).map_err(enc)?,
        }
        .to_der()
        .map_err(enc)?;
        Ok(Status::Success(envelope::seal(
            &message,
            &r.verified.signer,
            cipher,
        )?))
    }
}
