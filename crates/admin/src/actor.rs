//! Who asked for an operation, as the audit trail names them, with their role and the
//! address they came from.

use std::fmt;
use std::net::IpAddr;

use crate::{AdminError, Permission, Role};

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

/// The actor of an operation, written `kind:name` in the audit trail (`cli:alice`), with the
/// role its credential grants and, over the network, its source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    kind: ActorKind,
    name: String,
    role: Role,
    source: Option<IpAddr>,
}

impl Actor {
    /// An actor of a kind and name with a role.
    pub fn new(kind: ActorKind, name: impl Into<String>, role: Role) -> Self {
        Self {
            kind,
            name: name.into(),
            role,
            source: None,
        }
    }

    /// The same actor, seen coming from `source` (written `from ADDR` in the trail).
    pub fn from_source(mut self, source: IpAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// The OS user running the command line: `USER`, else `LOGNAME`, else `uid<N>`.
    /// The environment is the caller's word, as is any file access to the data
    /// directory: the trail names who ran the command, it does not authenticate them.
    /// Whoever can open the data directory can do anything to it, so the role is admin.
    pub fn cli() -> Self {
        let from_env = ["USER", "LOGNAME"].iter().find_map(|var| {
            std::env::var(var)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty() && v.len() <= 64 && !v.contains(char::is_control))
        });
        let name = from_env.unwrap_or_else(|| format!("uid{}", rustix::process::getuid().as_raw()));
        Self::new(ActorKind::Cli, name, Role::Admin)
    }

    /// How the actor authenticated.
    pub fn kind(&self) -> ActorKind {
        self.kind
    }

    /// The actor's name within its kind.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The role its credential grants.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the request came from, over the network.
    pub fn source(&self) -> Option<IpAddr> {
        self.source
    }

    /// `Ok` if the actor's role holds `permission`, else [`AdminError::Forbidden`] naming
    /// the least role that would.
    pub fn require(&self, permission: Permission) -> Result<(), AdminError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(AdminError::Forbidden {
                role: self.role,
                required: permission.least_role(),
            })
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.prefix(), self.name)
    }
}
