//! Group commit: one thread owns the write connection. Each write is a closure run inside
//! its own SAVEPOINT; the writer takes every write that is waiting (up to a batch limit),
//! runs them in one transaction and commits once. A caller learns its result only after
//! that COMMIT returned, so "recorded" always means "durable" (synchronous=FULL), while
//! fsyncs are shared between concurrent requests.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::StoreError;

type Completion = Box<dyn FnOnce(&Result<(), StoreError>) + Send>;
/// A write: given the connection inside the group transaction (or `None` when the
/// transaction could not even begin), runs and returns how to report the outcome.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

const MAX_BATCH: usize = 512;

/// Handle to the writer thread. Dropping it stops the thread and waits for it: the batch
/// in hand is committed and the write connection closed before the drop returns, so a
/// store that is gone has no file open (a restore that refuses a snapshot can then remove
/// its staging directory, which a late close would re-fill with `-wal` and `-shm` files).
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn spawn(conn: Connection) -> Result<Self, StoreError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("fleetca-store-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` in the next group transaction and returns its result once committed.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => in_savepoint(conn, f),
                None => Err(StoreError::WriterStopped),
            };
            Box::new(move |commit: &Result<(), StoreError>| {
                let outcome = match commit {
                    Ok(()) => result,
                    Err(e) => Err(e.clone()),
                };
                // The caller may have gone away (client disconnected); nothing to do then.
                let _ = tx.send(outcome);
            })
        });
        self.jobs
            .as_ref()
            .ok_or(StoreError::WriterStopped)?
            .send(job)
            .map_err(|_| StoreError::WriterStopped)?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the batch in hand is committed.
        drop(self.jobs.take());
        join_unless_current(self.thread.take());
    }
}

/// Waits for `thread` to end, unless it is the calling thread (a job whose closure held
/// the last handle to the store drops it on the writer thread itself; that thread ends
/// by itself once the channel is closed).
pub(crate) fn join_unless_current(thread: Option<std::thread::JoinHandle<()>>) {
    if let Some(thread) = thread {
        if thread.thread().id() != std::thread::current().id() {
            // A panic on that thread was already reported by the panic hook.
            let _ = thread.join();
        }
    }
}

/// Runs one statement through the connection's statement cache (no re-parsing per job).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    exec(conn, "SAVEPOINT job")?;
    match f(conn) {
        Ok(r) => {
            exec(conn, "RELEASE job")?;
            Ok(r)
        }
        Err(e) => {
            // Undo only this job; the others in the batch still commit.
            exec(conn, "ROLLBACK TO job")?;
            exec(conn, "RELEASE job")?;
            Err(e)
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            let err = Err(StoreError::from(e));
            tracing::error!(error = ?err, "inventory: cannot begin a transaction");
            // Run nothing: report the failure to every waiting caller.
            for job in batch {
                job(None)(&err);
            }
            continue;
        }
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(Some(&conn))).collect();
        let commit = exec(&conn, "COMMIT").map_err(StoreError::from);
        if let Err(e) = &commit {
            tracing::error!(error = %e, "inventory: commit failed");
            let _ = exec(&conn, "ROLLBACK");
        }
        for complete in completions {
            complete(&commit);
        }
    }
}
