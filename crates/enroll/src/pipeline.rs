//! admit → decide → issue and record → conclude, for any front end.

use std::time::Duration;

use fleetca_ca::{CertificateAuthority, Lineage};
use fleetca_pki::{CertificateProfile, CertificateRequest, IssuanceOrder, SoftwareKey};
use fleetca_ra::{
    Admission, Admitted, ChannelBinding, ClientIdentity, Conclusion, Decision, EnrollmentRequest,
    Operation, Outcome, RegistrationAuthority,
};
use fleetca_store::{BirthContext, NewDecision};

use crate::EnrollError;

/// What the client asked for besides the CSR (front ends read these from their own
/// message: EST headers and path, CMP header fields, SCEP attributes).
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// Re-issue a birth certificate.
    pub reissue: bool,
    /// The device model of a birth enrollment.
    pub model: Option<String>,
    /// The production batch of a birth enrollment.
    pub batch: Option<String>,
    /// The server generates the key (returned once, never stored).
    pub server_keygen: bool,
}

/// One admitted enrollment request, protocol-free.
pub struct EnrollmentInput<'a> {
    /// The authenticated client.
    pub client: &'a ClientIdentity,
    /// What [`admit`] returned for this client.
    pub admitted: Option<&'a Admitted>,
    /// Enroll, re-enroll or birth (see [`fleetca_ra::Operation`]).
    pub operation: Operation,
    /// The label the request came under, if any.
    pub label: Option<&'a str>,
    /// The profile of that label.
    pub profile: &'a CertificateProfile,
    /// The parsed CSR (proof of possession already checked by parsing).
    pub csr: &'a CertificateRequest,
    /// The channel the request arrived on.
    pub channel_binding: &'a ChannelBinding,
    /// Options of the request.
    pub options: RequestOptions,
    /// The front end's CMP transaction, recorded in the certificate's commit when one is
    /// issued (a transactionID in use refuses it under the rule `cmp-transaction-id`).
    pub cmp_transaction: Option<fleetca_store::CmpTransaction>,
}

/// A request that ended without an error. Exhaustive on purpose: a new outcome must be
/// answered by every front end.
#[derive(Debug)]
pub enum Enrolled {
    /// A certificate for the device: newly issued, or (`resent`) the one an approved
    /// request was issued earlier.
    Issued {
        /// The certificate, DER.
        certificate: Vec<u8>,
        /// Its serial number (hex, as in the inventory).
        certificate_serial: String,
        /// The device.
        device_serial: String,
        /// The key the server generated, for a server-keygen request.
        generated_key: Option<SoftwareKey>,
        /// An approved request's certificate sent again.
        resent: bool,
        /// A re-issue of a birth certificate.
        reissue: bool,
    },
    /// Waiting for an operator's approval; the client retries the same request.
    Pending {
        /// The device.
        device_serial: String,
        /// The approval request's id.
        approval: i64,
        /// When to retry.
        retry_after: Duration,
    },
}

impl Enrolled {
    /// The device the request was for.
    pub fn device_serial(&self) -> &str {
        match self {
            Self::Issued { device_serial, .. } | Self::Pending { device_serial, .. } => {
                device_serial
            }
        }
    }
}

/// The name of the operation in logs and the audit trail.
pub fn action_name(operation: Operation, server_keygen: bool) -> &'static str {
    if server_keygen {
        "serverkeygen"
    } else {
        operation.name()
    }
}

/// Lets the RA admit the client before its request is read.
pub async fn admit(
    ra: &dyn RegistrationAuthority,
    client: &ClientIdentity,
) -> Result<Option<Admitted>, EnrollError> {
    match ra.admit(client).await? {
        Admission::Admitted(admitted) => Ok(admitted),
        Admission::Refused { rule, reason } => Err(EnrollError::Refused {
            rule: rule.to_string(),
            reason,
        }),
    }
}

/// Decides an admitted request, issues and records the certificate when the decision
/// allows it, and concludes the decision log (approvals included).
pub async fn enroll(
    ra: &dyn RegistrationAuthority,
    ca: &CertificateAuthority,
    input: EnrollmentInput<'_>,
) -> Result<Enrolled, EnrollError> {
    let EnrollmentInput {
        client,
        admitted,
        operation,
        label,
        profile,
        csr,
        channel_binding,
        options,
        cmp_transaction,
    } = input;
    let server_keygen = options.server_keygen;
    let request = EnrollmentRequest {
        operation,
        label,
        profile,
        client,
        csr,
        channel_binding,
        reissue: options.reissue,
        admitted,
    };
    let decision = ra.decide(&request).await?;
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
                cmp_transaction,
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
                conclude(ra, &request, &decision, Conclusion::NotIssued).await;
                return Err(EnrollError::Refused {
                    rule: "manual-approval".into(),
                    reason: format!(
                        "this approved request was issued as certificate {certificate_serial}; its server-generated key is not kept, make a new request"
                    ),
                });
            }
            conclude(
                ra,
                &request,
                &decision,
                Conclusion::Issued { certificate_serial },
            )
            .await;
            return Ok(Enrolled::Issued {
                certificate: der.clone(),
                certificate_serial: certificate_serial.clone(),
                device_serial: device_serial.clone(),
                generated_key: None,
                resent: true,
                reissue: false,
            });
        }
        Outcome::Deny { rule, reason } => {
            conclude(ra, &request, &decision, Conclusion::NotIssued).await;
            return Err(EnrollError::Refused {
                rule: rule.to_string(),
                reason: reason.clone(),
            });
        }
        Outcome::Pending {
            device_serial,
            approval,
            retry_after,
        } => {
            conclude(ra, &request, &decision, Conclusion::NotIssued).await;
            tracing::info!(device = %device_serial, approval, "enrollment waits for approval");
            return Ok(Enrolled::Pending {
                device_serial: device_serial.clone(),
                approval: *approval,
                retry_after: *retry_after,
            });
        }
        Outcome::Unavailable { rule, retry_after } => {
            conclude(ra, &request, &decision, Conclusion::NotIssued).await;
            return Err(EnrollError::RetryLater {
                rule: rule.to_string(),
                retry_after: *retry_after,
            });
        }
    };

    // The decision is recorded with the certificate, in the same commit.
    let record = ra.record_of(&request, &decision, Conclusion::Issuing);
    let issued = issue(
        ca,
        client,
        profile,
        operation,
        csr,
        device_serial.clone(),
        lineage,
        (reissue, options),
        record,
    )
    .await;
    let (issued, generated_key) = match issued {
        Ok(issued) => issued,
        Err(e) => {
            let conclusion = match &e {
                // The recording commit found the device or credential no longer standing.
                EnrollError::Refused { reason, .. } => Conclusion::Refused { reason },
                _ => Conclusion::Failed,
            };
            conclude(ra, &request, &decision, conclusion).await;
            return Err(e);
        }
    };
    tracing::info!(
        device = %device_serial,
        serial = %issued.serial,
        operation = action_name(operation, server_keygen),
        client = client.role(),
        label = label.unwrap_or(""),
        "enrollment succeeded"
    );
    Ok(Enrolled::Issued {
        certificate: issued.der,
        certificate_serial: issued.serial.to_string(),
        device_serial,
        generated_key,
        resent: false,
        reissue,
    })
}

/// Records how the request ended; a failure to record is logged, never shown to the
/// client (the certificate, if any, is already durable in the inventory).
async fn conclude(
    ra: &dyn RegistrationAuthority,
    request: &EnrollmentRequest<'_>,
    decision: &Decision,
    conclusion: Conclusion<'_>,
) {
    if let Err(e) = ra.conclude(request, decision, conclusion).await {
        tracing::error!(error = %e, decision = %decision, "decision could not be recorded");
    }
}

/// Generates the key (server keygen), issues and records the certificate.
#[allow(clippy::too_many_arguments)]
async fn issue(
    ca: &CertificateAuthority,
    client: &ClientIdentity,
    profile: &CertificateProfile,
    operation: Operation,
    csr: &CertificateRequest,
    device_serial: String,
    lineage: Lineage,
    (reissue, options): (bool, RequestOptions),
    record: Option<NewDecision>,
) -> Result<(fleetca_pki::IssuedCertificate, Option<SoftwareKey>), EnrollError> {
    // Server keygen: the key is made here, returned once, and never stored.
    let generated = if options.server_keygen {
        let alg = profile
            .allowed_keys
            .first()
            .copied()
            .ok_or_else(|| EnrollError::Internal("profile allows no key algorithm".into()))?;
        Some(
            alg.generate()
                .map_err(|e| EnrollError::Internal(e.to_string()))?,
        )
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
        model: options.model,
        batch: options.batch,
    });
    let issued = ca
        .issue_decided(profile, order, lineage, birth, record)
        .await?;
    Ok((issued, generated))
}
