//! `simpleenroll`, `simplereenroll` and `serverkeygen`: authenticate, read the request, run
//! the enrollment pipeline (`fleetca-enroll`: admit, decide, issue and record, conclude,
//! audit) and answer in EST's wire format. Birth enrollment is `simpleenroll` (or
//! `serverkeygen`) under a label whose profile the manufacturing CA issues.

use bytes::Bytes;
use fleetca_enroll::{EnrollError, Enrolled, EnrollmentInput, RequestOptions};
use fleetca_pki::CertificateRequest;
use fleetca_ra::{ClientIdentity, Operation};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_LENGTH};
use hyper::{Request, Response};

use crate::service::{read_body, ConnectionInfo, EstService, LabelProfile};
use crate::wire::{self, base64_response, PKCS7_CERTS_ONLY};
use crate::EstError;

/// Request header asking to re-issue a birth certificate (`true`).
pub const REISSUE_HEADER: &str = "fleetca-reissue";
/// Request header carrying the device model of a birth enrollment.
pub const MODEL_HEADER: &str = "fleetca-device-model";
/// Request header carrying the production batch of a birth enrollment.
pub const BATCH_HEADER: &str = "fleetca-device-batch";

fn attribute(headers: &HeaderMap, name: &str) -> Result<Option<String>, EstError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .filter(|t| {
            !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        })
        .ok_or_else(|| {
            EstError::BadRequest(format!(
                "header {name} must be 1 to 64 printable ASCII characters"
            ))
        })?;
    Ok(Some(text.to_string()))
}

impl From<EnrollError> for EstError {
    fn from(e: EnrollError) -> Self {
        match e {
            EnrollError::BadRequest(message) => Self::BadRequest(message),
            EnrollError::Refused { rule, reason } => Self::Forbidden { rule, reason },
            EnrollError::Unavailable(message) => Self::Unavailable(message),
            EnrollError::RetryLater { rule, retry_after } => Self::RetryLater {
                rule,
                retry_after: retry_after.as_secs().max(1),
            },
            EnrollError::Internal(detail) => Self::internal(&detail),
            other => Self::internal(&other),
        }
    }
}

impl EstService {
    pub(crate) async fn enroll(
        &self,
        conn: &ConnectionInfo,
        label: Option<&str>,
        target: &LabelProfile,
        operation: Operation,
        server_keygen: bool,
        req: Request<Incoming>,
    ) -> Result<(Response<Full<Bytes>>, String), EstError> {
        let limit = self.limits.max_body_bytes;
        // Refuse an announced oversized body before authenticating or reading it.
        let announced = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(EstError::PayloadTooLarge { limit });
        }
        let now = self.clock.now();
        let client = self
            .auth
            .authenticate(
                conn.peer_chain.as_deref().map(Vec::as_slice),
                &conn.verified,
                req.headers(),
                conn.remote.ip(),
                now,
            )
            .await?;
        // Under a label the manufacturing CA serves, enrolling means birth enrollment.
        let operation = match (operation, target.profile.issuer.as_str()) {
            (Operation::Enroll, "manufacturing") => Operation::Birth,
            (op, _) => op,
        };
        let result = self
            .enroll_as(&client, conn, label, target, operation, server_keygen, req)
            .await;
        if let Some(audit) = &self.audit {
            if fleetca_enroll::audited(&client, result.is_err()) {
                let told = match &result {
                    Ok((enrolled, _)) => Ok(enrolled),
                    Err(e) => Err(e as &(dyn std::fmt::Display + Sync)),
                };
                fleetca_enroll::audit_request(
                    audit.as_ref(),
                    self.clock.now(),
                    &client,
                    operation,
                    server_keygen,
                    told,
                )
                .await;
            }
        }
        result.map(|(enrolled, response)| (response, enrolled.device_serial().to_string()))
    }

    /// Reads the request, runs the pipeline and writes its outcome in EST's wire format.
    #[allow(clippy::too_many_arguments)]
    async fn enroll_as(
        &self,
        client: &ClientIdentity,
        conn: &ConnectionInfo,
        label: Option<&str>,
        target: &LabelProfile,
        operation: Operation,
        server_keygen: bool,
        req: Request<Incoming>,
    ) -> Result<(Enrolled, Response<Full<Bytes>>), EstError> {
        let ra = self.ra();
        let admitted = fleetca_enroll::admit(ra.as_ref(), client).await?;
        let headers = req.headers().clone();
        let reissue = headers
            .get(REISSUE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let model = attribute(&headers, MODEL_HEADER)?;
        let batch = attribute(&headers, BATCH_HEADER)?;
        wire::require_pkcs10(&headers)?;
        let body = read_body(
            req.into_body(),
            self.limits.max_body_bytes,
            self.limits.body_timeout,
        )
        .await?;
        let der = wire::decode_body(&body)?;
        let csr =
            CertificateRequest::from_der(&der).map_err(|e| EstError::BadRequest(e.to_string()))?;

        let input = EnrollmentInput {
            client,
            admitted: admitted.as_ref(),
            operation,
            label,
            profile: &target.profile,
            csr: &csr,
            channel_binding: &conn.channel_binding,
            options: RequestOptions {
                reissue,
                model,
                batch,
                server_keygen,
            },
            cmp_transaction: None,
        };
        let enrolled = fleetca_enroll::enroll(ra.as_ref(), &self.ca, input).await?;
        let response = match &enrolled {
            Enrolled::Issued {
                certificate,
                generated_key,
                ..
            } => {
                let message = fleetca_pki::certs_only(&[certificate.as_slice()])
                    .map_err(|e| EstError::internal(&e))?;
                match generated_key {
                    Some(key) => wire::serverkeygen_response(&key.pkcs8_der(), &message),
                    None => base64_response(PKCS7_CERTS_ONLY, &message),
                }
            }
            Enrolled::Pending {
                approval,
                retry_after,
                ..
            } => wire::accepted(
                retry_after.as_secs(),
                &format!(
                    "request {approval} is waiting for an operator's approval; retry with the same request after {} s\n",
                    retry_after.as_secs()
                ),
            ),
        };
        Ok((enrolled, response))
    }
}
