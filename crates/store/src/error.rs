/// Errors of the store. They describe what failed without leaking SQL to callers that turn
/// them into HTTP responses (those map every variant to a generic 500/503).
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open the inventory database {path}: {reason}")]
    Open {
        /// Database location.
        path: String,
        /// Why.
        reason: String,
    },
    /// A query or commit failed.
    #[error("inventory database error: {0}")]
    Database(String),
    /// The row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The change does not apply to the row's current state.
    #[error("{0}")]
    Refused(String),
    /// A limit that a rule of its own name also checks before (a station's quota): the
    /// recording commit refuses, under that rule's name, what concurrent requests would
    /// take beyond it.
    #[error("{reason}")]
    Limit {
        /// The rule's name (`station-quota`).
        rule: String,
        /// Why.
        reason: String,
    },
    /// A unique key already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// A stored row cannot be decoded (corruption or a newer schema).
    #[error("inventory row cannot be decoded: {0}")]
    Corrupt(String),
    /// The database was written by a newer fleetca.
    #[error("inventory schema version {found} is newer than this fleetca supports ({supported}); upgrade fleetca")]
    SchemaTooNew {
        /// Version in the database.
        found: i64,
        /// Latest version this build knows.
        supported: i64,
    },
    /// The store's writer has stopped (the process is shutting down).
    #[error("inventory writer is not running")]
    WriterStopped,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(code, msg) = &e {
            if code.code == rusqlite::ErrorCode::ConstraintViolation {
                return Self::Conflict(msg.clone().unwrap_or_else(|| "row".into()));
            }
        }
        Self::Database(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            if *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
                return Self::Conflict(
                    db.constraint()
                        .map(str::to_string)
                        .unwrap_or_else(|| "row".into()),
                );
            }
        }
        // tokio-postgres errors name neither the URL nor credentials; their sources say
        // why (connection refused, authentication failed, ...).
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        Self::Database(text)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Self::Database(format!("no database connection: {other}")),
        }
    }
}
