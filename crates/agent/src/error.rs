use std::path::PathBuf;

/// Everything the agent can fail at. Network and server answers that the renewal state
/// machine handles (503, 403, 202, ...) are not errors: they are
/// [`Outcome`](crate::Outcome)s.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration file is missing, malformed or inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A key or certificate on disk is unusable (malformed, or a key that does not match
    /// its certificate).
    #[error("identity: {0}")]
    Identity(String),
    /// The trust anchor is missing, or a bootstrap/roll-over could not be verified.
    #[error("trust anchor: {0}")]
    Trust(String),
    /// Connecting, TLS or HTTP failed before an answer arrived.
    #[error("EST transport: {0}")]
    Transport(String),
    /// The server answered something that is not a valid EST response.
    #[error("EST response: {0}")]
    Protocol(String),
    /// Generating a key or building a CSR failed.
    #[error("key or CSR: {0}")]
    Pki(#[from] fleetca_pki::PkiError),
    /// A post-renewal hook failed or timed out.
    #[error("hook: {0}")]
    Hook(String),
    /// The daemon renewed twice in a short window: something makes every new certificate
    /// due at once. It stops instead of filling the server's inventory.
    #[error("renewal loop: {0}")]
    RenewalLoop(String),
}

impl AgentError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
