//! `simpleenroll`, `simplereenroll` and `serverkeygen`: authenticate, admit, read the CSR,
//! let the RA decide, let the CA issue and record, answer. Birth enrollment is
//! `simpleenroll` (or `serverkeygen`) under a label whose profile the manufacturing CA
//! issues; station requests are written to the audit trail, granted or refused, and so
//! are the refusals of devices authenticated by their certificate.

use bytes::Bytes;
use fleetca_ca::{CaError, Lineage};
use fleetca_pki::{CertificateRequest, IssuanceOrder, IssuedCertificate, SoftwareKey};
use fleetca_ra::{Admission, ClientIdentity, Conclusion, EnrollmentRequest, Operation, Outcome};
use fleetca_store::{AuditEvent, BirthContext};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_LENGTH};
use hyper::{Request, Response};

use crate::service::{ra_error, read_body, ConnectionInfo, EstService, LabelProfile};
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

/// A successful enrollment: the answer, the device, and what the audit trail says.
pub(crate) struct Enrolled {
    response: Response<Full<Bytes>>,
    device_serial: String,
    detail: String,
    /// `granted`, or `pending` for a request waiting for approval.
    outcome: &'static str,
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
        // Station requests are audited granted or refused. Devices' refusals are audited
        // too (the monitor's "failing renewals" reads them); their successes are the
        // issued certificates themselves, and this path stays free of a second write.
        let audited = match &client {
            ClientIdentity::Station { .. } => true,
            ClientIdentity::BirthCertificate { .. }
            | ClientIdentity::OperationalCertificate { .. } => result.is_err(),
            ClientIdentity::Administrator { .. } | ClientIdentity::Account { .. } => false,
        };
        if audited {
            self.audit_request(&client, operation, server_keygen, &result)
                .await;
        }
        result.map(|e| (e.response, e.device_serial))
    }

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
    ) -> Result<Enrolled, EstError> {
        let ra = self.ra();
        let admitted = match ra.admit(client).await.map_err(ra_error)? {
            Admission::Admitted(admitted) => admitted,
            Admission::Refused { rule, reason } => {
                return Err(EstError::Forbidden {
                    rule: rule.to_string(),
                    reason,
                })
            }
        };
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

        let request = EnrollmentRequest {
            operation,
            label,
            profile: &target.profile,
            client,
            csr: &csr,
            channel_binding: &conn.channel_binding,
            reissue,
            admitted: admitted.as_ref(),
        };
        let decision = ra.decide(&request).await.map_err(ra_error)?;
        let (device_serial, lineage, reissue) = match &decision.outcome {
            Outcome::Issue {
                device_serial,
                replaces,
                authenticated_by,
                limits,
                binding,
                reissue,
                ..
            } => (
                device_serial.clone(),
                Lineage {
                    replaces: replaces.clone(),
                    authenticated_by: authenticated_by.clone(),
                    limits: limits.clone(),
                    binding: binding.clone(),
                },
                *reissue,
            ),
            Outcome::AlreadyIssued {
                device_serial,
                certificate_serial,
                der,
            } => {
                if server_keygen {
                    // The key was returned once and never stored: it cannot be sent again.
                    self.conclude(&request, &decision, Conclusion::NotIssued)
                        .await;
                    return Err(EstError::Forbidden {
                        rule: "manual-approval".into(),
                        reason: format!(
                            "this approved request was issued as certificate {certificate_serial}; its server-generated key is not kept, make a new request"
                        ),
                    });
                }
                let message =
                    fleetca_pki::certs_only(&[der]).map_err(|e| EstError::internal(&e))?;
                self.conclude(
                    &request,
                    &decision,
                    Conclusion::Issued { certificate_serial },
                )
                .await;
                return Ok(Enrolled {
                    response: base64_response(PKCS7_CERTS_ONLY, &message),
                    device_serial: device_serial.clone(),
                    detail: format!(
                        "approved request, certificate {certificate_serial} sent again"
                    ),
                    outcome: "granted",
                });
            }
            Outcome::Deny { rule, reason } => {
                self.conclude(&request, &decision, Conclusion::NotIssued)
                    .await;
                return Err(EstError::Forbidden {
                    rule: rule.to_string(),
                    reason: reason.clone(),
                });
            }
            Outcome::Pending {
                device_serial,
                approval,
                retry_after,
            } => {
                self.conclude(&request, &decision, Conclusion::NotIssued)
                    .await;
                tracing::info!(device = %device_serial, approval, "enrollment waits for approval");
                return Ok(Enrolled {
                    response: wire::accepted(
                        retry_after.as_secs(),
                        &format!(
                            "request {approval} is waiting for an operator's approval; retry with the same request after {} s\n",
                            retry_after.as_secs()
                        ),
                    ),
                    device_serial: device_serial.clone(),
                    detail: format!("waiting for approval (request {approval})"),
                    outcome: "pending",
                });
            }
            Outcome::Unavailable { rule, retry_after } => {
                self.conclude(&request, &decision, Conclusion::NotIssued)
                    .await;
                return Err(EstError::RetryLater {
                    rule: rule.to_string(),
                    retry_after: retry_after.as_secs().max(1),
                });
            }
        };

        // The decision is recorded with the certificate, in the same commit.
        let record = ra.record_of(&request, &decision, Conclusion::Issuing);
        let issued = self
            .issue(
                client,
                target,
                operation,
                server_keygen,
                &csr,
                device_serial.clone(),
                lineage,
                (reissue, model, batch),
                record,
            )
            .await;
        let (issued, generated) = match issued {
            Ok(issued) => issued,
            Err(e) => {
                let conclusion = match &e {
                    // The recording commit found the device or credential no longer standing.
                    EstError::Forbidden { reason, .. } => Conclusion::Refused { reason },
                    _ => Conclusion::Failed,
                };
                self.conclude(&request, &decision, conclusion).await;
                return Err(e);
            }
        };
        let message =
            fleetca_pki::certs_only(&[&issued.der]).map_err(|e| EstError::internal(&e))?;
        tracing::info!(
            device = %device_serial,
            serial = %issued.serial,
            operation = if server_keygen { "serverkeygen" } else { operation.name() },
            client = client.role(),
            label = label.unwrap_or(""),
            "enrollment succeeded"
        );
        let response = match generated {
            Some(key) => wire::serverkeygen_response(&key.pkcs8_der(), &message),
            None => base64_response(PKCS7_CERTS_ONLY, &message),
        };
        let detail = if reissue {
            format!(
                "re-issue of the birth certificate; certificate {}",
                issued.serial
            )
        } else {
            format!("certificate {}", issued.serial)
        };
        Ok(Enrolled {
            response,
            device_serial,
            detail,
            outcome: "granted",
        })
    }

    /// Records how the request ended; a failure to record is logged, never shown to the
    /// device (the certificate, if any, is already durable in the inventory).
    async fn conclude(
        &self,
        request: &EnrollmentRequest<'_>,
        decision: &fleetca_ra::Decision,
        conclusion: Conclusion<'_>,
    ) {
        if let Err(e) = self.ra().conclude(request, decision, conclusion).await {
            tracing::error!(error = %e, decision = %decision, "decision could not be recorded");
        }
    }

    /// Generates the key (serverkeygen), issues and records the certificate.
    #[allow(clippy::too_many_arguments)]
    async fn issue(
        &self,
        client: &ClientIdentity,
        target: &LabelProfile,
        operation: Operation,
        server_keygen: bool,
        csr: &CertificateRequest,
        device_serial: String,
        lineage: Lineage,
        (reissue, model, batch): (bool, Option<String>, Option<String>),
        record: Option<fleetca_store::NewDecision>,
    ) -> Result<(IssuedCertificate, Option<SoftwareKey>), EstError> {
        // serverkeygen: the key is made here, returned once, and never stored.
        let generated = if server_keygen {
            let alg = target
                .profile
                .allowed_keys
                .first()
                .copied()
                .ok_or_else(|| EstError::internal(&"profile allows no key algorithm"))?;
            Some(alg.generate().map_err(|e| EstError::internal(&e))?)
        } else {
            None
        };
        let order = IssuanceOrder {
            device_serial,
            spki_der: generated
                .as_ref()
                .map_or_else(|| csr.spki_der().to_vec(), |k| k.public_key_der()),
        };
        let birth = (operation == Operation::Birth).then(|| BirthContext {
            station: match client {
                ClientIdentity::Station { name, .. } => Some(name.clone()),
                _ => None,
            },
            reissue,
            model,
            batch,
        });
        let issued = self
            .ca
            .issue_decided(&target.profile, order, lineage, birth, record)
            .await
            .map_err(|e| match e {
                CaError::Refused(reason) => EstError::Forbidden {
                    rule: "inventory".into(),
                    reason,
                },
                CaError::Limit { rule, reason } => EstError::Forbidden { rule, reason },
                CaError::Store(e) => EstError::Unavailable(format!(
                "the certificate could not be recorded, so it was not issued; retry later ({e})"
            )),
                other => EstError::internal(&other),
            })?;
        Ok((issued, generated))
    }

    async fn audit_request(
        &self,
        client: &ClientIdentity,
        operation: Operation,
        server_keygen: bool,
        result: &Result<Enrolled, EstError>,
    ) {
        let Some(audit) = &self.audit else {
            return;
        };
        // A refused device is named by its client certificate; a refused station request
        // names no device (the CSR may not have been read).
        let device = match client {
            ClientIdentity::BirthCertificate { certificate, .. }
            | ClientIdentity::OperationalCertificate { certificate } => {
                certificate.device_serial().unwrap_or_default().to_string()
            }
            _ => String::new(),
        };
        let (outcome, subject, detail) = match result {
            Ok(e) => (e.outcome, e.device_serial.clone(), e.detail.clone()),
            Err(e) => ("refused", device, e.to_string()),
        };
        let action = if server_keygen {
            "serverkeygen"
        } else {
            operation.name()
        };
        let event = AuditEvent {
            at: self.clock.now(),
            actor: client.actor(),
            action: action.to_string(),
            subject,
            outcome: outcome.to_string(),
            detail,
        };
        if let Err(e) = audit.append(event).await {
            tracing::error!(error = %e, "audit append failed");
        }
    }
}
