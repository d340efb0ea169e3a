//! Configuration errors. Lookup errors are `fleetca_ra::DirectoryError` (operator text).

use std::path::PathBuf;

/// Why a connector configuration cannot be built. Each names the connector and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value that cannot work.
    #[error("connector '{connector}': {field}: {reason}")]
    Invalid {
        /// The connector's name.
        connector: String,
        /// The configuration key.
        field: &'static str,
        /// What is wrong, for the operator.
        reason: String,
    },
    /// A file named by a field cannot be read.
    #[error("connector '{connector}': {field}: cannot read {}: {source}", path.display())]
    Unreadable {
        /// The connector's name.
        connector: String,
        /// The configuration key.
        field: &'static str,
        /// The resolved path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl ConfigError {
    pub(crate) fn invalid(connector: &str, field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            connector: connector.to_owned(),
            field,
            reason: reason.into(),
        }
    }
}
