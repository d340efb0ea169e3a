//! What the read operations return: the JSON shapes of the admin API (and what the web
//! console renders). Times are RFC 3339 UTC text.

use fleetca_store::{
    AccountRecord, AlertRecord, ApprovalRecord, AuditRecord, CertificateRecord, DecisionRecord,
    DeviceSummary, StationRecord,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::rfc3339;

/// A device.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceView {
    /// Serial number (the identity).
    pub serial_number: String,
    /// `manufactured`, `active`, `suspended` or `decommissioned`.
    pub status: String,
    /// Profile of its first operational enrollment.
    pub profile: Option<String>,
    /// CA of its birth certificate.
    pub birth_issuer: Option<String>,
    /// Factory station that obtained its birth certificate.
    pub station: Option<String>,
    /// Model recorded at provisioning.
    pub model: Option<String>,
    /// Batch recorded at provisioning.
    pub batch: Option<String>,
    /// First seen.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl From<DeviceSummary> for DeviceView {
    fn from(d: DeviceSummary) -> Self {
        Self {
            serial_number: d.serial_number,
            status: d.status.to_string(),
            profile: d.profile,
            birth_issuer: d.birth_issuer,
            station: d.station,
            model: d.model,
            batch: d.batch,
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

/// A certificate (without its body: ask for PEM or DER for that).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CertificateView {
    /// Serial (lower-case hex).
    pub serial: String,
    /// Device serial number.
    pub device: String,
    /// `birth` or `operational`.
    pub kind: String,
    /// Issuing CA (`manufacturing`, `operational`, an imported manufacturer CA).
    pub issuer: String,
    /// Profile.
    pub profile: String,
    /// Start of validity.
    pub not_before: String,
    /// End of validity.
    pub not_after: String,
    /// `valid`, `revoked` or `on-hold` (a valid one may have expired: see `not_after`).
    pub status: String,
    /// When it was issued.
    pub issued_at: String,
    /// When it was revoked or put on hold.
    pub revoked_at: Option<String>,
    /// RFC 5280 reason name.
    pub revocation_reason: Option<String>,
    /// The certificate it renewed.
    pub replaces: Option<String>,
    /// The certificate that renewed it.
    pub replaced_by: Option<String>,
}

impl From<&CertificateRecord> for CertificateView {
    fn from(c: &CertificateRecord) -> Self {
        Self {
            serial: c.serial.clone(),
            device: c.device_serial.clone(),
            kind: c.kind.to_string(),
            issuer: c.issuer.clone(),
            profile: c.profile.clone(),
            not_before: rfc3339(c.not_before),
            not_after: rfc3339(c.not_after),
            status: c.status.to_string(),
            issued_at: rfc3339(c.issued_at),
            revoked_at: c.revoked_at.map(rfc3339),
            revocation_reason: c.revocation_reason.clone(),
            replaces: c.replaces.clone(),
            replaced_by: c.replaced_by.clone(),
        }
    }
}

/// The result of one rule in a decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleResultView {
    /// technical, authentication, identity, eligibility or approval.
    pub stage: String,
    /// Rule name.
    pub rule: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    pub detail: String,
}

/// A decision of the registration authority, with every rule's result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionView {
    /// Id.
    pub id: i64,
    /// When.
    pub at: String,
    /// Device serial number, when known.
    pub device: Option<String>,
    /// Who asked.
    pub client: String,
    /// simpleenroll, simplereenroll, ...
    pub operation: String,
    /// EST label.
    pub label: Option<String>,
    /// Profile.
    pub profile: String,
    /// `issued`, `denied`, `pending` or `unavailable`.
    pub outcome: String,
    /// The deciding rule.
    pub rule: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Every rule's result.
    pub checks: Vec<RuleResultView>,
    /// The issued certificate.
    pub certificate_serial: Option<String>,
    /// The approval request it opened or used.
    pub approval_id: Option<i64>,
}

impl From<DecisionRecord> for DecisionView {
    fn from(r: DecisionRecord) -> Self {
        let d = r.decision;
        Self {
            id: r.id,
            at: rfc3339(d.at),
            device: d.device_serial,
            client: d.client,
            operation: d.operation,
            label: d.label,
            profile: d.profile,
            outcome: d.outcome.as_str().to_string(),
            rule: d.rule,
            reason: d.reason,
            checks: d
                .checks
                .into_iter()
                .map(|c| RuleResultView {
                    stage: c.stage,
                    rule: c.rule,
                    passed: c.passed,
                    detail: c.detail,
                })
                .collect(),
            certificate_serial: d.certificate_serial,
            approval_id: d.approval_id,
        }
    }
}

/// A request waiting for (or decided by) an operator.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalView {
    /// Id to approve or reject by.
    pub id: i64,
    /// Device serial number.
    pub device: String,
    /// EST label.
    pub label: Option<String>,
    /// Profile.
    pub profile: String,
    /// simpleenroll or simplereenroll.
    pub operation: String,
    /// Who asked.
    pub client: String,
    /// Why approval is needed.
    pub reason: String,
    /// When the request first arrived.
    pub created_at: String,
    /// `pending`, `approved`, `rejected` or `issued`.
    pub state: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<String>,
    /// The operator's reason.
    pub decision_reason: Option<String>,
    /// The certificate issued after approval.
    pub certificate_serial: Option<String>,
    /// How many times the device polled.
    pub polls: u32,
}

impl From<ApprovalRecord> for ApprovalView {
    fn from(a: ApprovalRecord) -> Self {
        Self {
            id: a.id,
            device: a.request.device_serial,
            label: a.request.label,
            profile: a.request.profile,
            operation: a.request.operation,
            client: a.request.client,
            reason: a.request.reason,
            created_at: rfc3339(a.request.created_at),
            state: a.state.as_str().to_string(),
            decided_by: a.decided_by,
            decided_at: a.decided_at.map(rfc3339),
            decision_reason: a.decision_reason,
            certificate_serial: a.certificate_serial,
            polls: a.polls,
        }
    }
}

/// A factory station with its quota use.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StationView {
    /// Name (the credential's CN).
    pub name: String,
    /// `active`, `suspended` or `removed`.
    pub status: String,
    /// Regular expression the serials must match.
    pub serial_pattern: String,
    /// `FROM..TO`, if set.
    pub serial_range: Option<String>,
    /// Most birth certificates in all (`null`: no quota).
    pub quota: Option<u64>,
    /// Birth certificates obtained.
    pub issued: u64,
    /// Left under the quota.
    pub remaining: Option<u64>,
    /// Validity of its credential, in days.
    pub valid_days: u32,
    /// Whether it may obtain a second birth certificate for a serial.
    pub allow_reissue: bool,
    /// Serial of its credential.
    pub credential_serial: String,
    /// Registered.
    pub created_at: String,
}

impl From<StationRecord> for StationView {
    fn from(s: StationRecord) -> Self {
        let serial_range = match (&s.range_from, &s.range_to) {
            (Some(f), Some(t)) => Some(format!("{f}..{t}")),
            _ => None,
        };
        Self {
            remaining: s.quota.map(|q| q.saturating_sub(s.issued)),
            name: s.name,
            status: s.status.to_string(),
            serial_pattern: s.serial_pattern,
            serial_range,
            quota: s.quota,
            issued: s.issued,
            valid_days: s.valid_days,
            allow_reissue: s.allow_reissue,
            credential_serial: s.credential_serial,
            created_at: rfc3339(s.created_at),
        }
    }
}

/// An EST enrollment account (never its password hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountView {
    /// HTTP Basic user name.
    pub name: String,
    /// EST label it is limited to.
    pub label: Option<String>,
    /// Regular expression the serials must match.
    pub serial_pattern: Option<String>,
    /// Whether any serial goes.
    pub any_serial: bool,
    /// Whether devices the inventory knows may use it too.
    pub known_devices: bool,
    /// Whether it authenticates.
    pub enabled: bool,
    /// Created.
    pub created_at: String,
}

impl From<AccountRecord> for AccountView {
    fn from(a: AccountRecord) -> Self {
        Self {
            name: a.name,
            label: a.label,
            serial_pattern: a.serial_pattern,
            any_serial: a.any_serial,
            known_devices: a.known_devices,
            enabled: a.enabled,
            created_at: rfc3339(a.created_at),
        }
    }
}

/// An escalation (alert) and the delivery of its notification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertView {
    /// Id.
    pub id: i64,
    /// `expiry`, `birth-only` or `failing-renewals`.
    pub kind: String,
    /// Device serial number.
    pub device: String,
    /// Certificate serial (expiry alerts).
    pub certificate: Option<String>,
    /// Current tier.
    pub tier: String,
    /// Expiry of the certificate (expiry alerts).
    pub not_after: Option<String>,
    /// Opened.
    pub opened_at: String,
    /// Last notified.
    pub notified_at: Option<String>,
    /// `open` or `resolved`.
    pub state: String,
    /// When resolved.
    pub resolved_at: Option<String>,
    /// Why resolved.
    pub resolution: Option<String>,
    /// `pending`, `delivered`, `failed`, or `null` when no channel was notified.
    pub delivery: Option<String>,
}

impl From<AlertRecord> for AlertView {
    fn from(a: AlertRecord) -> Self {
        let e = a.escalation;
        Self {
            id: e.id,
            kind: e.kind.as_str().to_string(),
            device: e.device_serial,
            certificate: Some(e.certificate_serial).filter(|s| !s.is_empty()),
            tier: e.tier,
            not_after: e.not_after.map(rfc3339),
            opened_at: rfc3339(e.opened_at),
            notified_at: e.notified_at.map(rfc3339),
            state: if e.resolved.is_some() {
                "resolved"
            } else {
                "open"
            }
            .into(),
            resolved_at: e.resolved.as_ref().map(|(at, _)| rfc3339(*at)),
            resolution: e.resolved.map(|(_, why)| why),
            delivery: a.delivery.map(|d| d.as_str().to_string()),
        }
    }
}

/// An audit event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditView {
    /// Id (position in the chain).
    pub id: i64,
    /// When.
    pub at: String,
    /// Who (`user:alice`, `token:cmdb-sync`, `cli:root`, `device:SN-1`, `anonymous`).
    pub actor: String,
    /// What (`cert-revoke`, ...).
    pub action: String,
    /// On what.
    pub subject: String,
    /// `granted` or `refused` (and protocol outcomes).
    pub outcome: String,
    /// Details (reason, comment, source address).
    pub detail: String,
    /// Its chain hash.
    pub hash: String,
}

impl From<AuditRecord> for AuditView {
    fn from(r: AuditRecord) -> Self {
        Self {
            id: r.id,
            at: rfc3339(r.event.at),
            actor: r.event.actor,
            action: r.event.action,
            subject: r.event.subject,
            outcome: r.event.outcome,
            detail: r.event.detail,
            hash: r.hash,
        }
    }
}
