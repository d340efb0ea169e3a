//! Who asked for an operation, as the audit trail names them.

use std::fmt;

/// How the actor authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActorKind {
    /// The `fleetca` command line on a CA host (the OS user).
    Cli,
    /// An operator user of the admin API or console.
    User,
    /// An API token.
    Token,
}

impl ActorKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::User => "user",
            Self::Token => "token",
        }
    }
}

/// The actor of an operation, written `kind:name` in the audit trail (`cli:alice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    kind: ActorKind,
    name: String,
}

impl Actor {
    /// An actor of a kind and name.
    pub fn new(kind: ActorKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }

    /// The OS user running the command line: `USER`, else `LOGNAME`, else `uid<N>`.
    /// The environment is the caller's word, as is any file access to the data
    /// directory: the trail names who ran the command, it does not authenticate them.
    pub fn cli() -> Self {
        let from_env = ["USER", "LOGNAME"].iter().find_map(|var| {
            std::env::var(var)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty() && v.len() <= 64 && !v.contains(char::is_control))
        });
        let name = from_env.unwrap_or_else(|| format!("uid{}", rustix::process::getuid().as_raw()));
        Self::new(ActorKind::Cli, name)
    }

    /// How the actor authenticated.
    pub fn kind(&self) -> ActorKind {
        self.kind
    }

    /// The actor's name within its kind.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.prefix(), self.name)
    }
}
