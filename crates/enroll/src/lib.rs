//! The enrollment pipeline every front end (EST today, CMP and SCEP next) calls: from an
//! authenticated client and a parsed request to a typed outcome. admit → decide → issue and
//! record → conclude (decision log, approvals) → audit. A rule, a limit or an audit event
//! is written here once for every protocol; front ends only translate their wire messages
//! to [`EnrollmentInput`] and [`Enrolled`] / [`EnrollError`] back to their wire format.

mod audit;
mod error;
mod pipeline;

pub use audit::{audit_request, audited, AuditedResult};
pub use error::EnrollError;
pub use pipeline::{action_name, admit, enroll, Enrolled, EnrollmentInput, RequestOptions};

#[cfg(test)]
mod tests;
