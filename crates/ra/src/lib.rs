//! Registration authority: decides whether a request may be issued, and says why.
//!
//! The RA never signs. It takes who is asking (already authenticated by the front end), what
//! they ask for (a verified CSR) and the profile, runs its rules in stages (technical →
//! authentication → identity → eligibility), and returns a [`Decision`] with the result of
//! every rule it ran. The first failing rule denies.

mod binding;
mod cel_names;
mod custom;
mod decision;
mod directory;
mod extensions;
mod identity;
mod rules;
mod serial_scope;
mod station;
mod subject;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use fleetca_pki::{CertificateProfile, CertificateRequest, Clock};
use fleetca_store::{
    DecisionOutcome, InventoryReader, NewDecision, PolicyStore, RuleResult, Standing, StoreError,
};

pub use custom::{check_rule_syntax, compile_rule};
pub use decision::{CheckResult, Decision, Outcome, Stage};
pub use directory::{
    Connector, DeviceDirectory, DirectoryError, DirectoryRecord, OnError, OnUnknown,
};
pub use identity::{ChannelBinding, ClientIdentity, Operation};
pub use serial_scope::{validate_serial_range, whole_serial_pattern};

/// Errors that stop the RA from deciding at all (as opposed to a denial).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RaError {
    /// The inventory could not be read; the request may be retried.
    #[error("inventory unavailable: {0}")]
    Inventory(#[from] StoreError),
    /// A custom rule's CEL expression does not compile.
    #[error("invalid CEL expression: {0}")]
    Expression(String),
    /// The policy refers to something the configuration does not define.
    #[error("policy configuration: {0}")]
    Configuration(String),
}

/// One enrollment or re-enrollment to decide.
#[derive(Debug)]
pub struct EnrollmentRequest<'a> {
    /// simpleenroll or simplereenroll.
    pub operation: Operation,
    /// The EST label, if the request used one.
    pub label: Option<&'a str>,
    /// The profile the label maps to.
    pub profile: &'a CertificateProfile,
    /// Who is asking.
    pub client: &'a ClientIdentity,
    /// The verified CSR.
    pub csr: &'a CertificateRequest,
    /// The TLS session's channel binding, if the connection offers one.
    pub channel_binding: &'a ChannelBinding,
    /// Birth enrollment only: the client asks to re-issue a birth certificate for a device
    /// that has a live one (granted only to a station allowed to, or the administrator).
    pub reissue: bool,
    /// What [`RegistrationAuthority::admit`] read for this client, reused instead of
    /// reading it again; `None` reads it.
    pub admitted: Option<&'a Admitted>,
}

/// The standing admission read for a certificate-authenticated client: the device's and
/// the authenticating certificate's state. `decide` reuses it (one inventory read per
/// request); it may be as old as the request body's upload, which is safe because the
/// recording commit re-checks both (see `NewCertificate::authenticated_by`).
#[derive(Debug, Clone)]
pub struct Admitted {
    device_serial: String,
    certificate_serial: String,
    standing: Box<Standing>,
}

impl Admitted {
    pub(crate) fn new(
        device_serial: String,
        certificate_serial: String,
        standing: Standing,
    ) -> Self {
        Self {
            device_serial,
            certificate_serial,
            standing: Box::new(standing),
        }
    }

    /// The standing, if it was read for this device and certificate.
    pub(crate) fn of(
        &self,
        device_serial: &str,
        certificate_serial: Option<&str>,
    ) -> Option<&Standing> {
        (self.device_serial == device_serial
            && Some(self.certificate_serial.as_str()) == certificate_serial)
            .then_some(self.standing.as_ref())
    }
}

/// Whether a client may ask at all (see [`RegistrationAuthority::admit`]).
#[derive(Debug)]
pub enum Admission {
    /// It may; with the standing read, if it is certificate-authenticated.
    Admitted(Option<Admitted>),
    /// It may not.
    Refused {
        /// The failing rule.
        rule: &'static str,
        /// Why.
        reason: String,
    },
}

/// How a decided request ended, for the decision log.
#[derive(Debug, Clone, Copy)]
pub enum Conclusion<'a> {
    /// This certificate was issued (or, for an already issued request, returned).
    Issued {
        /// Its serial.
        certificate_serial: &'a str,
    },
    /// The certificate is being issued: the entry goes into its recording commit, where
    /// the store fills in its serial (see [`RegistrationAuthority::record_of`]).
    Issuing,
    /// The decision was to issue, but issuance failed (the device was told why).
    Failed,
    /// The decision was to issue, but the recording commit refused: the device or the
    /// authenticating certificate no longer stood by then.
    Refused {
        /// What the commit found.
        reason: &'a str,
    },
    /// Nothing was to be issued (denied, pending, unavailable).
    NotIssued,
}

/// The decision point the EST front end talks to.
#[async_trait]
pub trait RegistrationAuthority: Send + Sync {
    /// Decides one request.
    async fn decide(&self, request: &EnrollmentRequest<'_>) -> Result<Decision, RaError>;

    /// Checks, right after authentication and before the request body is read, that a
    /// certificate-authenticated client may ask at all: its device is not suspended or
    /// decommissioned and its certificate is recorded and neither revoked nor on hold.
    /// `decide` runs the same rules again, on the standing read here if it is passed in
    /// [`EnrollmentRequest::admitted`].
    async fn admit(&self, client: &ClientIdentity) -> Result<Admission, RaError>;

    /// The decision log entry for a decided request, or `None` if nothing is recorded
    /// (a dry run). For an issuance it goes with the certificate into the store's
    /// recording commit (see `NewCertificate::decision`), which also completes the
    /// approval request it fulfils; the store fills in the certificate serial.
    fn record_of(
        &self,
        request: &EnrollmentRequest<'_>,
        decision: &Decision,
        conclusion: Conclusion<'_>,
    ) -> Option<NewDecision>;

    /// Records how a decided request ended that issued nothing new (denied, pending,
    /// unavailable, failed, or an approved request sent again).
    async fn conclude(
        &self,
        request: &EnrollmentRequest<'_>,
        decision: &Decision,
        conclusion: Conclusion<'_>,
    ) -> Result<(), RaError>;
}

/// The built-in policy: the rules every profile gets, plus each profile's configured ones.
#[derive(Clone)]
pub struct Policy {
    inventory: Arc<dyn InventoryReader>,
    records: Arc<dyn PolicyStore>,
    clock: Arc<dyn Clock>,
    programs: Arc<custom::Programs>,
    connectors: Arc<HashMap<String, Connector>>,
    dry_run: bool,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("connectors", &self.connectors.keys().collect::<Vec<_>>())
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// A policy reading device and certificate state from `inventory` and keeping
    /// decisions, approvals and rate counts in `records`.
    pub fn new(
        inventory: Arc<dyn InventoryReader>,
        records: Arc<dyn PolicyStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inventory,
            records,
            clock,
            programs: Arc::default(),
            connectors: Arc::default(),
            dry_run: false,
        }
    }

    /// The external directories profiles may name, by name.
    pub fn with_connectors(mut self, connectors: HashMap<String, Connector>) -> Self {
        self.connectors = Arc::new(connectors);
        self
    }

    /// Evaluates without writing anything (`fleetca policy test`): no approval request is
    /// opened or claimed and `conclude` records nothing.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }
}

#[async_trait]
impl RegistrationAuthority for Policy {
    async fn decide(&self, request: &EnrollmentRequest<'_>) -> Result<Decision, RaError> {
        let env = custom::Env {
            inventory: self.inventory.as_ref(),
            records: self.records.as_ref(),
            programs: &self.programs,
            connectors: &self.connectors,
            dry_run: self.dry_run,
        };
        rules::evaluate(request, &env, self.clock.now()).await
    }

    async fn admit(&self, client: &ClientIdentity) -> Result<Admission, RaError> {
        rules::admit(client, self.inventory.as_ref(), self.clock.now()).await
    }

    fn record_of(
        &self,
        request: &EnrollmentRequest<'_>,
        decision: &Decision,
        conclusion: Conclusion<'_>,
    ) -> Option<NewDecision> {
        if self.dry_run {
            return None;
        }
        let (outcome, rule, reason, approval_id) = match &decision.outcome {
            Outcome::Issue { approval, .. } => (DecisionOutcome::Issued, None, None, *approval),
            Outcome::AlreadyIssued { .. } => (DecisionOutcome::Issued, None, None, None),
            Outcome::Deny { rule, reason } => (
                DecisionOutcome::Denied,
                Some(rule.to_string()),
                Some(reason.clone()),
                None,
            ),
            Outcome::Pending { approval, .. } => (
                DecisionOutcome::Pending,
                Some("manual-approval".to_string()),
                None,
                Some(*approval),
            ),
            Outcome::Unavailable { rule, .. } => (
                DecisionOutcome::Unavailable,
                Some(rule.to_string()),
                None,
                None,
            ),
        };
        let (outcome, rule, reason, certificate_serial) = match conclusion {
            Conclusion::Failed => (
                DecisionOutcome::Unavailable,
                rule,
                Some("issuance failed after the rules passed".to_string()),
                None,
            ),
            Conclusion::Refused { reason } => (
                DecisionOutcome::Denied,
                Some("inventory".to_string()),
                Some(format!("refused when recorded: {reason}")),
                None,
            ),
            Conclusion::Issued { certificate_serial } => {
                (outcome, rule, reason, Some(certificate_serial.to_string()))
            }
            Conclusion::Issuing | Conclusion::NotIssued => (outcome, rule, reason, None),
        };
        Some(NewDecision {
            at: self.clock.now(),
            device_serial: decision.device_serial.clone(),
            client: request.client.describe(),
            operation: request.operation.name().to_string(),
            label: request.label.map(str::to_string),
            profile: request.profile.name.clone(),
            outcome,
            rule,
            reason,
            checks: decision
                .checks
                .iter()
                .map(|c| RuleResult {
                    stage: c.stage.as_str().to_string(),
                    rule: c.rule.to_string(),
                    passed: c.passed,
                    detail: c.detail.clone(),
                })
                .collect(),
            certificate_serial,
            // A failed issuance does not fulfil the approval: the claim lapses and the
            // next poll tries again.
            approval_id: approval_id
                .filter(|_| !matches!(conclusion, Conclusion::Failed | Conclusion::Refused { .. })),
        })
    }

    async fn conclude(
        &self,
        request: &EnrollmentRequest<'_>,
        decision: &Decision,
        conclusion: Conclusion<'_>,
    ) -> Result<(), RaError> {
        let Some(mut record) = self.record_of(request, decision, conclusion) else {
            return Ok(());
        };
        // Completing an approval belongs to the recording commit of its certificate;
        // here the decision only refers to the request.
        if let (
            Outcome::Issue {
                approval: Some(id), ..
            },
            Some(serial),
        ) = (&decision.outcome, &record.certificate_serial)
        {
            self.records
                .complete_approval(*id, serial, record.at)
                .await?;
            record.approval_id = Some(*id);
        }
        self.records.record_decision(record).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
