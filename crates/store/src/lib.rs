//! The fleetca inventory: devices, every issued certificate, enrollment accounts.
//!
//! Callers see narrow traits ([`CertificateLedger`], [`InventoryReader`],
//! [`AccountStore`], ...); backends implement all of them, which the umbrella trait
//! [`Store`] names. SQLite ([`SqliteStore`]) is the embedded default; PostgreSQL
//! ([`PostgresStore`]) serves any number of fleetca nodes on one database. [`open`] picks
//! the backend from the configured [`Database`]. The traits speak in domain types and never
//! expose SQL.

mod cmp;
mod database;
mod error;
mod fleet;
mod generations;
mod identity;
mod model;
mod monitoring;
mod operator;
mod pages;
mod policy;
mod postgres;
mod revoked;
mod scep;
mod sqlite;
mod views;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod conformance_binding;
#[cfg(test)]
mod conformance_cmp;
#[cfg(test)]
mod conformance_identity;
#[cfg(test)]
mod conformance_races;
#[cfg(test)]
mod conformance_views;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;

pub use cmp::{CmpSecretRecord, CmpStore, CmpTransaction, CmpTransactionState, NewCmpSecret};
pub use database::{open, Database, PostgresUrl};
pub use error::StoreError;
pub use fleet::{DeviceQuery, DeviceSummary, FleetView};
pub use generations::{CaGeneration, CaGenerationStore, LinkCertificates};
pub use identity::{
    IdentityStore, NewSession, NewToken, NewUser, SessionRecord, TokenRecord, UserRecord,
};
pub use model::{
    AccountRecord, AuditEvent, AuditRecord, BirthContext, CertificateKind, CertificateQuery,
    CertificateRecord, CertificateStanding, CertificateStatus, DeviceBinding, DeviceLimits,
    DeviceRecord, DeviceStatus, LifecycleChange, LimitCounts, ManufacturerRecord, NewAccount,
    NewCertificate, NewStation, ProfileBinding, RevokedRecord, Standing, StationRecord,
    StationStatus, StoredCrl,
};
pub use monitoring::{
    AlertRecord, BirthOnlyDevice, DeliveryOutcome, DeliveryState, EscalationChange, EscalationKind,
    EscalationRecord, ExpiryCandidate, FailingDevice, InventorySummary, LeaseStore, MonitorBackend,
    MonitoringStore, NewNotification, OutboxMessage, ScanCommit,
};
pub use operator::{Applied, OperatorChange, OperatorLog};
pub use pages::HistoryPages;
pub use policy::{
    ApprovalRecord, ApprovalState, DecisionOutcome, DecisionRecord, NewApproval, NewDecision,
    PolicyStore, RuleResult,
};
pub use postgres::{describe_url, PostgresStore};
pub use revoked::{RevokedBatch, RevokedEntryRef, RevokedStream};
pub use scep::{NewScepChallenge, ScepStore, ScepTransaction};
pub use sqlite::{snapshot as sqlite_snapshot, SqliteStore};
pub use views::{
    AdminViews, AlertFilter, ApprovalFilter, AuditFilter, CertificateFilter, DayActivity,
    FleetStats,
};

/// Every store trait: what a backend implements and what the `fleetca` binary holds
/// (`Arc<dyn Store>`, upcast to the narrow trait each component gets).
pub trait Store:
    CertificateLedger
    + InventoryReader
    + RevocationStore
    + StationStore
    + AuditLog
    + AccountStore
    + MonitoringStore
    + MonitorBackend
    + PolicyStore
    + OperatorLog
    + FleetView
    + HistoryPages
    + AdminViews
    + IdentityStore
    + CaGenerationStore
    + CmpStore
    + ScepStore
    + std::fmt::Debug
{
}

impl<T> Store for T where
    T: CertificateLedger
        + InventoryReader
        + RevocationStore
        + StationStore
        + AuditLog
        + AccountStore
        + MonitoringStore
        + PolicyStore
        + OperatorLog
        + FleetView
        + HistoryPages
        + AdminViews
        + IdentityStore
        + CaGenerationStore
        + CmpStore
        + ScepStore
        + std::fmt::Debug
{
}

/// Records issued certificates. Implementations make the record durable before returning:
/// the caller hands the certificate out only after this succeeds.
#[async_trait]
pub trait CertificateLedger: Send + Sync {
    /// Records a newly issued certificate and registers or updates its device.
    async fn record_issuance(&self, certificate: NewCertificate) -> Result<(), StoreError>;
}

/// Read access to devices and certificates.
#[async_trait]
pub trait InventoryReader: Send + Sync {
    /// One certificate by serial (lower-case hex).
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// Certificates matching a query, soonest expiry first.
    async fn certificates(
        &self,
        query: &CertificateQuery,
    ) -> Result<Vec<CertificateRecord>, StoreError>;
    /// The state of a device and, optionally, of one of its certificates: what the RA
    /// checks on every request, in one read.
    async fn standing(
        &self,
        device_serial: &str,
        certificate_serial: Option<&str>,
    ) -> Result<Standing, StoreError>;
    /// One certificate's state without its body (OCSP, status checks).
    async fn certificate_standing(
        &self,
        serial: &str,
    ) -> Result<Option<CertificateStanding>, StoreError>;
    /// One factory station by name.
    async fn station(&self, name: &str) -> Result<Option<StationRecord>, StoreError>;
    /// Whether the device has a valid, unexpired birth certificate at `at`.
    async fn has_live_birth_certificate(
        &self,
        device_serial: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// One device by serial number.
    async fn device(&self, serial_number: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// How many valid operational certificates of the device are unexpired at `at`.
    async fn active_operational_certificates(
        &self,
        device_serial: &str,
        at: OffsetDateTime,
    ) -> Result<u32, StoreError>;
    /// The per-device limit counts at `at`, in one read: valid operational certificates
    /// unexpired at `at`, and certificates issued at or after `issued_since` (0 when
    /// `None`).
    async fn limit_counts(
        &self,
        device_serial: &str,
        at: OffsetDateTime,
        issued_since: Option<OffsetDateTime>,
    ) -> Result<LimitCounts, StoreError>;
    /// Whether an operational certificate of the device was revoked for keyCompromise and
    /// no operational certificate was issued to it since that revocation.
    async fn key_compromise_pending(&self, device_serial: &str) -> Result<bool, StoreError>;
    /// An imported manufacturer CA's recorded scope, by name.
    async fn manufacturer(&self, name: &str) -> Result<Option<ManufacturerRecord>, StoreError>;
}

/// Revocation and device lifecycle, and what CRL and OCSP publishers read.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Revokes one certificate (or puts it on hold with reason `certificateHold`).
    /// [`StoreError::NotFound`] if unknown, [`StoreError::Refused`] if already revoked
    /// (a certificate on hold can still be revoked for good).
    async fn revoke(
        &self,
        serial: &str,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<CertificateRecord, StoreError>;
    /// Applies a lifecycle change to a device and its certificates in one transaction;
    /// returns the serials whose status changed. [`StoreError::NotFound`] for an unknown
    /// device, [`StoreError::Refused`] if the change does not apply (resume of a device
    /// that is not suspended, anything on a decommissioned device).
    async fn change_lifecycle(
        &self,
        device_serial: &str,
        change: LifecycleChange,
        at: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError>;
    /// Revokes, as superseded, valid operational certificates renewed before `renewed_before`.
    async fn revoke_superseded(
        &self,
        renewed_before: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError>;
    /// Revoked and held certificates of a CA that have not expired at `at` (CRL entries),
    /// in serial order.
    async fn revoked(
        &self,
        issuer: &str,
        at: OffsetDateTime,
    ) -> Result<Vec<RevokedRecord>, StoreError> {
        self.revoked_stream(issuer, at)
            .await?
            .collect_records()
            .await
    }
    /// The same entries as [`RevocationStore::revoked`], read on another thread (or task)
    /// and handed over in batches as they are read: what the CRL builder uses.
    async fn revoked_stream(
        &self,
        issuer: &str,
        at: OffsetDateTime,
    ) -> Result<RevokedStream, StoreError>;
    /// A counter bumped by every status change.
    async fn status_revision(&self) -> Result<i64, StoreError>;
    /// Allocates the next CRL number of a CA (1, 2, ...; never reused, even across restarts).
    async fn allocate_crl_number(&self, issuer: &str) -> Result<u64, StoreError>;
    /// Records the CRL issued with `number`, unless a higher-numbered one is recorded.
    /// `der` is shared, not copied: a CRL of a million entries is 43 MB.
    async fn store_crl(
        &self,
        issuer: &str,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        der: Bytes,
    ) -> Result<(), StoreError>;
    /// The recorded CRL of a CA if its number is above `newer_than` (0: any).
    async fn stored_crl(
        &self,
        issuer: &str,
        newer_than: u64,
    ) -> Result<Option<StoredCrl>, StoreError>;
}

/// Factory stations (registration authorities for birth certificates).
#[async_trait]
pub trait StationStore: Send + Sync {
    /// Adds a station. [`StoreError::Conflict`] if the name was ever used.
    async fn add_station(&self, station: NewStation) -> Result<(), StoreError>;
    /// Every station, by name.
    async fn stations(&self) -> Result<Vec<StationRecord>, StoreError>;
    /// Records (or replaces) an imported manufacturer CA's scope.
    async fn set_manufacturer(&self, manufacturer: ManufacturerRecord) -> Result<(), StoreError>;
    /// Suspends, resumes or removes a station. Removal is final.
    async fn set_station_status(
        &self,
        name: &str,
        status: StationStatus,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
}

/// The hash-chained audit trail.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an event, chained to the previous one.
    async fn append(&self, event: AuditEvent) -> Result<(), StoreError>;
    /// The newest events (optionally of one actor), newest first.
    async fn audit_events(
        &self,
        actor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// Recomputes the whole chain; returns the number of records, or the id of the first
    /// record whose hash does not match.
    async fn verify_audit_chain(&self) -> Result<Result<u64, i64>, StoreError>;
}

/// Enrollment accounts (HTTP Basic credentials for EST).
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Adds an account. Fails with [`StoreError::Conflict`] if the name is taken.
    async fn add_account(&self, account: NewAccount) -> Result<(), StoreError>;
    /// One account by name.
    async fn account(&self, name: &str) -> Result<Option<AccountRecord>, StoreError>;
}
