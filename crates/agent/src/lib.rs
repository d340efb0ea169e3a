//! The fleetca device agent: EST enrollment and automatic renewal on the device.
//!
//! - [`Machine`]: the sans-IO renewal state machine (when to enroll, renew, wait, back
//!   off), driven with an injected clock;
//! - [`EstClient`]: `cacerts`, `simpleenroll`, `simplereenroll` over mutual TLS;
//! - [`IdentityStore`]: the key and certificate on disk, swapped atomically, repaired at
//!   start;
//! - [`trust`]: the trust anchors, their bootstrap pinned by fingerprint, CA roll-over;
//! - [`Agent`]: all of it against real files and a real server (`once`, `run`);
//! - [`Config`]: the TOML configuration (`examples/fleetca-agent.toml`).
//!
//! The crate depends on no fleetca server crate; the `fleetca bench fleet` simulator drives
//! many [`Machine`]s with one [`EstClient`] each.

mod agent;
mod config;
mod error;
mod est;
mod hooks;
mod identity;
mod machine;
mod request;
mod serverkeygen;
mod shared_verification;
pub mod status;
pub mod trust;

pub use agent::{renewal_schedule, Agent, OnceResult, Step};
pub use config::{Config, HookSignal, HooksConfig, IdentityConfig, ServerConfig};
pub use error::AgentError;
pub use est::{
    certificates, enroll_answer, retry_after, Credential, Endpoint, EnrollAnswer, EstClient,
    TlsIdentity,
};
pub use fleetca_pki::HumanDuration;
pub use hooks::{run_hooks, HookEnv};
pub use identity::{Identity, IdentityStore, Repair, SwapStep, KEY_MODE};
pub use machine::{
    schedule, Attempt, Decision, Machine, Operation, Outcome, RenewalPolicy, Schedule, Validity,
    View, WaitReason, MIN_RENEW_FRACTION,
};
pub use request::{accept_issued, chain_pem, new_request, validity, NewRequest};
pub use serverkeygen::serverkeygen_parts;
pub use shared_verification::{SharedVerification, REMEMBER_FOR};
