//! The fleetca inventory: devices, every issued certificate, enrollment accounts.
//!
//! Callers see narrow traits ([`CertificateLedger`], [`InventoryReader`],
//! [`AccountStore`]); backends implement all of them. SQLite ([`SqliteStore`]) is the
//! embedded default. The traits speak in domain types and never expose SQL, so a PostgreSQL
//! backend can follow without touching callers.

mod error;
mod model;
mod sqlite;

#[cfg(test)]
mod conformance;

use async_trait::async_trait;

pub use error::StoreError;
pub use model::{
    AccountRecord, CertificateKind, CertificateQuery, CertificateRecord, CertificateStanding,
    CertificateStatus, DeviceRecord, DeviceStatus, NewAccount, NewCertificate, Standing,
};
pub use sqlite::SqliteStore;

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
    /// One device by serial number.
    async fn device(&self, serial_number: &str) -> Result<Option<DeviceRecord>, StoreError>;
}

/// Enrollment accounts (HTTP Basic credentials for EST).
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Adds an account. Fails with [`StoreError::Conflict`] if the name is taken.
    async fn add_account(&self, account: NewAccount) -> Result<(), StoreError>;
    /// One account by name.
    async fn account(&self, name: &str) -> Result<Option<AccountRecord>, StoreError>;
}
