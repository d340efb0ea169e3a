//! Certificates and devices: revoke, suspend, resume, decommission, force-reenroll.

use fleetca_pki::{CertificateSerial, RevocationReason};
use fleetca_store::{Applied, CertificateRecord, LifecycleChange, OperatorChange};
use time::{Duration, OffsetDateTime};

use crate::{Actor, AdminError, AdminStore, Audited, Permission};

pub(crate) fn unexpected(applied: &Applied) -> AdminError {
    AdminError::Store(fleetca_store::StoreError::Database(format!(
        "unexpected result of an operator change: {applied:?}"
    )))
}

/// Whether revoking for `reason` cannot be undone and blocks the device's renewal: the
/// surfaces ask for confirmation first (`--yes` in scripts).
pub fn revocation_needs_confirmation(reason: RevocationReason) -> bool {
    reason == RevocationReason::KeyCompromise
}

/// Revokes one certificate (serial in hex, colons allowed), or puts it on hold with
/// `certificateHold`.
pub async fn revoke_certificate<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    serial: &str,
    reason: RevocationReason,
    comment: Option<&str>,
) -> Result<CertificateRecord, AdminError> {
    let mut audited = Audited {
        actor,
        needs: Permission::Operate,
        action: "cert-revoke",
        subject: serial.to_string(),
        facts: format!("reason {}", reason.name()),
        comment,
    };
    audited.permitted(store).await?;
    let serial = CertificateSerial::from_hex(serial)
        .ok_or_else(|| {
            AdminError::Invalid(format!(
                "'{serial}' is not a certificate serial (hex, up to 20 bytes)"
            ))
        })?
        .to_hex();
    audited.subject = serial.clone();
    let change = OperatorChange::Revoke {
        serial,
        reason: reason.name().to_string(),
    };
    match audited.apply(store, change).await? {
        Applied::Certificate(c) => Ok(c),
        other => Err(unexpected(&other)),
    }
}

async fn lifecycle<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    device: &str,
    change: LifecycleChange,
    comment: Option<&str>,
) -> Result<Vec<String>, AdminError> {
    let (action, facts) = match &change {
        LifecycleChange::Decommission { reason } => {
            ("device-decommission", format!("reason {reason}"))
        }
        LifecycleChange::Suspend => ("device-suspend", String::new()),
        LifecycleChange::Resume => ("device-resume", String::new()),
    };
    let audited = Audited {
        actor,
        needs: Permission::Operate,
        action,
        subject: device.to_string(),
        facts,
        comment,
    };
    let change = OperatorChange::Lifecycle {
        device_serial: device.to_string(),
        change,
    };
    match audited.apply(store, change).await? {
        Applied::Serials(s) => Ok(s),
        other => Err(unexpected(&other)),
    }
}

/// Retires a device for good: revokes every live certificate with `reason`; no later
/// enrollment. Returns the revoked serials.
pub async fn decommission<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    device: &str,
    reason: RevocationReason,
    comment: Option<&str>,
) -> Result<Vec<String>, AdminError> {
    Audited {
        actor,
        needs: Permission::Operate,
        action: "device-decommission",
        subject: device.to_string(),
        facts: format!("reason {}", reason.name()),
        comment,
    }
    .permitted(store)
    .await?;
    if reason == RevocationReason::CertificateHold {
        return Err(AdminError::field(
            "reason",
            "certificateHold is reversible: suspend the device to block it for a while",
        ));
    }
    let change = LifecycleChange::Decommission {
        reason: reason.name().to_string(),
    };
    lifecycle(store, actor, device, change, comment).await
}

/// Blocks a device reversibly: its valid certificates go on hold. Returns their serials.
pub async fn suspend<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    device: &str,
    comment: Option<&str>,
) -> Result<Vec<String>, AdminError> {
    lifecycle(store, actor, device, LifecycleChange::Suspend, comment).await
}

/// Lifts a suspension: held certificates become valid again. Returns their serials.
pub async fn resume<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    device: &str,
    comment: Option<&str>,
) -> Result<Vec<String>, AdminError> {
    lifecycle(store, actor, device, LifecycleChange::Resume, comment).await
}

/// Lets a device re-enroll outside its window (or with its birth certificate again) for
/// `window`; returns until when.
pub async fn force_reenroll<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    device: &str,
    window: Duration,
    comment: Option<&str>,
) -> Result<OffsetDateTime, AdminError> {
    let until = OffsetDateTime::now_utc() + window;
    let audited = Audited {
        actor,
        needs: Permission::Operate,
        action: "device-force-reenroll",
        subject: device.to_string(),
        facts: format!("until {}", crate::rfc3339(until)),
        comment,
    };
    let change = OperatorChange::ForceReenroll {
        device_serial: device.to_string(),
        until,
    };
    audited.apply(store, change).await?;
    Ok(until)
}

/// [`revoke_certificate`] as the API asks for it: `keyCompromise` (which cannot be undone
/// and blocks the device's renewal) needs `confirmed`.
pub async fn revoke_certificate_confirmed<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    serial: &str,
    reason: RevocationReason,
    comment: Option<&str>,
    confirmed: bool,
) -> Result<CertificateRecord, AdminError> {
    if revocation_needs_confirmation(reason) && !confirmed {
        Audited {
            actor,
            needs: Permission::Operate,
            action: "cert-revoke",
            subject: serial.to_string(),
            facts: format!("reason {}", reason.name()),
            comment,
        }
        .permitted(store)
        .await?;
        return Err(AdminError::field(
            "confirm",
            "keyCompromise cannot be undone and blocks the device's renewal until an operator \
             lets it re-enroll: send \"confirm\": true",
        ));
    }
    revoke_certificate(store, actor, serial, reason, comment).await
}
