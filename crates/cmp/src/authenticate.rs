//! Who sent a message, checked before anything else: the recipient, the protection
//! (signature by a certificate fleetca trusts, or the MAC of a one-time secret), and the
//! dispatch to the operation of the body.

use cmpv2::body::PkiBody;
use der::Decode;
use fleetca_est::{FrontEndContext, ServedCa};
use fleetca_ra::ClientIdentity;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::message::{self, Received, Reply};
use crate::protection::{self, Protection};
use crate::{CmpError, CmpFrontEnd};

/// A verified protection.
pub(crate) enum Verified {
    /// Signed by a certificate (first of extraCerts) that belongs to `client`.
    Signature { client: ClientIdentity },
    /// MAC-protected with the secret of `reference`, created for `device_serial`.
    Mac {
        reference: String,
        parameters: crate::mac::MacScheme,
        secret: String,
        device_serial: String,
        /// The transaction that consumed the secret, if one did.
        consumed_by: Option<Vec<u8>>,
    },
}

impl Verified {
    /// The device the sender is (none for a station).
    pub(crate) fn device_serial(&self) -> Option<String> {
        match self {
            Self::Mac { device_serial, .. } => Some(device_serial.clone()),
            Self::Signature { client, .. } => device_of(client),
        }
    }

    /// Whether this message comes from the sender of a transaction: the same secret or
    /// signer, or (signatures) a certificate of the same device.
    pub(crate) fn same_sender(&self, protection: &str, device_serial: &str) -> bool {
        if self.describe() == protection {
            return true;
        }
        matches!(self, Self::Signature { .. })
            && protection.starts_with("signature:")
            && !device_serial.is_empty()
            && self.device_serial().as_deref() == Some(device_serial)
    }

    /// How the transaction records the protection.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Mac { reference, .. } => format!("mac:{reference}"),
            Self::Signature { client, .. } => {
                let who = match client {
                    ClientIdentity::Station { name, .. } => Some(name.clone()),
                    other => device_of(other),
                };
                format!("signature:{}:{}", client.role(), who.unwrap_or_default())
            }
        }
    }
}

/// The device of a certificate-authenticated client (its subject's serialNumber).
pub(crate) fn device_of(client: &ClientIdentity) -> Option<String> {
    match client {
        ClientIdentity::BirthCertificate { certificate, .. }
        | ClientIdentity::OperationalCertificate { certificate } => certificate
            .subject
            .iter()
            .find(|a| a.oid == fleetca_pki::SERIAL_NUMBER_OID)
            .map(|a| a.value.clone()),
        ClientIdentity::EnrollmentSecret { device_serial, .. } => Some(device_serial.clone()),
        _ => None,
    }
}

/// The message must be for fleetca: its protection certificate's name, a CA of the label,
/// or the NULL-DN (a client that does not know the name yet).
fn check_recipient(
    front: &CmpFrontEnd,
    received: &Received<'_>,
    context: &FrontEndContext,
    label: Option<&str>,
) -> Result<(), CmpError> {
    use der::Encode;
    let Some(name) = message::directory_name(&received.message.header.recipient) else {
        return Err(CmpError::WrongAuthority(
            "a recipient that is not a directory name".into(),
        ));
    };
    if name.0.is_empty() {
        return Ok(());
    }
    let credential = front.credential()?;
    if name == credential.subject() {
        return Ok(());
    }
    // The issuer of the signer's certificate (openssl's default recipient): one of the CAs
    // fleetca trusts for clients, or the signature check that follows refuses the message.
    let signer_issuer = received
        .message
        .extra_certs
        .as_ref()
        .and_then(|c| c.first())
        .and_then(|c| x509_cert::Certificate::from_der(&c.to_der().ok()?).ok())
        .map(|c| c.tbs_certificate.issuer);
    if signer_issuer.as_ref() == Some(name) {
        return Ok(());
    }
    let wanted = name.to_der().map_err(CmpError::internal)?;
    // Any CA fleetca serves: clients name the issuer of their own certificate (the
    // manufacturing CA for a birth certificate) or of the one they want.
    let labels = std::iter::once(label)
        .chain(std::iter::once(None))
        .chain(context.labels().map(Some));
    for l in labels {
        if ca_certificates(context, l)?
            .iter()
            .any(|ca| ca.subject_der == wanted)
        {
            return Ok(());
        }
    }
    Err(CmpError::WrongAuthority(name.to_string()))
}

/// The CA certificates served under `label` (issuing CA first, then the root).
pub(crate) fn ca_certificates<'c>(
    context: &'c FrontEndContext,
    label: Option<&str>,
) -> Result<&'c [ServedCa], CmpError> {
    context
        .ca_chain(label)
        .ok_or_else(|| CmpError::BadRequest("no such label".into()))
}

/// Verifies the protection of a message.
pub(crate) async fn verify(
    front: &CmpFrontEnd,
    received: &Received<'_>,
    context: &FrontEndContext,
) -> Result<Verified, CmpError> {
    match protection::protection_of(&received.message)? {
        Protection::Signature { algorithm, chain } => {
            let signer = chain
                .first()
                .ok_or_else(|| CmpError::BadRequest("extraCerts is empty".into()))?;
            protection::verify_signature(
                &received.message,
                &received.protected_part,
                algorithm,
                signer,
            )?;
            let ders: Vec<CertificateDer<'_>> = chain
                .iter()
                .map(|c| CertificateDer::from(c.as_slice()))
                .collect();
            let client = context
                .identify(&ders)
                .map_err(CmpError::SignerNotTrusted)?;
            Ok(Verified::Signature { client })
        }
        Protection::Mac {
            reference,
            parameters,
        } => {
            let record = front
                .store
                .cmp
                .cmp_secret(&reference)
                .await?
                .ok_or_else(|| {
                    CmpError::BadMessageCheck(format!(
                        "no shared secret has the reference {reference}"
                    ))
                })?;
            let secret = front
                .secret_key
                .secret(&reference, &record.secret.device_serial);
            if crate::secret_sha256(&secret) != record.secret.secret_sha256 {
                return Err(CmpError::BadMessageCheck(format!(
                    "the shared secret {reference} was made under another CMP secret key"
                )));
            }
            protection::verify_mac(
                &received.message,
                &received.protected_part,
                &parameters,
                secret.as_bytes(),
            )?;
            let now = context.now;
            let tid = received
                .message
                .header
                .trans_id
                .as_ref()
                .map(|t| t.as_bytes().to_vec());
            // A used secret serves only the rest of the transaction that used it.
            if record.consumed_at.is_some() && record.consumed_by != tid {
                return Err(CmpError::NotAuthorized(format!(
                    "the shared secret {reference} was already used"
                )));
            }
            if record.consumed_at.is_none() && record.secret.expires_at <= now {
                return Err(CmpError::NotAuthorized(format!(
                    "the shared secret {reference} expired"
                )));
            }
            Ok(Verified::Mac {
                reference,
                parameters,
                secret,
                device_serial: record.secret.device_serial,
                consumed_by: record.consumed_by,
            })
        }
    }
}

type Refusal = (Reply, Option<Verified>, CmpError);

/// Checks the header, recipient and protection, then answers by body kind.
pub(crate) async fn dispatch(
    front: &CmpFrontEnd,
    received: &Received<'_>,
    context: &FrontEndContext,
    label: Option<&str>,
    reply: Reply,
    now: OffsetDateTime,
) -> Result<Vec<u8>, Refusal> {
    let header = &received.message.header;
    if let Err(e) = message::check_header(header)
        .and_then(|()| check_recipient(front, received, context, label))
    {
        return Err((reply, None, e));
    }
    let verified = match verify(front, received, context).await {
        Ok(v) => v,
        Err(e) => return Err((reply, None, e)),
    };
    let body = match &received.message.body {
        message::Body::Cmp(body) => body.as_ref(),
        message::Body::Error(text) => {
            tracing::info!(error = %text, "CMP: the client ended its transaction with an error message");
            let e =
                CmpError::BadRequest("error message received; the transaction is abandoned".into());
            return Err((reply, Some(verified), e));
        }
        message::Body::PollReq(ids) => {
            let result =
                crate::poll::answer(front, received, ids, context, label, &reply, &verified, now)
                    .await;
            return result.map_err(|e| (reply, Some(verified), e));
        }
    };
    let result = match body {
        PkiBody::Ir(_) | PkiBody::Cr(_) | PkiBody::KUr(_) | PkiBody::P10cr(_) => {
            crate::enroll::answer(front, received, context, label, &reply, &verified, now).await
        }
        PkiBody::CertConf(statuses) => {
            crate::confirm::answer(front, received, statuses, &reply, &verified, now).await
        }
        PkiBody::GenM(infos) => {
            crate::general::answer(front, infos, context, label, &reply, &verified, now).await
        }
        PkiBody::Rr(details) => {
            crate::revoke::answer(front, details, context, &reply, &verified, now).await
        }
        _ => Err(CmpError::BadRequest(format!(
            "fleetca does not serve CMP {} messages (RFC 9483: ir, cr, p10cr, kur, certConf, pollReq, rr, genm)",
            message::body_name(&received.message.body)
        ))),
    };
    result.map_err(|e| (reply, Some(verified), e))
}
