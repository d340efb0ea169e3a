//! fleetca monitoring and escalation.
//!
//! * [`ExpiryScan`] streams the inventory's expiry candidates (valid operational
//!   certificates without a successor, of active devices), devices still on their
//!   birth certificate and devices whose requests keep being refused, sorts them into the configured [`Tier`]s, diffs them against the
//!   open escalations, and commits the changes with the digests they cause to the store's
//!   durable outbox, in one transaction.
//! * [`Outbox`] delivers queued digests through their channel (SMTP, webhook), retrying
//!   with exponential back-off until delivered or too old.
//! * [`Metrics`] holds the Prometheus metrics and serves `GET /metrics`.
//!
//! The monitor never issues or revokes anything; it only reads the inventory and writes
//! its own escalation and outbox rows.

mod channel;
pub mod config;
mod digest;
mod error;
pub mod metrics;
mod outbox;
mod scan;
mod template;

pub use channel::{build as build_channel, signature, Channel};
pub use config::{
    ChannelSettings, FailingRenewals, MonitorSettings, RawMonitoring, RetrySettings, Secret,
    SmtpSecurity, Tier, TierWindow,
};
pub use digest::{DigestEntry, Event, Refusals};
pub use error::MonitorError;
pub use metrics::Metrics;
pub use outbox::{backoff, DeliveryReport, Outbox};
pub use scan::{ExpiryScan, MonitorBackend, ScanReport};
