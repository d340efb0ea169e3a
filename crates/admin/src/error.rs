//! The one error type of the operations.

use std::time::Duration;

use fleetca_store::StoreError;

use crate::Role;

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The input is malformed (a name, a serial, a pattern).
    #[error("{0}")]
    Invalid(String),
    /// One field of the input is malformed: `field` is its name in the request (`quota`,
    /// `confirm`), for the API's JSON pointer.
    #[error("{detail}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The subject does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The change does not apply in the subject's current state.
    #[error("{0}")]
    Refused(String),
    /// A name is already in use.
    #[error("{0} already exists")]
    Conflict(String),
    /// The caller's role does not allow the operation.
    #[error("the role {role} may not do this; it needs the role {required}")]
    Forbidden {
        /// The caller's role.
        role: Role,
        /// The least role that would do.
        required: Role,
    },
    /// No credential, or one that authenticates nobody (unknown, expired, revoked, a
    /// disabled user, a wrong password). The detail is for the caller: it never says
    /// which of those it was for a login.
    #[error("{0}")]
    Unauthenticated(String),
    /// Too many failed authentications from this source: try again after the duration.
    #[error("too many failed authentications from this address; retry in {} s", retry_after.as_secs())]
    RateLimited {
        /// When the source may try again.
        retry_after: Duration,
    },
    /// Something the server needs is not set up (e.g. the registration CA to issue a
    /// station credential); the text says what to do.
    #[error("{0}")]
    Unavailable(String),
    /// The inventory failed.
    #[error(transparent)]
    Store(StoreError),
    /// An internal step failed (hashing, certificate encoding); never the caller's fault.
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    /// An [`AdminError::InvalidField`].
    pub fn field(field: &'static str, detail: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Refused(why) => Self::Refused(why),
            StoreError::Conflict(what) => Self::Conflict(what),
            other => Self::Store(other),
        }
    }
}
