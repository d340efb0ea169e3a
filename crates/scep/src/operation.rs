//! PKIOperation: read the pkiMessage, check it, dispatch by messageType, and answer every
//! outcome with a CertRep (SUCCESS, PENDING, FAILURE with failInfo). A message that cannot
//! even be read (no transaction to answer) gets HTTP 400; only the server's own failures
//! get a 5xx.

use std::sync::OnceLock;

use bytes::Bytes;
use fleetca_est::{FrontEndContext, FrontEndRequest};
use fleetca_pki::CertificateProfile;
use fleetca_store::AuditEvent;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::algorithms::{ContentCipher, Digest};
use crate::envelope;
use crate::message::{MessageType, PkiMessage, Verified};
use crate::ra_credential::RaCredential;
use crate::reply::{self, Status};
use crate::{binary_response, text_response, ScepError, ScepFrontEnd};

/// What a request handler works with.
pub(crate) struct Request<'a> {
    pub(crate) label: Option<&'a str>,
    pub(crate) profile: &'a CertificateProfile,
    pub(crate) message: &'a PkiMessage,
    pub(crate) verified: &'a Verified,
    pub(crate) credential: &'a RaCredential,
    pub(crate) context: &'a FrontEndContext,
    /// The profile allows legacy algorithms (SHA-1, DES, 3DES).
    pub(crate) legacy: bool,
    /// The envelope's cipher, once opened (for the log).
    pub(crate) cipher: OnceLock<ContentCipher>,
}

impl Request<'_> {
    /// The pkcsPKIEnvelope opened with the RA key: its content and the cipher the client
    /// chose (the reply is sealed in the same one).
    pub(crate) fn open_envelope(&self) -> Result<(Vec<u8>, ContentCipher), ScepError> {
        let (content, cipher) =
            envelope::open(&self.verified.envelope, self.credential, self.legacy)?;
        let _ = self.cipher.set(cipher);
        Ok((content, cipher))
    }
}

impl ScepFrontEnd {
    pub(crate) async fn pki_operation(
        &self,
        label: Option<&str>,
        der: &[u8],
        request: &FrontEndRequest,
        context: &FrontEndContext,
    ) -> Response<Full<Bytes>> {
        let message = match PkiMessage::parse(der) {
            Ok(m) => m,
            Err(e) => {
                let text = fleetca_pki::escape_controls(&e.to_string()).into_owned();
                tracing::info!(remote = %request.remote, reason = %text, "SCEP request refused: unreadable pkiMessage");
                return text_response(StatusCode::BAD_REQUEST, format!("{text}\n"));
            }
        };
        let Some(profile) = context.profile(label) else {
            return text_response(StatusCode::NOT_FOUND, "unknown SCEP label\n".into());
        };
        let credential = self.credential();
        let result = self
            .answer(label, &profile, &message, &credential, context)
            .await;
        let status = match result {
            Ok(status) => status,
            Err(e) => {
                let text = fleetca_pki::escape_controls(&e.to_string()).into_owned();
                let transaction =
                    fleetca_pki::escape_controls(&message.transaction_id).into_owned();
                match e.fail_info() {
                    Some(info) => {
                        tracing::info!(
                            remote = %request.remote,
                            transaction = %transaction,
                            message_type = message.message_type.name(),
                            fail_info = info.name(),
                            rule = e.rule(),
                            reason = %text,
                            "SCEP request refused"
                        );
                        if e.rule().starts_with("scep-") {
                            self.audit_refusal(&message, request, &e, context).await;
                        }
                        Status::Failure(info)
                    }
                    None => {
                        let status = match e {
                            ScepError::Malformed(_) => StatusCode::BAD_REQUEST,
                            ScepError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                            _ => StatusCode::INTERNAL_SERVER_ERROR,
                        };
                        if status.is_server_error() {
                            tracing::warn!(transaction = %transaction, error = %text, "SCEP request failed");
                        }
                        let shown = match e {
                            ScepError::Internal(_) => "internal error; see the server log".into(),
                            _ => text,
                        };
                        return text_response(status, format!("{shown}\n"));
                    }
                }
            }
        };
        let digest = message.digest_hint().unwrap_or(Digest::Sha256);
        match reply::cert_rep(
            &credential,
            &message.transaction_id,
            &message.sender_nonce,
            status,
            digest,
            context.now,
        ) {
            Ok(der) => binary_response("application/x-pki-message", der),
            Err(e) => {
                tracing::error!(error = %e, "SCEP CertRep could not be built");
                text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log\n".into(),
                )
            }
        }
    }

    async fn answer(
        &self,
        label: Option<&str>,
        profile: &CertificateProfile,
        message: &PkiMessage,
        credential: &RaCredential,
        context: &FrontEndContext,
    ) -> Result<Status, ScepError> {
        if message.message_type == MessageType::Other {
            return Err(ScepError::refused(
                "scep-message-type",
                "messageType not supported (PKCSReq, RenewalReq, CertPoll, GetCert, GetCRL)",
            ));
        }
        let legacy = self.settings.legacy_profiles.contains(&profile.name);
        let verified = message.verify(legacy)?;
        if let Some(at) = verified.signing_time {
            if (at - context.now).abs() > self.settings.max_clock_skew {
                return Err(ScepError::BadTime(format!(
                    "signingTime {at} is more than {} from the server's time {}",
                    self.settings.max_clock_skew, context.now
                )));
            }
        }
        let request = Request {
            label,
            profile,
            message,
            verified: &verified,
            credential,
            context,
            legacy,
            cipher: OnceLock::new(),
        };
        let status = match message.message_type {
            MessageType::PkcsReq | MessageType::RenewalReq => self.enroll_request(&request).await,
            MessageType::CertPoll => self.poll(&request).await,
            MessageType::GetCert => self.get_cert(&request).await,
            MessageType::GetCrl => self.get_crl(&request).await,
            MessageType::Other => Err(ScepError::refused("scep-message-type", "unsupported")),
        }?;
        // What was asked and how it was protected: the message type (RenewalReq,
        // GetCert, ...) and the algorithms, which the pipeline's log does not know.
        tracing::info!(
            transaction = %fleetca_pki::escape_controls(&message.transaction_id),
            message_type = message.message_type.name(),
            label = label.unwrap_or("-"),
            digest = verified.digest.name(),
            cipher = request.cipher.get().map_or("-", |c| c.name()),
            status = status.name(),
            "SCEP request answered"
        );
        Ok(status)
    }

    /// A refusal by SCEP's own checks (the RA's are audited by the pipeline).
    async fn audit_refusal(
        &self,
        message: &PkiMessage,
        request: &FrontEndRequest,
        error: &ScepError,
        context: &FrontEndContext,
    ) {
        let Some(audit) = &self.stores.audit else {
            return;
        };
        let event = AuditEvent {
            at: context.now,
            actor: format!("scep:{}", request.remote.ip()),
            action: format!("scep-{}", message.message_type.name().to_ascii_lowercase()),
            subject: String::new(),
            outcome: "refused".into(),
            detail: fleetca_pki::escape_controls(&error.to_string()).into_owned(),
        };
        if let Err(e) = audit.append(event).await {
            tracing::error!(error = %e, "audit append failed");
        }
    }
}
