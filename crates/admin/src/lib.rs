//! Operator operations: one function per state change an operator can ask for (revoke a
//! certificate, suspend, resume, decommission or force-reenroll a device, approve or reject
//! a request, manage stations, enrollment accounts and trusted manufacturer CAs).
//!
//! Every operator surface (the `fleetca` CLI today, the admin API next) calls these and
//! nothing else for a state change. Each operation takes the [`Actor`] who asked and the
//! operator's comment, and appends the audit event in the same transaction as the change
//! ([`fleetca_store::OperatorLog`]); a refused attempt is audited too, with outcome
//! `refused`. Every operation checks the actor's [`Role`] first, reads too; a state change
//! refused for the role is audited as well. The command line acts as `admin` (whoever may
//! open the data directory may do anything to it).

mod actor;
mod ca_generations;
mod cmp_secret;
pub mod console;
mod cursor;
mod device;
mod error;
pub mod http;
mod limiter;
mod password_policy;
mod reads;
mod registry;
mod reports;
mod request;
mod role;
mod scep;
mod secret;
mod sessions;
mod station;
mod tokens;
mod users;
mod views;

pub use actor::{Actor, ActorKind};
pub use ca_generations::record_ca_rollover;
pub use cmp_secret::{create_cmp_secret, CreatedCmpSecret};
pub use cursor::{Page, DEFAULT_LIMIT, MAX_LIMIT};
pub use device::{
    decommission, force_reenroll, resume, revocation_needs_confirmation, revoke_certificate,
    revoke_certificate_confirmed, suspend,
};
pub use error::AdminError;
pub use limiter::FailureLimiter;
pub use password_policy::weakness as password_weakness;
pub use reads::{
    approval, certificate, device_detail, list_approvals, list_certificates, list_decisions,
    list_devices, ApprovalDetail, ApprovalListQuery, CertificateListQuery, DecisionListQuery,
    DeviceDetail, DeviceListQuery,
};
pub use registry::{
    add_account, create_account, set_account_enabled, set_manufacturer, set_station_quota,
    set_station_status, validate_account_name, validate_station_name, AccountRequest,
};
pub use reports::{
    audit_search, audit_verify, expiring, expiring_csv, list_accounts, list_alerts, list_stations,
    stats, AlertListQuery, AuditQuery, AuditVerification, CertificateCount, ExpiringDay,
    ExpiringQuery, ExpiringRow, FailingDeviceView, RequestDay, Stats, StatsQuery, TierOf,
};
pub use request::decide_request;
pub use role::{Permission, Role};
pub use scep::{create_scep_challenge, CreatedScepChallenge, MAX_CHALLENGE_LIFETIME};
pub use secret::Secret;
pub use sessions::{
    authenticate, authenticate_secret, login, logout, Authenticated, LoggedIn, SessionSettings,
};
pub use station::{add_station, add_station_from_csr, StationCredential, StationRequest};
pub use tokens::{
    create_token, list_tokens, revoke_token, validate_identity_name, CreatedToken, TokenView,
};
pub use users::{
    add_user, list_users, remove_user, set_user_enabled, set_user_password, set_user_role, UserView,
};
pub use views::{
    AccountView, AlertView, ApprovalView, AuditView, CertificateView, DecisionView, DeviceView,
    RuleResultView, StationView,
};

use fleetca_store::{Applied, AuditEvent, AuditLog, OperatorChange, OperatorLog, StoreError};
use time::OffsetDateTime;

/// A time as the trail writes it (RFC 3339, UTC).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// `detail` with the actor's source address appended (`...; from 192.0.2.7`), if known.
pub(crate) fn with_source(detail: String, actor: &Actor) -> String {
    match actor.source() {
        Some(ip) => format!("{detail}; from {ip}"),
        None => detail,
    }
}

/// What every operation needs of the store: the audited change and the trail itself.
pub trait AdminStore: OperatorLog + AuditLog {}
impl<T: OperatorLog + AuditLog + ?Sized> AdminStore for T {}

/// One audited operation: its action name, subject and the facts for the trail.
struct Audited<'a> {
    actor: &'a Actor,
    /// What the actor's role must allow.
    needs: Permission,
    action: &'static str,
    subject: String,
    /// What was done, beyond the action and subject (e.g. the revocation reason).
    facts: String,
    /// The operator's comment (`--comment`), if any.
    comment: Option<&'a str>,
}

impl Audited<'_> {
    fn detail(&self) -> String {
        let comment = self.comment.map(str::trim).filter(|c| !c.is_empty());
        let detail = match (self.facts.is_empty(), comment) {
            (true, Some(c)) => format!("comment: {c}"),
            (true, None) => "no comment".to_string(),
            (false, Some(c)) => format!("{}; comment: {c}", self.facts),
            (false, None) => self.facts.clone(),
        };
        with_source(detail, self.actor)
    }

    fn event(&self, at: OffsetDateTime, outcome: &str, detail: String) -> AuditEvent {
        AuditEvent {
            at,
            actor: self.actor.to_string(),
            action: self.action.to_string(),
            subject: self.subject.clone(),
            outcome: outcome.to_string(),
            detail,
        }
    }

    /// `Ok` if the actor's role allows the operation; else appends a `refused` event and
    /// returns [`AdminError::Forbidden`]. Operations call it before looking at their input.
    async fn permitted<S: AdminStore + ?Sized>(&self, store: &S) -> Result<(), AdminError> {
        match self.actor.require(self.needs) {
            Ok(()) => Ok(()),
            Err(forbidden) => {
                let detail = format!("{}; {forbidden}", self.detail());
                let event = self.event(OffsetDateTime::now_utc(), "refused", detail);
                store.append(event).await?;
                Err(forbidden)
            }
        }
    }

    /// Applies the change with its `granted` event; on a refusal (unknown subject, a change
    /// that does not apply, a name in use) appends a `refused` event with the cause.
    async fn apply<S: AdminStore + ?Sized>(
        self,
        store: &S,
        change: OperatorChange,
    ) -> Result<Applied, AdminError> {
        self.permitted(store).await?;
        let at = OffsetDateTime::now_utc();
        let granted = self.event(at, "granted", self.detail());
        match store.apply_audited(change, at, granted).await {
            Ok(applied) => Ok(applied),
            Err(
                e @ (StoreError::NotFound(_) | StoreError::Refused(_) | StoreError::Conflict(_)),
            ) => {
                let detail = format!("{}; {e}", self.detail());
                store.append(self.event(at, "refused", detail)).await?;
                Err(AdminError::from(e))
            }
            Err(e) => Err(AdminError::from(e)),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_identity;
