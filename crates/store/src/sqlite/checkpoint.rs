//! WAL checkpoints off the write path. SQLite's default checkpoints the write-ahead log
//! into the database inside the COMMIT that pushes it past 1,000 pages, on the writer
//! thread: every few hundred enrollments one of them waited for ~4 MB of page copies and
//! an fsync of the database file, and recording a large CRL stalled every enrollment
//! queued behind it for the length of its checkpoint. Here a thread of its own runs a
//! PASSIVE checkpoint (it never blocks the writer or a reader) every [`INTERVAL`]; a page
//! rewritten many times in between (count tables, index interior pages) is copied once.
//! The writer keeps an automatic checkpoint only as a backstop, at [`BACKSTOP_PAGES`], for
//! when this thread falls behind. Durability is unchanged: a commit is durable in the WAL
//! (synchronous=FULL) before it returns, whenever it is checkpointed.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// How often the log is checkpointed.
const INTERVAL: Duration = Duration::from_millis(500);

/// The writer's own automatic checkpoint threshold (pages of the WAL), a backstop.
pub(crate) const BACKSTOP_PAGES: u32 = 16_384;

/// Stops the checkpoint thread when dropped, and waits for its last checkpoint and for
/// its connection to close.
pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` on a connection of its own.
    pub(crate) fn spawn(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fleetca-store-checkpoint".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(|e| {
                StoreError::Database(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        super::writer::join_unless_current(self.thread.take());
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>) {
    loop {
        let last = matches!(
            stopped.recv_timeout(INTERVAL),
            Err(mpsc::RecvTimeoutError::Disconnected) | Ok(())
        );
        // PASSIVE: copies what it can without waiting for the writer or readers.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; the writer's backstop checkpoint still bounds the log");
        }
        if last {
            return;
        }
    }
}
