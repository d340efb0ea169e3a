//! Errors of the monitor.

use fleetca_store::StoreError;

/// What can go wrong while scanning, rendering or delivering.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The monitoring configuration is invalid.
    #[error("monitoring configuration: {0}")]
    Config(String),
    /// A template could not be rendered.
    #[error("template: {0}")]
    Template(String),
    /// The inventory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A notification could not be delivered (retried later).
    #[error("delivery through channel '{channel}' failed: {reason}")]
    Delivery {
        /// Channel name.
        channel: String,
        /// Why (no secrets).
        reason: String,
    },
    /// A queued message names a channel that is no longer configured.
    #[error("channel '{0}' is not configured")]
    UnknownChannel(String),
    /// The metrics listener failed.
    #[error("metrics listener: {0}")]
    Listener(String),
}
