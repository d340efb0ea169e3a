//! Registration authority: decides whether a request may be issued, and says why.
//!
//! The RA never signs. It takes who is asking (already authenticated by the front end), what
//! they ask for (a verified CSR) and the profile, runs its rules in stages (technical →
//! authentication → identity → eligibility), and returns a [`Decision`] with the result of
//! every rule it ran. The first failing rule denies.

mod custom;
mod decision;
mod directory;
mod identity;
mod rules;
mod station;

use std::sync::Arc;

use async_trait::async_trait;
use fleetca_pki::{CertificateProfile, CertificateRequest, Clock};
use fleetca_store::{InventoryReader, StoreError};

pub use custom::compile_rule;
pub use decision::{CheckResult, Decision, Outcome};
pub use directory::{
    Connector, DeviceDirectory, DirectoryError, DirectoryRecord, OnError, OnUnknown,
};
pub use identity::{ChannelBinding, ClientIdentity, Operation};

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
}

/// The decision point the EST front end talks to.
#[async_trait]
pub trait RegistrationAuthority: Send + Sync {
    /// Decides one request.
    async fn decide(&self, request: &EnrollmentRequest<'_>) -> Result<Decision, RaError>;

    /// Checks, right after authentication and before the request body is read, that a
    /// certificate-authenticated client may ask at all: its device is not suspended or
    /// decommissioned and its certificate is recorded and neither revoked nor on hold.
    /// Returns the failing rule and reason. `decide` runs the same rules again.
    async fn admit(
        &self,
        client: &ClientIdentity,
    ) -> Result<Option<(&'static str, String)>, RaError>;
}

/// The built-in policy: the rules every profile gets.
#[derive(Clone)]
pub struct Policy {
    inventory: Arc<dyn InventoryReader>,
    clock: Arc<dyn Clock>,
    programs: Arc<custom::Programs>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").finish_non_exhaustive()
    }
}

impl Policy {
    /// A policy reading device and certificate state from `inventory`.
    pub fn new(inventory: Arc<dyn InventoryReader>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inventory,
            clock,
            programs: Arc::default(),
        }
    }
}

#[async_trait]
impl RegistrationAuthority for Policy {
    async fn decide(&self, request: &EnrollmentRequest<'_>) -> Result<Decision, RaError> {
        rules::evaluate(
            request,
            self.inventory.as_ref(),
            self.clock.now(),
            &self.programs,
        )
        .await
    }

    async fn admit(
        &self,
        client: &ClientIdentity,
    ) -> Result<Option<(&'static str, String)>, RaError> {
        rules::admit(client, self.inventory.as_ref(), self.clock.now()).await
    }
}

#[cfg(test)]
mod tests;
