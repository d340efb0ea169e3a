//! Group commit for the issuance hot path, as the SQLite writer does it in-process.
//!
//! An operational issuance is one statement ([`super::RECORD_OPERATIONAL`] or
//! [`super::RECORD_OPERATIONAL_DECIDED`]). Committed one by one, each pays its own WAL
//! flush: measured at ~1.6 commits per `fdatasync` at 16 concurrent enrollments, with the
//! flush the largest kernel cost of the database. Here concurrent issuances queue; one
//! spawned drainer at a time takes up to [`MAX_BATCH`] of them and runs them pipelined in
//! one transaction, so they share one commit. Every caller gets its own answer only after
//! that commit: nothing is returned that is not durable.
//!
//! - **Refusals stay per issuance.** A statement that writes nothing (the device or the
//!   credential no longer stands) refuses only its own issuance; the others commit.
//! - **Errors are isolated.** If the batch fails as a whole (a duplicate serial, a lost
//!   connection), each of its issuances is retried alone, so only the faulty one fails.
//! - **No deadlock across nodes.** A batch locks device rows in serial-number order, so two
//!   nodes' batches wait for each other instead of deadlocking.
//! - **No latency for a lone request.** A batch of one is a single autocommit statement,
//!   as before.
//!
//! The drainer is a spawned task, so a caller that goes away (a client disconnecting) does
//! not abandon the others' batch; if the runtime itself stops, the queued callers get an
//! error and the next caller starts a new drainer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::{refusal, PostgresStore, Recording};
use crate::StoreError;

/// Most issuances in one transaction.
const MAX_BATCH: usize = 64;

/// The queue of issuances waiting for a commit.
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    /// The most issuances one commit has carried.
    largest: AtomicUsize,
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

    async fn commit_batch(&self, mut batch: Vec<Job>) {
        self.group.largest.fetch_max(batch.len(), Ordering::Relaxed);
        if batch.len() == 1 {
            for job in batch {
                let result = self.record_alone(&job.record).await;
                let _ = job.reply.send(result);
            }
            return;
        }
        batch.sort_by(|a, b| a.record.c.device_serial.cmp(&b.record.c.device_serial));
        match self.execute_batch(&batch).await {
            Ok(written) => {
                for (job, written) in batch.into_iter().zip(written) {
                    let result = if written == 0 {
                        Err(self.refusal(&job.record).await)
                    } else {
                        Ok(())
                    };
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, issuances = batch.len(), "group commit failed; recording each alone");
                for job in batch {
                    let result = self.record_alone(&job.record).await;
                    let _ = job.reply.send(result);
                }
            }
        }
    }

    /// Runs the batch's statements pipelined in one transaction; rows written by each.
    async fn execute_batch(&self, batch: &[Job]) -> Result<Vec<u64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let plain = tx.prepare_cached(super::RECORD_OPERATIONAL).await?;
        let decided = tx.prepare_cached(super::RECORD_OPERATIONAL_DECIDED).await?;
        let params: Vec<_> = batch.iter().map(|j| j.record.params()).collect();
        let statements = batch.iter().zip(&params).map(|(job, params)| {
            let stmt = if job.record.decided() {
                &decided
            } else {
                &plain
            };
            tx.execute(stmt, params)
        });
        let written = futures_util::future::try_join_all(statements).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// One issuance, one autocommit statement.
    async fn record_alone(&self, record: &Recording) -> Result<(), StoreError> {
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
