//! Group commit for the issuance hot path, as the SQLite writer does it in-process.
//!
//! Every operational issuance without a birth to charge, an approval to complete or a CMP
//! transaction is recorded here. Committed one by one, each pays its own WAL flush:
//! measured at ~1.6 commits per `fdatasync` at 16 concurrent enrollments, with the flush
//! the largest kernel cost of the database. Here concurrent issuances queue; one spawned
//! drainer at a time takes up to [`MAX_BATCH`] of them and runs them pipelined in one
//! transaction, so they share one commit. Every caller gets its own answer only after that
//! commit: nothing is returned that is not durable.
//!
//! A batch runs in two pipelined phases, then one `COMMIT`:
//!
//! 1. **Lock.** One statement per issuance, in device serial order. An issuance with no
//!    limit and no binding is recorded whole by one statement
//!    ([`super::RECORD_OPERATIONAL`] or [`super::RECORD_OPERATIONAL_DECIDED`]). One with
//!    limits or a binding only locks its device row ([`LOCK_DEVICE`]: an upsert whose
//!    update never happens, which still locks the row), or creates the row if the device
//!    is new, exactly as the standalone path's upsert would.
//! 2. **Check and write.** One statement per limited or bound issuance
//!    ([`RECORD_CHECKED`], [`RECORD_CHECKED_DECIDED`]). Under READ COMMITTED it takes a new
//!    snapshot, after phase 1 got the device lock: it sees every issuance of the device
//!    committed by whoever held the lock before, and the earlier statements of this batch
//!    (two issuances of one device in a batch count each other). It reads the device's
//!    status and binding, locks the authenticating certificate (`FOR SHARE`, so a
//!    revocation waits for this commit or is seen), counts the limits, and only if all
//!    pass updates the device, inserts the certificate and the decision. It returns what
//!    it read, so the refusal is built in Rust by the same functions as the standalone
//!    path ([`issuance_refusal`], [`binding_refusal`], [`limit_refusal`]), in the same
//!    order; if Rust and SQL disagree, the batch is rolled back and retried alone.
//!
//! Locking without writing in phase 1 is what makes a refusal leave no trace: a refused
//! issuance wrote nothing (no device update, no certificate, no decision), without a
//! SAVEPOINT per issuance (a subtransaction each, and a batch of 64 would overflow the
//! backend's cache of 64 subtransaction ids, which slows every snapshot on the server).
//! The one write phase 1 makes is a new device's row; if that issuance is then refused
//! (only possible with a revoked or unknown authenticating certificate, or a zero limit),
//! the batch is rolled back and retried alone.
//!
//! - **Refusals stay per issuance.** A statement that writes nothing (the device or the
//!   credential no longer stands, a binding or a limit refuses) refuses only its own
//!   issuance, with the standalone path's reason; the others commit.
//! - **Errors are isolated.** If the batch fails as a whole (a duplicate serial, a lost
//!   connection), each of its issuances is retried alone, so only the faulty one fails
//!   (limited and bound ones in a transaction of their own, as births are).
//! - **No deadlock across nodes.** A batch locks device rows in serial-number order (all
//!   in phase 1), so two nodes' batches wait for each other instead of deadlocking.
//! - **No latency for a lone request.** A batch of one statement is a single autocommit
//!   statement, as before; a lone limited or bound issuance costs four round trips
//!   (`BEGIN`, the two phases, `COMMIT`) where its own transaction costs six or seven.
//!
//! The drainer is a spawned task, so a caller that goes away (a client disconnecting) does
//! not abandon the others' batch; if the runtime itself stops, the queued callers get an
//! error and the next caller starts a new drainer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::Either;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{refusal, unix, PostgresStore, Recording};
use crate::model::{binding_refusal, issuance_refusal, limit_refusal};
use crate::StoreError;

/// Most issuances in one transaction.
const MAX_BATCH: usize = 64;

/// Phase 1 of a limited or bound issuance: creates the device as the standalone path's
/// upsert does (`$1` serial, `$2` status, `$3` now, `$4` profile, `$5` birth issuer), or
/// locks its row without changing it (rows an `ON CONFLICT DO UPDATE` does not update
/// for its `WHERE` are locked all the same). Returns a row only if it created the device.
const LOCK_DEVICE: &str = "INSERT INTO devices (serial_number, status, created_at, updated_at,
       profile, birth_issuer)
     VALUES ($1, $2, $3, $3, $4, $5)
     ON CONFLICT (serial_number) DO UPDATE SET updated_at = devices.updated_at WHERE FALSE
     RETURNING 1";

/// Phase 2 of a limited or bound issuance, after its device row is locked: reads the
/// device (`s`), locks the authenticating certificate `$13`, counts the limits, decides
/// (`ok`), and only then updates the device as the standalone upsert does and inserts the
/// certificate (`$1`-`$11`). `$12` the device's status for a manufactured one, `$14`
/// whether phase 1 created the device, `$15` new devices only, `$16` the profiles the
/// binding accepts, `$17` the birth issuer, `$18` most active, `$19` most issued since
/// `$20`. Returns what it read and whether it wrote.
macro_rules! checked_ctes {
    () => {
        "WITH s AS (
       SELECT d.status, COALESCE(d.profile, $4) AS bound,
         COALESCE(d.birth_issuer, $17::TEXT) AS born,
         (SELECT a.status FROM certificates a WHERE a.serial = $13::TEXT FOR SHARE) AS auth,
         CASE WHEN $18::BIGINT IS NULL THEN 0 ELSE (SELECT COUNT(*) FROM certificates
           WHERE device_serial = $2 AND kind = 'operational' AND status = 'valid'
             AND not_after > $11 AND serial IS DISTINCT FROM $10) END AS active,
         CASE WHEN $19::BIGINT IS NULL THEN 0 ELSE (SELECT COUNT(*) FROM certificates
           WHERE device_serial = $2 AND issued_at >= $20::BIGINT) END AS issued
       FROM devices d WHERE d.serial_number = $2),
     ok AS (
       SELECT s.*, COALESCE(s.status NOT IN ('suspended', 'decommissioned')
         AND ($14::BOOLEAN OR (NOT $15::BOOLEAN
           AND ($16::TEXT[] IS NULL OR s.bound = ANY($16::TEXT[]))
           AND ($17::TEXT IS NULL OR s.born = $17::TEXT)))
         AND ($13::TEXT IS NULL OR s.auth = 'valid')
         AND ($18::BIGINT IS NULL OR s.active < $18::BIGINT)
         AND ($19::BIGINT IS NULL OR s.issued < $19::BIGINT), FALSE) AS ok
       FROM s),
     u AS (
       UPDATE devices SET
         status = CASE WHEN status = 'manufactured' THEN $12 ELSE status END,
         updated_at = $11, profile = COALESCE(profile, $4),
         birth_issuer = COALESCE(birth_issuer, $17::TEXT)
       WHERE serial_number = $2 AND EXISTS (SELECT 1 FROM ok WHERE ok.ok)),
     c AS (
       INSERT INTO certificates (serial, device_serial, issuer, profile, kind, not_before,
         not_after, spki_sha256, der, status, replaces, issued_at)
       SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 'valid', $10, $11 FROM ok WHERE ok.ok
       RETURNING serial)"
    };
}

/// What [`checked_ctes`] read, and whether it wrote.
macro_rules! checked_result {
    () => {
        "SELECT status, bound, born, auth, active, issued, ok FROM ok"
    };
}

/// Phase 2 without a decision.
const RECORD_CHECKED: &str = concat!(checked_ctes!(), "\n", checked_result!());

/// Phase 2 with the RA decision that led to it (`$21`-`$30`), inserted with the
/// certificate or not at all.
const RECORD_CHECKED_DECIDED: &str = concat!(
    checked_ctes!(),
    ",
     x AS (
       INSERT INTO decisions (at, device_serial, client, operation, label, profile, outcome,
         rule, reason, checks, certificate_serial)
       SELECT $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, c.serial FROM c)\n",
    checked_result!()
);

/// The checks of a limited or bound issuance, owned for its phase 2 parameters.
struct Checks {
    /// Phase 1 created the device (no binding to check: the device is new).
    created: bool,
    new_device: bool,
    accepts: Option<Vec<String>>,
    max_active: Option<i64>,
    max_issued: Option<i64>,
    since: i64,
}

impl Checks {
    fn new(record: &Recording, created: bool) -> Self {
        let c = &record.c;
        Self {
            created,
            new_device: c.binding.new_device,
            accepts: c.binding.profile.as_ref().map(|p| p.accepts.clone()),
            max_active: c.limits.max_active.map(i64::from),
            max_issued: c.limits.issued_since.map(|(max, _)| i64::from(max)),
            since: c
                .limits
                .issued_since
                .map_or(i64::MAX, |(_, since)| unix(since)),
        }
    }
}

/// What a batch did for one issuance, before the commit.
enum Outcome {
    Written,
    /// Refused by phase 2, with the standalone path's reason.
    Refused(String),
    /// A one-statement issuance that wrote nothing: why is read after the commit.
    Unwritten,
}

/// The queue of issuances waiting for a commit.
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    /// The most issuances one commit has carried.
    largest: AtomicUsize,
    /// Batches that failed and were recorded one by one.
    retried: AtomicUsize,
}

#[derive(Default)]
struct State {
    queue: Vec<Job>,
    /// A drainer task is running (and will see anything queued).
    draining: bool,
}

struct Job {
    record: Recording,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl GroupCommit {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; a poisoned queue is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most issuances one commit has carried so far.
    #[cfg(test)]
    pub(super) fn largest_batch(&self) -> usize {
        self.largest.load(Ordering::Relaxed)
    }

    /// How many batches failed and were recorded one by one so far.
    #[cfg(test)]
    pub(super) fn retried_batches(&self) -> usize {
        self.retried.load(Ordering::Relaxed)
    }
}

/// Resets the queue if a drainer is dropped before it finished (its runtime stopped):
/// queued callers get an error, and the next caller starts a new drainer.
struct Draining {
    group: Arc<GroupCommit>,
    /// Cleared when the drainer found the queue empty and handed over.
    unfinished: bool,
}

impl Drop for Draining {
    fn drop(&mut self) {
        if self.unfinished {
            let mut state = self.group.state();
            state.draining = false;
            state.queue.clear();
        }
    }
}

impl PostgresStore {
    /// Records one hot-path issuance in the next group commit; returns once it is durable
    /// (or refused, or failed).
    pub(super) async fn record_grouped(&self, record: Recording) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self.group.state();
            state.queue.push(Job { record, reply });
            !std::mem::replace(&mut state.draining, true)
        };
        if start {
            tokio::spawn(self.clone().drain());
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Database(
                "the recording was abandoned (the server is stopping); nothing was returned".into(),
            ))
        })
    }

    /// Commits batches until the queue is empty.
    async fn drain(self) {
        let mut guard = Draining {
            group: Arc::clone(&self.group),
            unfinished: true,
        };
        loop {
            let batch: Vec<Job> = {
                let mut state = self.group.state();
                if state.queue.is_empty() {
                    state.draining = false;
                    guard.unfinished = false;
                    return;
                }
                let n = state.queue.len().min(MAX_BATCH);
                state.queue.drain(..n).collect()
            };
            self.commit_batch(batch).await;
        }
    }

    /// Records these issuances as one batch, as if they had queued together (tests of what
    /// a batch does, whatever the timing).
    #[cfg(test)]
    pub(super) async fn record_batch(
        &self,
        certificates: Vec<crate::model::NewCertificate>,
    ) -> Vec<Result<(), StoreError>> {
        let mut answers = Vec::new();
        let mut batch = Vec::new();
        for c in certificates {
            let (reply, answer) = oneshot::channel();
            let record = Recording::new(c).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                record.is_grouped(),
                "{} is not a grouped issuance",
                record.c.serial
            );
            batch.push(Job { record, reply });
            answers.push(answer);
        }
        self.commit_batch(batch).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap_or_else(|e| panic!("{e}")));
        }
        results
    }

    async fn commit_batch(&self, mut batch: Vec<Job>) {
        self.group.largest.fetch_max(batch.len(), Ordering::Relaxed);
        if let [job] = batch.as_slice() {
            if job.record.is_one_statement() {
                for job in batch {
                    let result = self.record_alone(&job.record).await;
                    let _ = job.reply.send(result);
                }
                return;
            }
        }
        batch.sort_by(|a, b| a.record.c.device_serial.cmp(&b.record.c.device_serial));
        match self.execute_batch(&batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let result = match outcome {
                        Outcome::Written => Ok(()),
                        Outcome::Refused(reason) => Err(StoreError::Refused(reason)),
                        Outcome::Unwritten => Err(self.refusal(&job.record).await),
                    };
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, issuances = batch.len(), "group commit failed; recording each alone");
                self.group.retried.fetch_add(1, Ordering::Relaxed);
                for job in batch {
                    let result = self.record_alone(&job.record).await;
                    let _ = job.reply.send(result);
                }
            }
        }
    }

    /// Runs the batch's two phases pipelined in one transaction and commits; what each
    /// issuance got. An error rolls back the whole batch.
    async fn execute_batch(&self, batch: &[Job]) -> Result<Vec<Outcome>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let plain = tx.prepare_cached(super::RECORD_OPERATIONAL).await?;
        let decided = tx.prepare_cached(super::RECORD_OPERATIONAL_DECIDED).await?;
        let checked = batch.iter().any(|j| !j.record.is_one_statement());
        let (lock, record_checked, record_checked_decided) = if checked {
            (
                Some(tx.prepare_cached(LOCK_DEVICE).await?),
                Some(tx.prepare_cached(RECORD_CHECKED).await?),
                Some(tx.prepare_cached(RECORD_CHECKED_DECIDED).await?),
            )
        } else {
            (None, None, None)
        };

        // Phase 1: every device row locked (or created), in serial order; the issuances
        // without limit or binding recorded whole.
        let params: Vec<_> = batch
            .iter()
            .map(|j| {
                if j.record.is_one_statement() {
                    j.record.params()
                } else {
                    lock_params(&j.record)
                }
            })
            .collect();
        let first = batch.iter().zip(&params).map(|(job, params)| {
            let (tx, plain, decided, lock) = (&tx, &plain, &decided, &lock);
            if job.record.is_one_statement() {
                let stmt = if job.record.decided() { decided } else { plain };
                Either::Left(async move {
                    Ok::<_, StoreError>((Some(tx.execute(stmt, params).await?), false))
                })
            } else {
                Either::Right(async move {
                    let lock = lock.as_ref().ok_or_else(unprepared)?;
                    Ok((None, tx.query_opt(lock, params).await?.is_some()))
                })
            }
        });
        let first = futures_util::future::try_join_all(first).await?;

        // Phase 2: the limited and bound issuances checked and written, each in a
        // statement (a snapshot) of its own, after every lock.
        let checks: Vec<Option<Checks>> = batch
            .iter()
            .zip(&first)
            .map(|(job, (_, created))| {
                (!job.record.is_one_statement()).then(|| Checks::new(&job.record, *created))
            })
            .collect();
        let params: Vec<_> = batch
            .iter()
            .zip(&checks)
            .filter_map(|(job, checks)| Some(checked_params(&job.record, checks.as_ref()?)))
            .collect();
        let second = batch
            .iter()
            .filter(|j| !j.record.is_one_statement())
            .zip(&params)
            .map(|(job, params)| {
                let stmt = if job.record.decided() {
                    &record_checked_decided
                } else {
                    &record_checked
                };
                let tx = &tx;
                async move {
                    let stmt = stmt.as_ref().ok_or_else(unprepared)?;
                    Ok::<_, StoreError>(tx.query_one(stmt, params).await?)
                }
            });
        let mut second = futures_util::future::try_join_all(second)
            .await?
            .into_iter();

        let mut outcomes = Vec::with_capacity(batch.len());
        for ((job, (written, _)), checks) in batch.iter().zip(&first).zip(&checks) {
            outcomes.push(match (written, checks) {
                (Some(0), _) => Outcome::Unwritten,
                (Some(_), _) => Outcome::Written,
                (None, Some(checks)) => {
                    let row = second.next().ok_or_else(unprepared)?;
                    match checked_outcome(&job.record, checks.created, &row)? {
                        None => Outcome::Written,
                        // A new device's row is phase 1's write: only a transaction of its
                        // own refuses it without a trace.
                        Some(_) if checks.created => {
                            return Err(StoreError::Database(format!(
                                "the first issuance of device {} was refused in a batch",
                                job.record.c.device_serial
                            )))
                        }
                        Some(reason) => Outcome::Refused(reason),
                    }
                }
                (None, None) => return Err(unprepared()),
            });
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// One issuance alone: one autocommit statement, or (limits, binding) a transaction
    /// of its own.
    async fn record_alone(&self, record: &Recording) -> Result<(), StoreError> {
        if !record.is_one_statement() {
            return self.record_in_transaction(record).await;
        }
        let client = self.client().await?;
        let stmt = if record.decided() {
            client
                .prepare_cached(super::RECORD_OPERATIONAL_DECIDED)
                .await?
        } else {
            client.prepare_cached(super::RECORD_OPERATIONAL).await?
        };
        if client.execute(&stmt, &record.params()).await? == 0 {
            return Err(refusal(&client, &record.c).await);
        }
        Ok(())
    }

    async fn refusal(&self, record: &Recording) -> StoreError {
        match self.client().await {
            Ok(client) => refusal(&client, &record.c).await,
            Err(e) => e,
        }
    }
}

/// A batch's phases went out of step (a statement missing or a result too few): never
/// expected; the batch is retried alone.
fn unprepared() -> StoreError {
    StoreError::Database("group commit: a batch's phases did not match".into())
}

/// The parameters of [`LOCK_DEVICE`].
fn lock_params(record: &Recording) -> Vec<&(dyn ToSql + Sync)> {
    let c = &record.c;
    vec![
        &c.device_serial,
        &record.status,
        &record.now,
        &c.profile,
        &c.binding.birth_issuer,
    ]
}

/// The parameters of [`RECORD_CHECKED`] or [`RECORD_CHECKED_DECIDED`].
fn checked_params<'a>(record: &'a Recording, checks: &'a Checks) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut params = record.params();
    let decision = params.split_off(13);
    params.extend::<[&(dyn ToSql + Sync); 7]>([
        &checks.created,
        &checks.new_device,
        &checks.accepts,
        &record.c.binding.birth_issuer,
        &checks.max_active,
        &checks.max_issued,
        &checks.since,
    ]);
    params.extend(decision);
    params
}

/// The refusal phase 2 found for an issuance (`None`: it was written), built from what the
/// statement read by the standalone path's functions and in its order: the device's status,
/// its binding, the authenticating certificate, the limits. An error if the statement's own
/// decision disagrees (the batch is then retried alone).
fn checked_outcome(
    record: &Recording,
    created: bool,
    row: &Row,
) -> Result<Option<String>, StoreError> {
    let c = &record.c;
    let status: String = row.try_get(0)?;
    let bound: Option<String> = row.try_get(1)?;
    let born: Option<String> = row.try_get(2)?;
    let auth: Option<String> = row.try_get(3)?;
    let count = |i| -> Result<u32, StoreError> {
        Ok(u32::try_from(row.try_get::<_, i64>(i)?).unwrap_or(u32::MAX))
    };
    let (active, issued) = (count(4)?, count(5)?);
    let written: bool = row.try_get(6)?;
    let device = c.device_serial.as_str();
    let found = (!created).then_some((bound.as_deref(), born.as_deref()));
    let reason = issuance_refusal(device, Some(&status), None)
        .or_else(|| binding_refusal(device, &c.binding, found))
        .or_else(|| {
            issuance_refusal(
                device,
                Some(&status),
                c.authenticated_by
                    .as_deref()
                    .map(|serial| (serial, auth.as_deref())),
            )
        })
        .or_else(|| limit_refusal(device, &c.limits, active, issued));
    if reason.is_some() == written {
        return Err(StoreError::Database(format!(
            "group commit: the recording of {} and its checks disagree",
            c.serial
        )));
    }
    Ok(reason)
}
