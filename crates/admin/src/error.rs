//! The one error type of the operations.

use fleetca_store::StoreError;

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The input is malformed (a name, a serial, a pattern).
    #[error("{0}")]
    Invalid(String),
    /// The subject does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The change does not apply in the subject's current state.
    #[error("{0}")]
    Refused(String),
    /// A name is already in use.
    #[error("{0} already exists")]
    Conflict(String),
    /// The inventory failed.
    #[error(transparent)]
    Store(StoreError),
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
