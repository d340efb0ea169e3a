//! sqlite: not implemented yet (interface stub, replaced by the real queries).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::identity::{IdentityStore, SessionRecord, TokenRecord, UserRecord};
use crate::model::{AccountRecord, AuditRecord, CertificateRecord};
use crate::monitoring::AlertRecord;
use crate::policy::ApprovalRecord;
use crate::views::{
    AdminViews, AlertFilter, ApprovalFilter, AuditFilter, CertificateFilter, FleetStats,
};
use crate::StoreError;

fn todo<T>() -> Result<T, StoreError> {
    Err(StoreError::Database("not implemented yet".into()))
}

#[async_trait]
impl AdminViews for SqliteStore {
    async fn certificate_page(
        &self,
        _: &CertificateFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        todo()
    }
    async fn approval_page(&self, _: &ApprovalFilter) -> Result<Vec<ApprovalRecord>, StoreError> {
        todo()
    }
    async fn alert_page(&self, _: &AlertFilter) -> Result<Vec<AlertRecord>, StoreError> {
        todo()
    }
    async fn audit_search(&self, _: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        todo()
    }
    async fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        todo()
    }
    async fn fleet_stats(
        &self,
        _: OffsetDateTime,
        _: u32,
        _: u32,
    ) -> Result<FleetStats, StoreError> {
        todo()
    }
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn token_by_secret(&self, _: &str) -> Result<Option<TokenRecord>, StoreError> {
        todo()
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        todo()
    }
    async fn touch_token(&self, _: &str, _: OffsetDateTime) -> Result<(), StoreError> {
        todo()
    }
    async fn user(&self, _: &str) -> Result<Option<UserRecord>, StoreError> {
        todo()
    }
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        todo()
    }
    async fn session_by_secret(&self, _: &str) -> Result<Option<SessionRecord>, StoreError> {
        todo()
    }
    async fn touch_session(&self, _: &str, _: OffsetDateTime) -> Result<(), StoreError> {
        todo()
    }
    async fn purge_sessions(
        &self,
        _: OffsetDateTime,
        _: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        todo()
    }
}
