//! PKCSReq (initial enrollment: a one-time challenge password, or a birth certificate
//! where the profile allows it), RenewalReq (signed by the current operational
//! certificate) and CertPoll (a pending request run again with its stored CSR), all
//! through the enrollment pipeline.

use aws_lc_rs::digest;
use fleetca_enroll::{Enrolled, EnrollmentInput, RequestOptions};
use fleetca_pki::{CertificateProfile, CertificateRequest};
use fleetca_ra::{ChannelBinding, ClientIdentity, Operation};
use fleetca_store::{ScepTransaction, StoreError};

use crate::algorithms::ContentCipher;
use crate::envelope;
use crate::message::{MessageCertificate, MessageType};
use crate::operation::Request;
use crate::reply::Status;
use crate::{ScepError, ScepFrontEnd};

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// `bytes` as an unsigned big-endian number in decimal (certmonger spells its
/// transactionID so).
fn decimal(bytes: &[u8]) -> String {
    let mut number: Vec<u8> = bytes.to_vec();
    let mut digits = Vec::new();
    while number.iter().any(|b| *b != 0) {
        let mut remainder = 0u32;
        for b in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*b);
            // value < 10 * 256, so the quotient fits a byte.
            *b = u8::try_from(value / 10).unwrap_or(u8::MAX);
            remainder = value % 10;
        }
        digits.push(char::from(b'0' + u8::try_from(remainder).unwrap_or(0)));
    }
    if digits.is_empty() {
        digits.push('0');
    }
    digits.iter().rev().collect()
}

/// RFC 8894 section 3.2.1.1.1: the transactionID is a hash of the request's public key.
/// Clients differ in the hash and its spelling: SHA-1, SHA-256 or SHA-512 of the
/// subjectPublicKeyInfo or of the key itself, or the key identifier of RFC 7093 section 2
/// (the leftmost 160 bits of the key's SHA-256, what micromdm's scepclient sends), in hex
/// (either case), base64 or decimal.
fn check_transaction_id(transaction_id: &str, spki_der: &[u8]) -> Result<(), ScepError> {
    use base64::Engine;
    let key = x509_cert::spki::SubjectPublicKeyInfoRef::try_from(spki_der)
        .map(|s| s.subject_public_key.raw_bytes().to_vec())
        .unwrap_or_default();
    let algorithms = [
        &digest::SHA1_FOR_LEGACY_USE_ONLY,
        &digest::SHA256,
        &digest::SHA512,
    ];
    let mut hashes: Vec<Vec<u8>> = Vec::new();
    for input in [spki_der, key.as_slice()] {
        for alg in algorithms {
            hashes.push(digest::digest(alg, input).as_ref().to_vec());
        }
        let sha256 = digest::digest(&digest::SHA256, input);
        hashes.extend(sha256.as_ref().get(..20).map(<[u8]>::to_vec));
    }
    let matches = hashes.iter().any(|d| {
        transaction_id.eq_ignore_ascii_case(&hex::encode(d))
            || transaction_id == base64::engine::general_purpose::STANDARD.encode(d)
            || transaction_id == decimal(d)
    });
    if matches {
        Ok(())
    } else {
        Err(ScepError::refused(
            "scep-transaction-id",
            "transactionID is not a hash of the request's public key (RFC 8894 section 3.2.1.1.1)",
        ))
    }
}

/// The reply is encrypted to the signer's certificate: it needs an RSA key.
pub(crate) fn require_rsa(signer: &MessageCertificate) -> Result<(), ScepError> {
    if signer.is_rsa() {
        Ok(())
    } else {
        Err(ScepError::BadAlg(
            "the signer's certificate must carry an RSA key: the reply is encrypted to it (RSA key transport)".into(),
        ))
    }
}

fn signer_key_sha256(signer: &MessageCertificate) -> Result<String, ScepError> {
    Ok(sha256_hex(&signer.spki_der))
}

impl ScepFrontEnd {
    /// PKCSReq and RenewalReq.
    pub(crate) async fn enroll_request(&self, r: &Request<'_>) -> Result<Status, ScepError> {
        require_rsa(&r.verified.signer)?;
        if r.profile.issuer == "manufacturing" {
            return Err(ScepError::refused(
                "scep-profile",
                "SCEP does not issue birth certificates; use a label of an operational profile",
            ));
        }
        let (csr_der, cipher) = r.open_envelope()?;
        let csr = CertificateRequest::from_der(&csr_der)
            .map_err(|e| ScepError::refused("csr", e.to_string()))?;
        check_transaction_id(&r.message.transaction_id, csr.spki_der())?;
        let key_sha256 = sha256_hex(csr.spki_der());
        let known = self
            .stores
            .scep
            .scep_transaction(&r.message.transaction_id)
            .await?;
        if let Some(known) = &known {
            if known.key_sha256 != key_sha256 {
                return Err(ScepError::refused(
                    "scep-transaction",
                    "this transactionID was used with another key",
                ));
            }
            // Answered with a certificate already: the same answer, however often the
            // transaction is sent again (a replay is answered, never issued anew).
            if let Some(serial) = &known.certificate_serial {
                return self.issued_again(r, serial, cipher).await;
            }
            // The same PKCSReq sent again (clients resubmit a pending request rather than
            // poll): its challenge was consumed by this key the first time; the stored
            // request runs again, as for CertPoll.
            if let Some(device_serial) = &known.secret_device {
                if r.message.message_type == MessageType::PkcsReq
                    && signer_key_sha256(&r.verified.signer)? == known.key_sha256
                {
                    let stored = CertificateRequest::from_der(&known.csr)
                        .map_err(|e| ScepError::Internal(format!("stored SCEP request: {e}")))?;
                    let client = ClientIdentity::EnrollmentSecret {
                        device_serial: device_serial.clone(),
                        protocol: "scep",
                    };
                    return self
                        .run(
                            r,
                            r.profile,
                            r.label,
                            &client,
                            Operation::Enroll,
                            &stored,
                            cipher,
                        )
                        .await;
                }
            }
        }
        let (client, operation, secret_device) = match r.message.message_type {
            MessageType::RenewalReq => match r.context.identify(&r.verified.chain) {
                Ok(client @ ClientIdentity::OperationalCertificate { .. }) => {
                    (client, Operation::Reenroll, None)
                }
                Ok(other) => {
                    return Err(ScepError::refused(
                        "authentication",
                        format!(
                            "a RenewalReq must be signed by the current operational certificate, not a {}",
                            other.describe()
                        ),
                    ))
                }
                Err(e) => {
                    return Err(ScepError::refused(
                        "authentication",
                        format!("the RenewalReq signer is not a certificate fleetca issued: {e}"),
                    ))
                }
            },
            _ => self.pkcs_req_client(r, &csr).await?,
        };
        let transaction = ScepTransaction {
            transaction_id: r.message.transaction_id.clone(),
            key_sha256,
            label: r.label.map(str::to_string),
            secret_device,
            csr: csr_der,
            created_at: r.context.now,
            certificate_serial: None,
        };
        match self.stores.scep.record_scep_transaction(transaction).await {
            Ok(_) => {}
            Err(StoreError::Conflict(reason)) => {
                return Err(ScepError::refused("scep-transaction", reason))
            }
            Err(e) => return Err(e.into()),
        }
        self.run(r, r.profile, r.label, &client, operation, &csr, cipher)
            .await
    }

    /// Who a PKCSReq comes from: a birth certificate (where the profile allows it) or a
    /// one-time challenge password, consumed here.
    async fn pkcs_req_client(
        &self,
        r: &Request<'_>,
        csr: &CertificateRequest,
    ) -> Result<(ClientIdentity, Operation, Option<String>), ScepError> {
        match r.context.identify(&r.verified.chain) {
            // A PKCSReq signed by the current operational certificate is a renewal, as
            // clients from before RenewalReq send it (certmonger's rekey does): the RA
            // decides it as EST simplereenroll.
            Ok(client @ ClientIdentity::OperationalCertificate { .. }) => {
                return Ok((client, Operation::Reenroll, None));
            }
            Ok(client @ ClientIdentity::BirthCertificate { .. })
                if self
                    .settings
                    .birth_signer_profiles
                    .contains(&r.profile.name) =>
            {
                return Ok((client, Operation::Enroll, None));
            }
            _ => {}
        }
        let Some(password) = csr.challenge_password() else {
            return Err(ScepError::refused(
                "scep-challenge",
                "a PKCSReq needs a challenge password (fleetca scep challenge create) in the CSR",
            ));
        };
        // The challenge authenticates the key it came with: the message must be signed
        // with the requested key (its self-signed certificate).
        if signer_key_sha256(&r.verified.signer)? != sha256_hex(csr.spki_der()) {
            return Err(ScepError::BadMessageCheck(
                "a PKCSReq with a challenge password must be signed with the requested key".into(),
            ));
        }
        match self
            .stores
            .scep
            .consume_scep_challenge(&sha256_hex(password.as_bytes()), r.context.now)
            .await?
        {
            Some(device_serial) => Ok((
                ClientIdentity::EnrollmentSecret {
                    device_serial: device_serial.clone(),
                    protocol: "scep",
                },
                Operation::Enroll,
                Some(device_serial),
            )),
            None => Err(ScepError::refused(
                "scep-challenge",
                "the challenge password is unknown, already used or expired",
            )),
        }
    }

    /// CertPoll (GetCertInitial): the transaction's request, run again.
    pub(crate) async fn poll(&self, r: &Request<'_>) -> Result<Status, ScepError> {
        require_rsa(&r.verified.signer)?;
        let (_, cipher) = r.open_envelope()?;
        let transaction = self
            .stores
            .scep
            .scep_transaction(&r.message.transaction_id)
            .await?
            .ok_or_else(|| {
                ScepError::BadCertId(format!(
                    "no SCEP transaction {}",
                    fleetca_pki::escape_controls(&r.message.transaction_id)
                ))
            })?;
        if let Some(serial) = &transaction.certificate_serial {
            return self.issued_again(r, serial, cipher).await;
        }
        let csr = CertificateRequest::from_der(&transaction.csr)
            .map_err(|e| ScepError::Internal(format!("stored SCEP request: {e}")))?;
        let label = transaction.label.as_deref();
        let profile = r.context.profile(label).ok_or_else(|| {
            ScepError::BadCertId("the transaction's label is no longer served".into())
        })?;
        let (client, operation) = match &transaction.secret_device {
            Some(device_serial) => {
                if signer_key_sha256(&r.verified.signer)? != transaction.key_sha256 {
                    return Err(ScepError::BadMessageCheck(
                        "CertPoll must be signed with the key of the transaction's request".into(),
                    ));
                }
                (
                    ClientIdentity::EnrollmentSecret {
                        device_serial: device_serial.clone(),
                        protocol: "scep",
                    },
                    Operation::Enroll,
                )
            }
            None => match r.context.identify(&r.verified.chain) {
                Ok(client @ ClientIdentity::OperationalCertificate { .. }) => {
                    (client, Operation::Reenroll)
                }
                Ok(client @ ClientIdentity::BirthCertificate { .. }) => (client, Operation::Enroll),
                Ok(_) | Err(_) => {
                    return Err(ScepError::refused(
                        "authentication",
                        "CertPoll must be signed by the certificate that signed the request",
                    ))
                }
            },
        };
        self.run(r, &profile, label, &client, operation, &csr, cipher)
            .await
    }

    /// The certificate a transaction was answered with, again.
    async fn issued_again(
        &self,
        r: &Request<'_>,
        certificate_serial: &str,
        cipher: ContentCipher,
    ) -> Result<Status, ScepError> {
        let record = self
            .stores
            .inventory
            .certificate(certificate_serial)
            .await?
            .ok_or_else(|| {
                ScepError::Internal(format!(
                    "certificate {certificate_serial} of a SCEP transaction is not in the inventory"
                ))
            })?;
        let certs = fleetca_pki::certs_only(&[record.der.as_slice()])
            .map_err(|e| ScepError::Internal(e.to_string()))?;
        tracing::info!(
            transaction = %fleetca_pki::escape_controls(&r.message.transaction_id),
            serial = certificate_serial,
            "SCEP transaction answered again with its certificate"
        );
        Ok(Status::Success(envelope::seal(
            &certs,
            &r.verified.signer,
            cipher,
        )?))
    }

    /// Runs the enrollment pipeline and turns its outcome into a CertRep status.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        r: &Request<'_>,
        profile: &CertificateProfile,
        label: Option<&str>,
        client: &ClientIdentity,
        operation: Operation,
        csr: &CertificateRequest,
        cipher: ContentCipher,
    ) -> Result<Status, ScepError> {
        let ra = r.context.ra();
        let result = async {
            let admitted = fleetca_enroll::admit(ra.as_ref(), client).await?;
            let input = EnrollmentInput {
                client,
                admitted: admitted.as_ref(),
                operation,
                label,
                profile,
                csr,
                channel_binding: &ChannelBinding::Message,
                options: RequestOptions::default(),
                cmp_transaction: None,
            };
            fleetca_enroll::enroll(ra.as_ref(), &self.ca, input).await
        }
        .await;
        if let Some(audit) = &self.stores.audit {
            if fleetca_enroll::audited(client, result.is_err()) {
                let told = match &result {
                    Ok(enrolled) => Ok(enrolled),
                    Err(e) => Err(e as &(dyn std::fmt::Display + Sync)),
                };
                fleetca_enroll::audit_request(
                    audit.as_ref(),
                    r.context.now,
                    client,
                    operation,
                    false,
                    told,
                )
                .await;
            }
        }
        match result? {
            Enrolled::Issued {
                certificate,
                certificate_serial,
                ..
            } => {
                if let Err(e) = self
                    .stores
                    .scep
                    .complete_scep_transaction(&r.message.transaction_id, &certificate_serial)
                    .await
                {
                    // The certificate is in the inventory; a poll would run the request
                    // again and be answered with it (the RA recognises the request).
                    tracing::warn!(error = %e, "SCEP transaction could not be marked answered");
                }
                let certs = fleetca_pki::certs_only(&[certificate.as_slice()])
                    .map_err(|e| ScepError::Internal(e.to_string()))?;
                Ok(Status::Success(envelope::seal(
                    &certs,
                    &r.verified.signer,
                    cipher,
                )?))
            }
            Enrolled::Pending { .. } => Ok(Status::Pending),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_are_hashes_of_the_request_key() {
        let key = fleetca_pki::KeyAlgorithm::Rsa2048.generate().unwrap();
        let spki = key.public_key_der();
        let id = sha256_hex(&spki).to_uppercase();
        check_transaction_id(&id, &spki).unwrap();
        let other = fleetca_pki::KeyAlgorithm::P256.generate().unwrap();
        let err = check_transaction_id(&id, &other.public_key_der()).unwrap_err();
        assert_eq!(err.fail_info(), Some(crate::FailInfo::BadRequest));
        assert!(check_transaction_id("1234", &spki).is_err());
        // certmonger: the SHA-256 of the subjectPublicKeyInfo as a decimal number.
        let dec = decimal(digest::digest(&digest::SHA256, &spki).as_ref());
        check_transaction_id(&dec, &spki).unwrap();
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        // micromdm's scepclient: the RFC 7093 key identifier (leftmost 160 bits of the
        // SHA-256 of the key's BIT STRING contents) in base64.
        use base64::Engine;
        let raw = x509_cert::spki::SubjectPublicKeyInfoRef::try_from(spki.as_slice())
            .unwrap()
            .subject_public_key
            .raw_bytes()
            .to_vec();
        let sha256 = digest::digest(&digest::SHA256, &raw);
        let skid = &sha256.as_ref()[..20];
        let id = base64::engine::general_purpose::STANDARD.encode(skid);
        check_transaction_id(&id, &spki).unwrap();
        assert!(check_transaction_id(&id, &other.public_key_der()).is_err());
        assert_eq!(decimal(&[0xff, 0xff, 0xff]), "16777215");
    }
}
