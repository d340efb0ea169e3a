//! `rr` → `rp` (RFC 9483 section 4.2): a device revokes its own certificate, the one that
//! signs the request. Anything else is refused.

use cmpv2::body::PkiBody;
use cmpv2::rev::{RevDetails, RevRepContent};
use cmpv2::status::PkiStatus;
use der::Decode;
use fleetca_est::FrontEndContext;
use fleetca_ra::ClientIdentity;
use fleetca_store::AuditEvent;
use time::OffsetDateTime;

use crate::authenticate::Verified;
use crate::message::{self, Reply};
use crate::{CmpError, CmpFrontEnd};

const REASON_CODE: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.21");
const REASONS: &[&str] = &[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
];

/// Answers an rr.
pub(crate) async fn answer(
    front: &CmpFrontEnd,
    details: &[RevDetails],
    context: &FrontEndContext,
    reply: &Reply,
    verified: &Verified,
    now: OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    let Verified::Signature {
        client: client @ ClientIdentity::OperationalCertificate { certificate },
    } = verified
    else {
        return Err(CmpError::NotAuthorized(
            "rr is signed with the operational certificate to revoke".into(),
        ));
    };
    let [detail] = details else {
        return Err(CmpError::BadRequest("an rr revokes one certificate".into()));
    };
    let own_serial = certificate.serial.to_string();
    let asked = detail.cert_details.serial_number.as_ref().map(|s| {
        hex::encode(s.as_bytes())
            .trim_start_matches("00")
            .to_string()
    });
    if asked.as_deref() != Some(own_serial.trim_start_matches("00")) {
        return Err(CmpError::BadCertId(
            "a device revokes its own certificate only: the one that signs the rr".into(),
        ));
    }
    // Revoked or held certificates and suspended devices are refused as for enrollment.
    let ra = context.ra();
    fleetca_enroll::admit(ra.as_ref(), client)
        .await
        .map_err(CmpError::from)?;
    let reason = detail
        .crl_entry_details
        .as_ref()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == REASON_CODE))
        .map(|e| {
            x509_cert::ext::pkix::CrlReason::from_der(e.extn_value.as_bytes())
                .ok()
                .and_then(|v| REASONS.get(v as usize).copied())
                .ok_or_else(|| CmpError::BadRequest("unsupported revocation reason".into()))
        })
        .transpose()?
        .unwrap_or("unspecified");
    let device = crate::authenticate::device_of(client).unwrap_or_default();
    front
        .store
        .revocation
        .revoke(&own_serial, reason, now)
        .await
        .map_err(|e| match e {
            fleetca_store::StoreError::Refused(m) | fleetca_store::StoreError::NotFound(m) => {
                CmpError::CertRevoked(m)
            }
            other => other.into(),
        })?;
    let event = AuditEvent {
        at: now,
        actor: format!("device:{device}"),
        action: "cmp-revoke".into(),
        subject: format!("certificate:{own_serial}"),
        outcome: "granted".into(),
        detail: format!("revoked by the device over CMP rr, reason {reason}"),
    };
    if let Err(e) = front.store.audit.append(event).await {
        tracing::error!(error = %e, "audit event could not be recorded");
    }
    tracing::info!(device = %device, serial = %own_serial, reason, "certificate revoked by its device (CMP rr)");
    let content = RevRepContent {
        status: vec![message::status_info(PkiStatus::Accepted, None, None)?],
        rev_certs: None,
        crls: None,
    };
    front.protect(
        reply,
        message::any_body(&PkiBody::Rp(content))?,
        Some(verified),
        Vec::new(),
        now,
    )
}
