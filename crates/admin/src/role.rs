//! Roles and what each may do.
//!
//! | role | may |
//! |---|---|
//! | `viewer` | read the inventory, certificates, approvals, decisions, stations, alerts, reports, stats |
//! | `auditor` | viewer + read and verify the audit trail |
//! | `operator` | viewer + revoke, suspend, resume, decommission, force re-enrollment, approve and reject requests |
//! | `admin` | everything: stations, enrollment accounts, users, tokens, the audit trail too |

use std::fmt;
use std::str::FromStr;

use crate::AdminError;

/// An operator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the fleet.
    Viewer,
    /// Reads the fleet and the audit trail.
    Auditor,
    /// Reads the fleet and acts on devices, certificates and approval requests.
    Operator,
    /// Everything.
    Admin,
}

/// What an operation needs: the rows of the roles table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Permission {
    /// Inventory, certificates, approvals, decisions, stations, alerts, reports, stats.
    ReadFleet,
    /// The audit trail and its verification.
    ReadAudit,
    /// Device lifecycle, certificate revocation, approval decisions.
    Operate,
    /// Stations, enrollment accounts, users, tokens (reading them too).
    Administer,
}

impl Permission {
    /// The least role that holds the permission.
    pub fn least_role(self) -> Role {
        match self {
            Self::ReadFleet => Role::Viewer,
            Self::ReadAudit => Role::Auditor,
            Self::Operate => Role::Operator,
            Self::Administer => Role::Admin,
        }
    }
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Auditor, Role::Operator, Role::Admin];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// Whether the role holds `permission`. Auditor and operator are side by side: neither
    /// includes the other.
    pub fn allows(self, permission: Permission) -> bool {
        match permission {
            Permission::ReadFleet => true,
            Permission::ReadAudit => matches!(self, Self::Auditor | Self::Admin),
            Permission::Operate => matches!(self, Self::Operator | Self::Admin),
            Permission::Administer => self == Self::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AdminError;
    fn from_str(s: &str) -> Result<Self, AdminError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                AdminError::Invalid(format!(
                    "unknown role '{s}' (viewer, auditor, operator or admin)"
                ))
            })
    }
}

impl<'de> serde::Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
