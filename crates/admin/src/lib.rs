//! Operator operations: one function per state change an operator can ask for (revoke a
//! certificate, suspend, resume, decommission or force-reenroll a device, approve or reject
//! a request, manage stations, enrollment accounts and trusted manufacturer CAs).
//!
//! Every operator surface (the `fleetca` CLI today, the admin API next) calls these and
//! nothing else for a state change. Each operation takes the [`Actor`] who asked and the
//! operator's comment, and appends the audit event in the same transaction as the change
//! ([`fleetca_store::OperatorLog`]); a refused attempt is audited too, with outcome
//! `refused`. Roles are not checked here yet: whoever may open the data directory may act.

mod actor;
mod device;
mod error;
mod registry;
mod request;

pub use actor::{Actor, ActorKind};
pub use device::{
    decommission, force_reenroll, resume, revocation_needs_confirmation, revoke_certificate,
    suspend,
};
pub use error::AdminError;
pub use registry::{
    add_account, add_station, set_manufacturer, set_station_quota, set_station_status,
    validate_account_name, validate_station_name,
};
pub use request::decide_request;

use fleetca_store::{Applied, AuditEvent, AuditLog, OperatorChange, OperatorLog, StoreError};
use time::OffsetDateTime;

/// A time as the trail writes it (RFC 3339, UTC).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// What every operation needs of the store: the audited change and the trail itself.
pub trait AdminStore: OperatorLog + AuditLog {}
impl<T: OperatorLog + AuditLog + ?Sized> AdminStore for T {}

/// One audited operation: its action name, subject and the facts for the trail.
struct Audited<'a> {
    actor: &'a Actor,
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
        match (self.facts.is_empty(), comment) {
            (true, Some(c)) => format!("comment: {c}"),
            (true, None) => "no comment".to_string(),
            (false, Some(c)) => format!("{}; comment: {c}", self.facts),
            (false, None) => self.facts.clone(),
        }
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

    /// Applies the change with its `granted` event; on a refusal (unknown subject, a change
    /// that does not apply, a name in use) appends a `refused` event with the cause.
    async fn apply<S: AdminStore + ?Sized>(
        self,
        store: &S,
        change: OperatorChange,
    ) -> Result<Applied, AdminError> {
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
