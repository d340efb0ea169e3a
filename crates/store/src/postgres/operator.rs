//! Operator changes with their audit event, in one PostgreSQL transaction.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use time::OffsetDateTime;

use super::{identity, PostgresStore};
use crate::model::AuditEvent;
use crate::operator::{Applied, OperatorChange, OperatorLog};
use crate::StoreError;

async fn apply(
    tx: &Transaction<'_>,
    change: OperatorChange,
    at: OffsetDateTime,
) -> Result<Applied, StoreError> {
    Ok(match change {
        OperatorChange::Revoke { serial, reason } => {
            Applied::Certificate(super::revocation::revoke_in(tx, &serial, &reason, at).await?)
        }
        OperatorChange::Lifecycle {
            device_serial,
            change,
        } => Applied::Serials(
            super::revocation::change_lifecycle_in(tx, &device_serial, change, at).await?,
        ),
        OperatorChange::ForceReenroll {
            device_serial,
            until,
        } => {
            super::policy::force_reenroll_in(tx, &device_serial, until).await?;
            Applied::Done
        }
        OperatorChange::DecideApproval {
            id,
            approve,
            by,
            reason,
        } => Applied::Approval(
            super::policy::decide_approval_in(tx, id, approve, &by, reason.as_deref(), at).await?,
        ),
        OperatorChange::AddStation(station) => {
            super::factory::add_station_in(tx, &station).await?;
            Applied::Done
        }
        OperatorChange::StationStatus { name, status } => {
            super::factory::set_station_status_in(tx, &name, status, at).await?;
            Applied::Done
        }
        OperatorChange::StationQuota { name, quota } => {
            super::factory::set_station_quota_in(tx, &name, quota, at).await?;
            Applied::Done
        }
        OperatorChange::AddAccount(account) => {
            super::add_account_in(tx, &account).await?;
            Applied::Done
        }
        OperatorChange::SetManufacturer(m) => {
            super::factory::set_manufacturer_in(tx, &m).await?;
            Applied::Done
        }
        OperatorChange::AccountEnabled { name, enabled } => {
            super::set_account_enabled_in(tx, &name, enabled).await?;
            Applied::Done
        }
        OperatorChange::CreateToken(token) => {
            identity::create_token_in(tx, &token).await?;
            Applied::Done
        }
        OperatorChange::RevokeToken { name } => {
            identity::revoke_token_in(tx, &name, at).await?;
            Applied::Done
        }
        OperatorChange::AddUser(user) => {
            identity::add_user_in(tx, &user).await?;
            Applied::Done
        }
        OperatorChange::UserEnabled { name, enabled } => {
            identity::set_user_enabled_in(tx, &name, enabled).await?;
            Applied::Done
        }
        OperatorChange::UserRole { name, role } => {
            identity::set_user_role_in(tx, &name, &role).await?;
            Applied::Done
        }
        OperatorChange::UserPassword {
            name,
            password_hash,
        } => {
            identity::set_user_password_in(tx, &name, &password_hash).await?;
            Applied::Done
        }
        OperatorChange::RemoveUser { name } => {
            identity::remove_user_in(tx, &name).await?;
            Applied::Done
        }
        OperatorChange::Login(session) => {
            identity::login_in(tx, &session, at).await?;
            Applied::Done
        }
        OperatorChange::Logout { secret_sha256 } => {
            identity::logout_in(tx, &secret_sha256).await?;
            Applied::Done
        }
        OperatorChange::AddCaGenerations(generations) => {
            super::generations::add_ca_generations_in(tx, &generations, at).await?;
            Applied::Done
        }
        OperatorChange::CreateCmpSecret(secret) => {
            super::cmp::create_secret_in(tx, &secret).await?;
            Applied::Done
        }
        OperatorChange::CreateScepChallenge(challenge) => {
            super::scep::create_challenge_in(tx, &challenge).await?;
            Applied::Done
        }
    })
}

#[async_trait]
impl OperatorLog for PostgresStore {
    async fn apply_audited(
        &self,
        change: OperatorChange,
        at: OffsetDateTime,
        event: AuditEvent,
    ) -> Result<Applied, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The change first (its row locks), then the audit chain's advisory lock: the
        // same order as every other writer of both, and both commit or neither.
        let applied = apply(&tx, change, at).await?;
        super::factory::append_in(&tx, &event).await?;
        tx.commit().await?;
        Ok(applied)
    }
}
