//! Operator changes with their audit event, in one SQLite write.

use async_trait::async_trait;
use rusqlite::Connection;
use time::OffsetDateTime;

use super::{identity, SqliteStore};
use crate::model::AuditEvent;
use crate::operator::{Applied, OperatorChange, OperatorLog};
use crate::StoreError;

fn apply(
    conn: &Connection,
    change: OperatorChange,
    at: OffsetDateTime,
) -> Result<Applied, StoreError> {
    Ok(match change {
        OperatorChange::Revoke { serial, reason } => {
            Applied::Certificate(super::revocation::revoke_in(conn, &serial, &reason, at)?)
        }
        OperatorChange::Lifecycle {
            device_serial,
            change,
        } => Applied::Serials(super::revocation::change_lifecycle_in(
            conn,
            &device_serial,
            change,
            at,
        )?),
        OperatorChange::ForceReenroll {
            device_serial,
            until,
        } => {
            super::policy::force_reenroll_in(conn, &device_serial, until)?;
            Applied::Done
        }
        OperatorChange::DecideApproval {
            id,
            approve,
            by,
            reason,
        } => Applied::Approval(super::policy::decide_approval_in(
            conn,
            id,
            approve,
            &by,
            reason.as_deref(),
            at,
        )?),
        OperatorChange::AddStation(station) => {
            super::factory::add_station_in(conn, &station)?;
            Applied::Done
        }
        OperatorChange::StationStatus { name, status } => {
            super::factory::set_station_status_in(conn, &name, status, at)?;
            Applied::Done
        }
        OperatorChange::StationQuota { name, quota } => {
            super::factory::set_station_quota_in(conn, &name, quota, at)?;
            Applied::Done
        }
        OperatorChange::AddAccount(account) => {
            super::add_account_in(conn, &account)?;
            Applied::Done
        }
        OperatorChange::SetManufacturer(m) => {
            super::factory::set_manufacturer_in(conn, &m)?;
            Applied::Done
        }
        OperatorChange::AccountEnabled { name, enabled } => {
            super::set_account_enabled_in(conn, &name, enabled)?;
            Applied::Done
        }
        OperatorChange::CreateToken(token) => {
            identity::create_token_in(conn, &token)?;
            Applied::Done
        }
        OperatorChange::RevokeToken { name } => {
            identity::revoke_token_in(conn, &name, at)?;
            Applied::Done
        }
        OperatorChange::AddUser(user) => {
            identity::add_user_in(conn, &user)?;
            Applied::Done
        }
        OperatorChange::UserEnabled { name, enabled } => {
            identity::set_user_enabled_in(conn, &name, enabled)?;
            Applied::Done
        }
        OperatorChange::UserRole { name, role } => {
            identity::set_user_role_in(conn, &name, &role)?;
            Applied::Done
        }
        OperatorChange::UserPassword {
            name,
            password_hash,
        } => {
            identity::set_user_password_in(conn, &name, &password_hash)?;
            Applied::Done
        }
        OperatorChange::RemoveUser { name } => {
            identity::remove_user_in(conn, &name)?;
            Applied::Done
        }
        OperatorChange::Login(session) => {
            identity::login_in(conn, &session, at)?;
            Applied::Done
        }
        OperatorChange::Logout { secret_sha256 } => {
            identity::logout_in(conn, &secret_sha256)?;
            Applied::Done
        }
        OperatorChange::AddCaGenerations(generations) => {
            super::generations::add_ca_generations_in(conn, &generations, at)?;
            Applied::Done
        }
        OperatorChange::CreateCmpSecret(secret) => {
            super::cmp::create_secret_in(conn, &secret)?;
            Applied::Done
        }
        OperatorChange::CreateScepChallenge(challenge) => {
            super::scep::create_challenge_in(conn, &challenge)?;
            Applied::Done
        }
    })
}

#[async_trait]
impl OperatorLog for SqliteStore {
    async fn apply_audited(
        &self,
        change: OperatorChange,
        at: OffsetDateTime,
        event: AuditEvent,
    ) -> Result<Applied, StoreError> {
        // One writer job runs in its own savepoint: an error in either step undoes both.
        self.inner
            .writer
            .write(move |conn| {
                let applied = apply(conn, change, at)?;
                super::factory::append_in(conn, &event)?;
                Ok(applied)
            })
            .await
    }
}
