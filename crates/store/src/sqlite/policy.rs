//! Decisions, the approval queue and rate-limit counts on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use super::rows::{time_at, unix};
use super::SqliteStore;
use crate::policy::*;
use crate::StoreError;

pub(super) const DECISION_COLUMNS: &str =
    "id, at, device_serial, client, operation, label, profile, \
    outcome, rule, reason, checks, certificate_serial, approval_id";

pub(super) const APPROVAL_COLUMNS: &str =
    "id, request_key, device_serial, label, profile, operation, \
    client, reason, created_at, state, decided_by, decided_at, decision_reason, \
    certificate_serial, polls";

pub(super) fn decision_from_row(
    r: &Row<'_>,
) -> rusqlite::Result<Result<DecisionRecord, StoreError>> {
    let id: i64 = r.get(0)?;
    let at: i64 = r.get(1)?;
    let outcome: String = r.get(7)?;
    let checks: String = r.get(10)?;
    let device_serial = r.get(2)?;
    let client = r.get(3)?;
    let operation = r.get(4)?;
    let label = r.get(5)?;
    let profile = r.get(6)?;
    let rule = r.get(8)?;
    let reason = r.get(9)?;
    let certificate_serial = r.get(11)?;
    let approval_id = r.get(12)?;
    Ok((|| {
        Ok(DecisionRecord {
            id,
            decision: NewDecision {
                at: time_at(at)?,
                device_serial,
                client,
                operation,
                label,
                profile,
                outcome: DecisionOutcome::parse(&outcome)
                    .ok_or_else(|| StoreError::Corrupt(format!("decision outcome {outcome}")))?,
                rule,
                reason,
                checks: serde_json::from_str(&checks)
                    .map_err(|e| StoreError::Corrupt(format!("decision {id} checks: {e}")))?,
                certificate_serial,
                approval_id,
            },
        })
    })())
}

pub(super) fn approval_from_row(
    r: &Row<'_>,
) -> rusqlite::Result<Result<ApprovalRecord, StoreError>> {
    let id: i64 = r.get(0)?;
    let created_at: i64 = r.get(8)?;
    let state: String = r.get(9)?;
    let decided_at: Option<i64> = r.get(11)?;
    let polls: i64 = r.get(14)?;
    let request = (
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    );
    let decided_by = r.get(10)?;
    let decision_reason = r.get(12)?;
    let certificate_serial = r.get(13)?;
    Ok((|| {
        let (request_key, device_serial, label, profile, operation, client, reason) = request;
        Ok(ApprovalRecord {
            id,
            request: NewApproval {
                request_key,
                device_serial,
                label,
                profile,
                operation,
                client,
                reason,
                created_at: time_at(created_at)?,
            },
            state: ApprovalState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("approval state {state}")))?,
            decided_by,
            decided_at: decided_at.map(time_at).transpose()?,
            decision_reason,
            certificate_serial,
            polls: u32::try_from(polls).unwrap_or(u32::MAX),
        })
    })())
}

fn approval(conn: &Connection, id: i64) -> Result<Option<ApprovalRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"
    ))?
    .query_row([id], approval_from_row)
    .optional()?
    .transpose()
}

fn approval_by_key(conn: &Connection, key: &str) -> Result<Option<ApprovalRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE request_key = ?1 ORDER BY id DESC LIMIT 1"
    ))?
    .query_row([key], approval_from_row)
    .optional()?
    .transpose()
}

/// The checks of a decision as stored (JSON).
pub(super) fn encoded_checks(d: &NewDecision) -> Result<String, StoreError> {
    serde_json::to_string(&d.checks)
        .map_err(|e| StoreError::Database(format!("decision checks: {e}")))
}

pub(super) fn insert_decision(
    conn: &Connection,
    d: &NewDecision,
    checks: &str,
) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO decisions (at, device_serial, client, operation, label, profile,
           outcome, rule, reason, checks, certificate_serial, approval_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        unix(d.at),
        d.device_serial,
        d.client,
        d.operation,
        d.label,
        d.profile,
        d.outcome.as_str(),
        d.rule,
        d.reason,
        checks,
        d.certificate_serial,
        d.approval_id,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Marks an approved request issued; refused unless it is approved.
pub(super) fn complete_approval(
    conn: &Connection,
    id: i64,
    serial: &str,
    at: i64,
) -> Result<(), StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE approvals SET state = 'issued', certificate_serial = ?2,
               claimed_until = NULL, decided_at = COALESCE(decided_at, ?3)
             WHERE id = ?1 AND state = 'approved'",
        )?
        .execute(params![id, serial, at])?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::Refused(format!(
            "approval request {id} is not approved"
        )))
    }
}

/// Approves or rejects a pending request inside the caller's transaction.
pub(super) fn decide_approval_in(
    conn: &Connection,
    id: i64,
    approve: bool,
    by: &str,
    reason: Option<&str>,
    at: OffsetDateTime,
) -> Result<ApprovalRecord, StoreError> {
    let current = approval(conn, id)?
        .ok_or_else(|| StoreError::NotFound(format!("approval request {id}")))?;
    if current.state != ApprovalState::Pending {
        return Err(StoreError::Refused(format!(
            "approval request {id} is {}, not pending",
            current.state
        )));
    }
    let state = if approve {
        ApprovalState::Approved
    } else {
        ApprovalState::Rejected
    };
    conn.prepare_cached(
        "UPDATE approvals SET state = ?2, decided_by = ?3, decided_at = ?4,
                       decision_reason = ?5 WHERE id = ?1",
    )?
    .execute(params![id, state.as_str(), by, unix(at), reason])?;
    approval(conn, id)?.ok_or_else(|| StoreError::Database(format!("approval {id} vanished")))
}

/// Sets a device's re-enrollment override inside the caller's transaction.
pub(super) fn force_reenroll_in(
    conn: &Connection,
    device: &str,
    until: OffsetDateTime,
) -> Result<(), StoreError> {
    let n = conn
        .prepare_cached("UPDATE devices SET reenroll_forced_until = ?2 WHERE serial_number = ?1")?
        .execute(params![device, unix(until)])?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("device {device}")))
    }
}

#[async_trait]
impl PolicyStore for SqliteStore {
    async fn record_decision(&self, d: NewDecision) -> Result<i64, StoreError> {
        let checks = encoded_checks(&d)?;
        self.inner
            .writer
            .write(move |conn| insert_decision(conn, &d, &checks))
            .await
    }

    async fn decisions(
        &self,
        device_serial: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let device = device_serial.map(str::to_string);
        self.read(move |conn| {
            let mut stmt = match device {
                Some(_) => conn.prepare_cached(&format!(
                    "SELECT {DECISION_COLUMNS} FROM decisions WHERE device_serial = ?1
                     ORDER BY id DESC LIMIT ?2"
                ))?,
                None => conn.prepare_cached(&format!(
                    "SELECT {DECISION_COLUMNS} FROM decisions
                     WHERE ?1 IS NULL ORDER BY id DESC LIMIT ?2"
                ))?,
            };
            let rows = stmt.query_map(params![device, limit], decision_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }

    async fn open_approval(&self, a: NewApproval) -> Result<ApprovalRecord, StoreError> {
        self.inner
            .writer
            .write(move |conn| {
                let open: Option<i64> = conn
                    .prepare_cached(
                        "SELECT id FROM approvals
                         WHERE request_key = ?1 AND state IN ('pending', 'approved')",
                    )?
                    .query_row([&a.request_key], |r| r.get(0))
                    .optional()?;
                let id = match open {
                    Some(id) => {
                        conn.prepare_cached(
                            "UPDATE approvals SET polls = polls + 1 WHERE id = ?1",
                        )?
                        .execute([id])?;
                        id
                    }
                    None => {
                        conn.prepare_cached(
                            "INSERT INTO approvals (request_key, device_serial, label, profile,
                               operation, client, reason, created_at, state, polls)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', 1)",
                        )?
                        .execute(params![
                            a.request_key,
                            a.device_serial,
                            a.label,
                            a.profile,
                            a.operation,
                            a.client,
                            a.reason,
                            unix(a.created_at),
                        ])?;
                        conn.last_insert_rowid()
                    }
                };
                approval(conn, id)?
                    .ok_or_else(|| StoreError::Database(format!("approval {id} vanished")))
            })
            .await
    }

    async fn approval_by_key(
        &self,
        request_key: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        self.read_now(|conn| approval_by_key(conn, request_key))
    }

    async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>, StoreError> {
        self.read_now(|conn| approval(conn, id))
    }

    async fn approvals(
        &self,
        state: Option<ApprovalState>,
        limit: u32,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.read(move |conn| {
            let state = state.map(ApprovalState::as_str);
            let mut stmt = match state {
                Some(_) => conn.prepare_cached(&format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE state = ?1
                     ORDER BY id LIMIT ?2"
                ))?,
                None => conn.prepare_cached(&format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE ?1 IS NULL
                     ORDER BY id LIMIT ?2"
                ))?,
            };
            let rows = stmt.query_map(params![state, limit], approval_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }

    async fn decide_approval(
        &self,
        id: i64,
        approve: bool,
        by: &str,
        reason: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<ApprovalRecord, StoreError> {
        let by = by.to_string();
        let reason = reason.map(str::to_string);
        self.inner
            .writer
            .write(move |conn| decide_approval_in(conn, id, approve, &by, reason.as_deref(), at))
            .await
    }

    async fn claim_approval(
        &self,
        id: i64,
        at: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.inner
            .writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE approvals SET claimed_until = ?3
                         WHERE id = ?1 AND state = 'approved'
                           AND (claimed_until IS NULL OR claimed_until <= ?2)",
                    )?
                    .execute(params![id, unix(at), unix(until)])?;
                Ok(n == 1)
            })
            .await
    }

    async fn complete_approval(
        &self,
        id: i64,
        certificate_serial: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let serial = certificate_serial.to_string();
        self.inner
            .writer
            .write(move |conn| complete_approval(conn, id, &serial, unix(at)))
            .await
    }

    async fn force_reenroll(
        &self,
        device_serial: &str,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let device = device_serial.to_string();
        self.inner
            .writer
            .write(move |conn| force_reenroll_in(conn, &device, until))
            .await
    }

    async fn reenroll_forced_until(
        &self,
        device_serial: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        self.read_now(|conn| {
            let until: Option<Option<i64>> = conn
                .prepare_cached(
                    "SELECT reenroll_forced_until FROM devices WHERE serial_number = ?1",
                )?
                .query_row([device_serial], |r| r.get(0))
                .optional()?;
            until.flatten().map(time_at).transpose()
        })
    }
}
