//! Admission of TCP connections on fleetca's listeners (EST, CRL/OCSP, metrics).
//!
//! One client must not be able to exhaust a listener (issue 13). Before a connection costs
//! anything beyond the accept, [`Admission::admit`] checks, in order:
//!
//! - the listener's cap on open connections (`max_connections`);
//! - a cap on open connections per source (`max_connections_per_source`): an IPv4 address,
//!   or an IPv6 /64 (one subscriber's prefix);
//! - a per-source accept rate (token bucket: `accept_rate_per_source` new connections per
//!   second, bursts up to twice that).
//!
//! A refused connection is closed at once, counted (through [`RefusalObserver`], the
//! `fleetca_connections_refused` metric) and logged at most once per [`WARN_INTERVAL`]
//! with the number of refusals since the last line ([`RefusalLog`]). An admitted connection
//! must then send its first bytes within `first_byte_timeout` ([`Ticket::first_bytes`]).
//!
//! The sources are TCP peers: behind a load balancer that does not preserve them every
//! client shares the balancer's address, and the per-source limits must be off (0) there
//! and enforced by the balancer (README, "Connection limits").

mod admission;
mod limits;
mod linger;
mod refusal_log;
mod stream;

pub use admission::{source_of, Admission, AdmissionLimits, Refusal, RefusalObserver, Ticket};
pub use limits::ConnectionLimits;
pub use linger::linger;
pub use refusal_log::{RefusalLog, WARN_INTERVAL};
pub use stream::{AdmittedListener, AdmittedStream};
