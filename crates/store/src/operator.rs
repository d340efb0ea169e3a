//! Operator changes (revocations, device lifecycle, approvals, stations, accounts, trust)
//! applied together with their audit event: one transaction holds both, so the trail never
//! misses a change that happened, nor records one that did not.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::identity::{NewSession, NewToken, NewUser};
use crate::model::{
    AuditEvent, CertificateRecord, LifecycleChange, ManufacturerRecord, NewAccount, NewStation,
    StationStatus,
};
use crate::policy::ApprovalRecord;
use crate::StoreError;

/// A state change an operator asks for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum OperatorChange {
    /// Revoke one certificate (or put it on hold with `certificateHold`).
    Revoke {
        /// Certificate serial (hex).
        serial: String,
        /// RFC 5280 reason name.
        reason: String,
    },
    /// Decommission, suspend or resume a device.
    Lifecycle {
        /// Device serial number.
        device_serial: String,
        /// What to do.
        change: LifecycleChange,
    },
    /// Let a device re-enroll outside its window until a time.
    ForceReenroll {
        /// Device serial number.
        device_serial: String,
        /// End of the override.
        until: OffsetDateTime,
    },
    /// Approve or reject a pending request.
    DecideApproval {
        /// Request id.
        id: i64,
        /// Approve (true) or reject.
        approve: bool,
        /// Who decided (recorded on the request).
        by: String,
        /// Why (shown to the device on rejection).
        reason: Option<String>,
    },
    /// Register a factory station.
    AddStation(NewStation),
    /// Suspend, resume or remove a station.
    StationStatus {
        /// Station name.
        name: String,
        /// New status.
        status: StationStatus,
    },
    /// Set a station's quota (`None`: no quota).
    StationQuota {
        /// Station name.
        name: String,
        /// Most birth certificates the station may obtain in all.
        quota: Option<u64>,
    },
    /// Add an enrollment account.
    AddAccount(NewAccount),
    /// Record (or replace) an imported manufacturer CA's scope.
    SetManufacturer(ManufacturerRecord),
    /// Enable or disable an enrollment account.
    AccountEnabled {
        /// Account name.
        name: String,
        /// Whether it may be used.
        enabled: bool,
    },
    /// Record an API token ([`StoreError::Conflict`] if the name was ever used).
    CreateToken(NewToken),
    /// Revoke an API token (from `at` on it authenticates nothing).
    RevokeToken {
        /// Token name.
        name: String,
    },
    /// Add an operator user ([`StoreError::Conflict`] if the name is in use).
    AddUser(NewUser),
    /// Enable or disable a user; disabling also ends the user's sessions.
    UserEnabled {
        /// User name.
        name: String,
        /// Whether the user may log in.
        enabled: bool,
    },
    /// Change a user's role; the user's sessions end (they were granted under the old one).
    UserRole {
        /// User name.
        name: String,
        /// New role name.
        role: String,
    },
    /// Replace a user's password hash; the user's sessions end.
    UserPassword {
        /// User name.
        name: String,
        /// Argon2id PHC string.
        password_hash: String,
    },
    /// Remove a user and their sessions (the trail keeps what they did).
    RemoveUser {
        /// User name.
        name: String,
    },
    /// A successful login: record the session and the user's last login time.
    Login(NewSession),
    /// End one session (logout).
    Logout {
        /// SHA-256 of the session secret.
        secret_sha256: String,
    },
    /// Record new CA generations (a rollover; the first one also records generation 1).
    /// [`StoreError::Refused`] while a generation of the same CA is pending at `at`,
    /// [`StoreError::Conflict`] for a number that does not follow the recorded ones.
    AddCaGenerations(Vec<crate::CaGeneration>),
    /// Record a one-time CMP shared secret (only its digest) for a device.
    CreateCmpSecret(crate::NewCmpSecret),
    /// Record a SCEP one-time challenge password (its hash) for a device.
    CreateScepChallenge(crate::NewScepChallenge),
}

/// What an applied change produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Applied {
    /// The revoked (or held) certificate.
    Certificate(CertificateRecord),
    /// Serials of the certificates whose status changed.
    Serials(Vec<String>),
    /// The decided request.
    Approval(ApprovalRecord),
    /// Nothing to report beyond success.
    Done,
}

/// Applies operator changes with their audit event.
#[async_trait]
pub trait OperatorLog: Send + Sync {
    /// Applies `change` at `at` and appends `event` in one transaction: both or neither.
    /// Errors are those of the change ([`StoreError::NotFound`], [`StoreError::Refused`],
    /// [`StoreError::Conflict`]); nothing is recorded then.
    async fn apply_audited(
        &self,
        change: OperatorChange,
        at: OffsetDateTime,
        event: AuditEvent,
    ) -> Result<Applied, StoreError>;
}

/// Backend-generic tests of [`OperatorLog`]; every backend runs them unchanged.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use crate::conformance::{at, certificate};
    use crate::*;

    fn event(action: &str, subject: &str, detail: &str) -> AuditEvent {
        AuditEvent {
            at: at(100),
            actor: "cli:alice".into(),
            action: action.into(),
            subject: subject.into(),
            outcome: "granted".into(),
            detail: detail.into(),
        }
    }

    pub(crate) async fn operator_changes_are_recorded_with_their_audit_event<S>(store: S)
    where
        S: OperatorLog + CertificateLedger + InventoryReader + AuditLog + StationStore,
    {
        store
            .record_issuance(certificate(
                "0a",
                "SN-1",
                CertificateKind::Operational,
                1000,
            ))
            .await
            .unwrap();
        let applied = store
            .apply_audited(
                OperatorChange::Lifecycle {
                    device_serial: "SN-1".into(),
                    change: LifecycleChange::Suspend,
                },
                at(100),
                event("device-suspend", "SN-1", "reason: ticket 42"),
            )
            .await
            .unwrap();
        assert!(matches!(&applied, Applied::Serials(s) if s == &["0a".to_string()]));
        assert_eq!(
            store.device("SN-1").await.unwrap().unwrap().status,
            DeviceStatus::Suspended
        );
        // A refused change records nothing: neither the change nor its event.
        let refused = store
            .apply_audited(
                OperatorChange::Lifecycle {
                    device_serial: "SN-1".into(),
                    change: LifecycleChange::Suspend,
                },
                at(101),
                event("device-suspend", "SN-1", "again"),
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::Refused(_))),
            "{refused:?}"
        );
        let missing = store
            .apply_audited(
                OperatorChange::Revoke {
                    serial: "ff".into(),
                    reason: "keyCompromise".into(),
                },
                at(102),
                event("cert-revoke", "ff", "nothing"),
            )
            .await;
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );

        let applied = store
            .apply_audited(
                OperatorChange::Revoke {
                    serial: "0A".into(),
                    reason: "keyCompromise".into(),
                },
                at(103),
                event("cert-revoke", "0a", "reason: keyCompromise"),
            )
            .await
            .unwrap();
        assert!(
            matches!(&applied, Applied::Certificate(c) if c.status == CertificateStatus::Revoked)
        );

        store
            .add_station(NewStation {
                name: "line-1".into(),
                serial_pattern: "SN-.*".into(),
                range_from: None,
                range_to: None,
                quota: Some(1),
                valid_days: 30,
                allow_reissue: false,
                credential_serial: "77".into(),
                created_at: at(0),
            })
            .await
            .unwrap();
        store
            .apply_audited(
                OperatorChange::StationQuota {
                    name: "line-1".into(),
                    quota: Some(500),
                },
                at(104),
                event("factory-set-quota", "station:line-1", "quota 500"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.station("line-1").await.unwrap().unwrap().quota,
            Some(500)
        );
        let unknown = store
            .apply_audited(
                OperatorChange::StationQuota {
                    name: "line-9".into(),
                    quota: Some(5),
                },
                at(105),
                event("factory-set-quota", "station:line-9", "quota 5"),
            )
            .await;
        assert!(
            matches!(unknown, Err(StoreError::NotFound(_))),
            "{unknown:?}"
        );

        let events = store.audit_events(Some("cli:alice"), 10).await.unwrap();
        let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
        assert_eq!(
            actions,
            ["factory-set-quota", "cert-revoke", "device-suspend"],
            "newest first, refused changes absent"
        );
        assert_eq!(events.last().unwrap().event.detail, "reason: ticket 42");
        assert_eq!(store.verify_audit_chain().await.unwrap(), Ok(3));
    }
}
