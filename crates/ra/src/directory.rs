//! External device directories: a CMDB, an asset inventory, a file of devices. The RA asks
//! them about the device of a request (the `inventory` rule) and shows what they return to
//! custom rules as `device.<connector name>`.
//!
//! Implementations live in the `fleetca-connectors` crate; the RA sees only this trait, so
//! the rules are tested without any network.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// One device as a directory describes it: field name to JSON value.
pub type DirectoryRecord = serde_json::Map<String, serde_json::Value>;

/// Why a directory could not answer. The text is for the operator (decision log, server
/// log) and may name hosts or status codes; devices never see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DirectoryError(pub String);

/// A source of truth about devices.
#[async_trait]
pub trait DeviceDirectory: Send + Sync {
    /// The device's record, `Ok(None)` if the directory does not know the device, or an
    /// error if the directory could not answer (timeout, server error, unreadable data).
    async fn lookup(&self, device_serial: &str) -> Result<Option<DirectoryRecord>, DirectoryError>;
}

/// What an unknown device means for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnknown {
    /// Deny: the device must be in this directory.
    Deny,
    /// Continue; custom rules see `device.<name> == null`.
    Allow,
}

/// What a failed lookup means for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Fail closed without a final answer: the device is told to retry later (EST `503`
    /// with `Retry-After`), never issued a certificate it might not be allowed.
    Unavailable {
        /// The `Retry-After` the device gets.
        retry_after: Duration,
    },
    /// Fail closed with a denial (`403`): for directories whose outage should stop a
    /// device for good, rarely what an operator wants.
    Deny,
    /// Fail open: continue as if the device were unknown to this directory (custom rules
    /// see `null`). Only for directories that merely enrich the context.
    Skip,
}

/// A directory as a profile uses it: its name, where unknown and failure lead.
#[derive(Clone)]
pub struct Connector {
    /// The configuration name; custom rules see the record as `device.<name>`.
    pub name: String,
    /// The directory.
    pub directory: Arc<dyn DeviceDirectory>,
    /// Unknown devices.
    pub on_unknown: OnUnknown,
    /// Failed lookups.
    pub on_error: OnError,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .field("on_unknown", &self.on_unknown)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}
