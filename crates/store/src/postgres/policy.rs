//! Decisions, the approval queue and rate-limit counts on PostgreSQL. Opening an approval
//! is one upsert on the partial unique index of open requests, deciding locks the row, and
//! a claim is a conditional update: concurrent polls on any number of nodes open one
//! request and issue it once.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::rows::{opt_time, time_at, unix};
use super::PostgresStore;
use crate::policy::*;
use crate::StoreError;

pub(super) const DECISION_COLUMNS: &str =
    "id, at, device_serial, client, operation, label, profile, \
    outcome, rule, reason, checks, certificate_serial, approval_id";

pub(super) const APPROVAL_COLUMNS: &str =
    "id, request_key, device_serial, label, profile, operation, \
    client, reason, created_at, state, decided_by, decided_at, decision_reason, \
    certificate_serial, polls";

pub(super) fn decision_from_row(r: &Row) -> Result<DecisionRecord, StoreError> {
    let id: i64 = r.try_get(0)?;
    let outcome: String = r.try_get(7)?;
    let checks: String = r.try_get(10)?;
    Ok(DecisionRecord {
        id,
        decision: NewDecision {
            at: time_at(r.try_get(1)?)?,
            device_serial: r.try_get(2)?,
            client: r.try_get(3)?,
            operation: r.try_get(4)?,
            label: r.try_get(5)?,
            profile: r.try_get(6)?,
            outcome: DecisionOutcome::parse(&outcome)
                .ok_or_else(|| StoreError::Corrupt(format!("decision outcome {outcome}")))?,
            rule: r.try_get(8)?,
            reason: r.try_get(9)?,
            checks: serde_json::from_str(&checks)
                .map_err(|e| StoreError::Corrupt(format!("decision {id} checks: {e}")))?,
            certificate_serial: r.try_get(11)?,
            approval_id: r.try_get(12)?,
        },
    })
}

pub(super) fn approval_from_row(r: &Row) -> Result<ApprovalRecord, StoreError> {
    let state: String = r.try_get(9)?;
    let polls: i64 = r.try_get(14)?;
    Ok(ApprovalRecord {
        id: r.try_get(0)?,
        request: NewApproval {
            request_key: r.try_get(1)?,
            device_serial: r.try_get(2)?,
            label: r.try_get(3)?,
            profile: r.try_get(4)?,
            operation: r.try_get(5)?,
            client: r.try_get(6)?,
            reason: r.try_get(7)?,
            created_at: time_at(r.try_get(8)?)?,
        },
        state: ApprovalState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("approval state {state}")))?,
        decided_by: r.try_get(10)?,
        decided_at: opt_time(r.try_get(11)?)?,
        decision_reason: r.try_get(12)?,
        certificate_serial: r.try_get(13)?,
        polls: u32::try_from(polls).unwrap_or(u32::MAX),
    })
}

async fn approval(c: &impl GenericClient, id: i64) -> Result<Option<ApprovalRecord>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1"
        ))
        .await?;
    c.query_opt(&stmt, &[&id])
        .await?
        .map(|r| approval_from_row(&r))
        .transpose()
}

/// Inserts a decision (on a client or inside a transaction); returns its id.
pub(super) async fn insert_decision(
    client: &impl GenericClient,
    d: &NewDecision,
) -> Result<i64, StoreError> {
    let checks = serde_json::to_string(&d.checks)
        .map_err(|e| StoreError::Database(format!("decision checks: {e}")))?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO decisions (at, device_serial, client, operation, label, profile,
               outcome, rule, reason, checks, certificate_serial, approval_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             RETURNING id",
        )
        .await?;
    Ok(client
        .query_one(
            &stmt,
            &[
                &unix(d.at),
                &d.device_serial,
                &d.client,
                &d.operation,
                &d.label,
                &d.profile,
                &d.outcome.as_str(),
                &d.rule,
                &d.reason,
                &checks,
                &d.certificate_serial,
                &d.approval_id,
            ],
        )
        .await?
        .try_get(0)?)
}

/// Marks an approved request issued; refused unless it is approved.
pub(super) async fn complete_approval(
    client: &impl GenericClient,
    id: i64,
    certificate_serial: &str,
    at: i64,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "UPDATE approvals SET state = 'issued', certificate_serial = $2,
               claimed_until = NULL, decided_at = COALESCE(decided_at, $3)
             WHERE id = $1 AND state = 'approved'",
        )
        .await?;
    let n = client
        .execute(&stmt, &[&id, &certificate_serial, &at])
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::Refused(format!(
            "approval request {id} is not approved"
        )))
    }
}

/// Approves or rejects a pending request inside the caller's transaction.
pub(super) async fn decide_approval_in(
    tx: &deadpool_postgres::Transaction<'_>,
    id: i64,
    approve: bool,
    by: &str,
    reason: Option<&str>,
    at: OffsetDateTime,
) -> Result<ApprovalRecord, StoreError> {
    let stmt = tx
        .prepare_cached("SELECT state FROM approvals WHERE id = $1 FOR UPDATE")
        .await?;
    let state: String = tx
        .query_opt(&stmt, &[&id])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("approval request {id}")))?
        .try_get(0)?;
    let current = ApprovalState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("approval state {state}")))?;
    if current != ApprovalState::Pending {
        return Err(StoreError::Refused(format!(
            "approval request {id} is {current}, not pending"
        )));
    }
    let new_state = if approve {
        ApprovalState::Approved
    } else {
        ApprovalState::Rejected
    };
    let stmt = tx
        .prepare_cached(
            "UPDATE approvals SET state = $2, decided_by = $3, decided_at = $4,
                   decision_reason = $5 WHERE id = $1",
        )
        .await?;
    tx.execute(&stmt, &[&id, &new_state.as_str(), &by, &unix(at), &reason])
        .await?;
    let record = approval(tx, id)
        .await?
        .ok_or_else(|| StoreError::Database(format!("approval {id} vanished")))?;
    Ok(record)
}

/// Sets a device's re-enrollment override (in the caller's transaction, if given one).
pub(super) async fn force_reenroll_in(
    c: &impl GenericClient,
    device_serial: &str,
    until: OffsetDateTime,
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached("UPDATE devices SET reenroll_forced_until = $2 WHERE serial_number = $1")
        .await?;
    if c.execute(&stmt, &[&device_serial, &unix(until)]).await? == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("device {device_serial}")))
    }
}

#[async_trait]
impl PolicyStore for PostgresStore {
    async fn record_decision(&self, d: NewDecision) -> Result<i64, StoreError> {
        let client = self.client().await?;
        insert_decision(&client, &d).await
    }

    async fn decisions(
        &self,
        device_serial: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let client = self.client().await?;
        let limit = i64::from(limit);
        let rows = match device_serial {
            Some(device) => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {DECISION_COLUMNS} FROM decisions WHERE device_serial = $1
                         ORDER BY id DESC LIMIT $2"
                    ))
                    .await?;
                client.query(&stmt, &[&device, &limit]).await?
            }
            None => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {DECISION_COLUMNS} FROM decisions ORDER BY id DESC LIMIT $1"
                    ))
                    .await?;
                client.query(&stmt, &[&limit]).await?
            }
        };
        rows.iter().map(decision_from_row).collect()
    }

    async fn open_approval(&self, a: NewApproval) -> Result<ApprovalRecord, StoreError> {
        let client = self.client().await?;
        // One statement: the partial unique index of open requests arbitrates between
        // concurrent first polls (on any node); the loser counts a poll instead.
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO approvals (request_key, device_serial, label, profile, operation,
                   client, reason, created_at, state, polls)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 1)
                 ON CONFLICT (request_key) WHERE state IN ('pending', 'approved')
                 DO UPDATE SET polls = approvals.polls + 1
                 RETURNING {APPROVAL_COLUMNS}"
            ))
            .await?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &a.request_key,
                    &a.device_serial,
                    &a.label,
                    &a.profile,
                    &a.operation,
                    &a.client,
                    &a.reason,
                    &unix(a.created_at),
                ],
            )
            .await?;
        approval_from_row(&row)
    }

    async fn approval_by_key(
        &self,
        request_key: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE request_key = $1
                 ORDER BY id DESC LIMIT 1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&request_key])
            .await?
            .map(|r| approval_from_row(&r))
            .transpose()
    }

    async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>, StoreError> {
        let client = self.client().await?;
        approval(&client, id).await
    }

    async fn approvals(
        &self,
        state: Option<ApprovalState>,
        limit: u32,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let client = self.client().await?;
        let limit = i64::from(limit);
        let rows = match state {
            Some(state) => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE state = $1
                         ORDER BY id LIMIT $2"
                    ))
                    .await?;
                client.query(&stmt, &[&state.as_str(), &limit]).await?
            }
            None => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {APPROVAL_COLUMNS} FROM approvals ORDER BY id LIMIT $1"
                    ))
                    .await?;
                client.query(&stmt, &[&limit]).await?
            }
        };
        rows.iter().map(approval_from_row).collect()
    }

    async fn decide_approval(
        &self,
        id: i64,
        approve: bool,
        by: &str,
        reason: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<ApprovalRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let r = decide_approval_in(&tx, id, approve, by, reason, at).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn claim_approval(
        &self,
        id: i64,
        at: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE approvals SET claimed_until = $3
                 WHERE id = $1 AND state = 'approved'
                   AND (claimed_until IS NULL OR claimed_until <= $2)",
            )
            .await?;
        let n = client
            .execute(&stmt, &[&id, &unix(at), &unix(until)])
            .await?;
        Ok(n == 1)
    }

    async fn complete_approval(
        &self,
        id: i64,
        certificate_serial: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        complete_approval(&client, id, certificate_serial, unix(at)).await
    }

    async fn force_reenroll(
        &self,
        device_serial: &str,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        force_reenroll_in(&client, device_serial, until).await
    }

    async fn reenroll_forced_until(
        &self,
        device_serial: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT reenroll_forced_until FROM devices WHERE serial_number = $1")
            .await?;
        let until: Option<i64> = match client.query_opt(&stmt, &[&device_serial]).await? {
            Some(r) => r.try_get(0)?,
            None => None,
        };
        opt_time(until)
    }
}
