//! The audit trail of enrollment requests: which are written, and what they say.

use fleetca_ra::{ClientIdentity, Operation};
use fleetca_store::{AuditEvent, AuditLog};
use time::OffsetDateTime;

use crate::{action_name, Enrolled};

/// How a request ended, as the audit trail tells it: the outcome, or the refusal's text as
/// the client was told it.
pub type AuditedResult<'a> = Result<&'a Enrolled, &'a (dyn std::fmt::Display + Sync)>;

/// Whether a request of `client` that ended `failed` (or not) is audited. Station requests
/// are audited granted or refused. Devices' refusals are audited too (the monitor's
/// "failing renewals" reads them); their successes are the issued certificates themselves,
/// and the enrollment path stays free of a second write.
pub fn audited(client: &ClientIdentity, failed: bool) -> bool {
    match client {
        ClientIdentity::Station { .. } => true,
        ClientIdentity::BirthCertificate { .. }
        | ClientIdentity::OperationalCertificate { .. }
        | ClientIdentity::EnrollmentSecret { .. } => failed,
        ClientIdentity::Administrator { .. } | ClientIdentity::Account { .. } => false,
    }
}

/// Writes the audit event of a request (call it when [`audited`] says so). A failure to
/// append is logged, never shown to the client.
pub async fn audit_request(
    audit: &dyn AuditLog,
    at: OffsetDateTime,
    client: &ClientIdentity,
    operation: Operation,
    server_keygen: bool,
    result: AuditedResult<'_>,
) {
    // A refused device is named by its client certificate; a refused station request
    // names no device (the CSR may not have been read).
    let device = match client {
        ClientIdentity::BirthCertificate { certificate, .. }
        | ClientIdentity::OperationalCertificate { certificate } => {
            certificate.device_serial().unwrap_or_default().to_string()
        }
        ClientIdentity::EnrollmentSecret { device_serial, .. } => device_serial.clone(),
        _ => String::new(),
    };
    let (outcome, subject, detail) = match result {
        Ok(enrolled) => (
            outcome_name(enrolled),
            enrolled.device_serial().to_string(),
            detail(enrolled),
        ),
        Err(refusal) => ("refused", device, refusal.to_string()),
    };
    let event = AuditEvent {
        at,
        actor: client.actor(),
        action: action_name(operation, server_keygen).to_string(),
        subject,
        outcome: outcome.to_string(),
        detail,
    };
    if let Err(e) = audit.append(event).await {
        tracing::error!(error = %e, "audit append failed");
    }
}

/// `granted`, or `pending` for a request waiting for approval.
fn outcome_name(enrolled: &Enrolled) -> &'static str {
    match enrolled {
        Enrolled::Issued { .. } => "granted",
        Enrolled::Pending { .. } => "pending",
    }
}

fn detail(enrolled: &Enrolled) -> String {
    match enrolled {
        Enrolled::Issued {
            certificate_serial,
            resent: true,
            ..
        } => format!("approved request, certificate {certificate_serial} sent again"),
        Enrolled::Issued {
            certificate_serial,
            reissue: true,
            ..
        } => format!("re-issue of the birth certificate; certificate {certificate_serial}"),
        Enrolled::Issued {
            certificate_serial, ..
        } => format!("certificate {certificate_serial}"),
        Enrolled::Pending { approval, .. } => format!("waiting for approval (request {approval})"),
    }
}
