//! CRL entries read in bulk: a CA with a million revoked certificates hands them to the CRL
//! builder in batches, read on another thread while the builder converts the previous
//! batch, with no allocation per entry.

use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::StoreError;

/// Entries per batch (three in tests, so that the conformance suite crosses batch
/// boundaries with a handful of certificates).
pub(crate) const BATCH: usize = if cfg!(test) { 3 } else { 16_384 };

/// Batches read ahead of the consumer.
const AHEAD: usize = 4;

/// One CRL entry of a [`RevokedBatch`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokedEntryRef<'a> {
    /// Serial, lower-case hex, as in the inventory.
    pub serial: &'a str,
    /// When it was revoked (or put on hold).
    pub revoked_at: OffsetDateTime,
    /// RFC 5280 reason name as recorded (`unspecified` when none was).
    pub reason: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    serial_end: usize,
    revoked_at: OffsetDateTime,
    reason: usize,
}

/// A batch of CRL entries in serial order, stored as columns: the serials in one string,
/// the few distinct reason names once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RevokedBatch {
    serials: String,
    reasons: Vec<String>,
    rows: Vec<Row>,
}

impl RevokedBatch {
    pub(crate) fn with_capacity(entries: usize) -> Self {
        Self {
            // Serials are 40 hex digits.
            serials: String::with_capacity(entries * 40),
            reasons: Vec::new(),
            rows: Vec::with_capacity(entries),
        }
    }

    pub(crate) fn push(&mut self, serial: &str, revoked_at: OffsetDateTime, reason: &str) {
        self.serials.push_str(serial);
        let reason = match self.reasons.iter().position(|r| r == reason) {
            Some(i) => i,
            None => {
                self.reasons.push(reason.to_string());
                self.reasons.len() - 1
            }
        };
        self.rows.push(Row {
            serial_end: self.serials.len(),
            revoked_at,
            reason,
        });
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The entries, in serial order.
    pub fn iter(&self) -> impl Iterator<Item = RevokedEntryRef<'_>> + '_ {
        let mut start = 0;
        self.rows.iter().map(move |row| {
            // Both indices were recorded by `push` into these same strings, at char
            // boundaries; `get` keeps a broken invariant from panicking.
            let serial = self.serials.get(start..row.serial_end).unwrap_or_default();
            start = row.serial_end;
            RevokedEntryRef {
                serial,
                revoked_at: row.revoked_at,
                reason: self.reasons.get(row.reason).map_or("", String::as_str),
            }
        })
    }
}

enum Message {
    Batch(RevokedBatch),
    Done,
    Failed(StoreError),
}

/// The CRL entries of a CA as the store reads them (on its own thread or task), batch by
/// batch. The stream ends with `Ok(None)` only when the whole query was read: a reader
/// that failed or went away yields an error, never a silently shorter CRL.
#[derive(Debug)]
pub struct RevokedStream {
    rx: mpsc::Receiver<Message>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Complete,
    Failed,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Batch(b) => write!(f, "Batch({})", b.len()),
            Self::Done => f.write_str("Done"),
            Self::Failed(e) => write!(f, "Failed({e})"),
        }
    }
}

impl RevokedStream {
    pub(crate) fn channel() -> (RevokedSender, Self) {
        let (tx, rx) = mpsc::channel(AHEAD);
        (
            RevokedSender { tx },
            Self {
                rx,
                state: State::Open,
            },
        )
    }

    /// What a call after the end returns.
    fn after_end(&self) -> Option<Result<Option<RevokedBatch>, StoreError>> {
        match self.state {
            State::Open => None,
            State::Complete => Some(Ok(None)),
            State::Failed => Some(Err(StoreError::Database(
                "the CRL entry stream failed earlier".into(),
            ))),
        }
    }

    fn received(&mut self, message: Option<Message>) -> Result<Option<RevokedBatch>, StoreError> {
        match message {
            Some(Message::Batch(batch)) => Ok(Some(batch)),
            Some(Message::Done) => {
                self.state = State::Complete;
                Ok(None)
            }
            Some(Message::Failed(e)) => {
                self.state = State::Failed;
                Err(e)
            }
            None => {
                self.state = State::Failed;
                Err(StoreError::Database(
                    "the CRL entry reader stopped before the end of its query".into(),
                ))
            }
        }
    }

    /// The next batch; `Ok(None)` once every entry was delivered.
    pub async fn next_batch(&mut self) -> Result<Option<RevokedBatch>, StoreError> {
        if let Some(end) = self.after_end() {
            return end;
        }
        let message = self.rx.recv().await;
        self.received(message)
    }

    /// [`RevokedStream::next_batch`] for a blocking thread (`spawn_blocking`); must not be
    /// called from asynchronous code.
    pub fn blocking_next_batch(&mut self) -> Result<Option<RevokedBatch>, StoreError> {
        if let Some(end) = self.after_end() {
            return end;
        }
        let message = self.rx.blocking_recv();
        self.received(message)
    }

    /// Every remaining entry, as owned records.
    pub async fn collect_records(mut self) -> Result<Vec<crate::model::RevokedRecord>, StoreError> {
        let mut out = Vec::new();
        while let Some(batch) = self.next_batch().await? {
            out.extend(batch.iter().map(|e| crate::model::RevokedRecord {
                serial: e.serial.to_string(),
                revoked_at: e.revoked_at,
                reason: e.reason.to_string(),
            }));
        }
        Ok(out)
    }
}

/// The reading side of a [`RevokedStream`].
pub(crate) struct RevokedSender {
    tx: mpsc::Sender<Message>,
}

impl RevokedSender {
    /// Sends a batch from a blocking thread; false when the consumer is gone (stop
    /// reading).
    pub(crate) fn blocking_send(&self, batch: RevokedBatch) -> bool {
        self.tx.blocking_send(Message::Batch(batch)).is_ok()
    }

    /// Sends a batch from asynchronous code; false when the consumer is gone.
    pub(crate) async fn send(&self, batch: RevokedBatch) -> bool {
        self.tx.send(Message::Batch(batch)).await.is_ok()
    }

    /// Ends the stream from a blocking thread: complete, or failed with `result`'s error.
    pub(crate) fn blocking_finish(self, result: Result<(), StoreError>) {
        let _ = self.tx.blocking_send(match result {
            Ok(()) => Message::Done,
            Err(e) => Message::Failed(e),
        });
    }

    /// Ends the stream from asynchronous code.
    pub(crate) async fn finish(self, result: Result<(), StoreError>) {
        let _ = self
            .tx
            .send(match result {
                Ok(()) => Message::Done,
                Err(e) => Message::Failed(e),
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_what_was_pushed_with_reasons_shared() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut b = RevokedBatch::with_capacity(2);
        b.push("01", t, "keyCompromise");
        b.push("0a0b", t + time::Duration::SECOND, "superseded");
        b.push("ff", t, "keyCompromise");
        assert_eq!(b.len(), 3);
        assert_eq!(b.reasons.len(), 2);
        let got: Vec<(&str, i64, &str)> = b
            .iter()
            .map(|e| (e.serial, e.revoked_at.unix_timestamp(), e.reason))
            .collect();
        assert_eq!(
            got,
            vec![
                ("01", 1_700_000_000, "keyCompromise"),
                ("0a0b", 1_700_000_001, "superseded"),
                ("ff", 1_700_000_000, "keyCompromise"),
            ]
        );
    }

    #[tokio::test]
    async fn a_stream_whose_reader_vanished_is_an_error_not_an_end() {
        let (tx, mut stream) = RevokedStream::channel();
        assert!(tx.send(RevokedBatch::with_capacity(1)).await);
        drop(tx);
        assert!(stream.next_batch().await.unwrap().is_some());
        assert!(matches!(
            stream.next_batch().await,
            Err(StoreError::Database(_))
        ));
        // and stays failed
        assert!(stream.next_batch().await.is_err());

        let (tx, mut stream) = RevokedStream::channel();
        tx.finish(Err(StoreError::Corrupt("bad row".into()))).await;
        assert!(matches!(
            stream.next_batch().await,
            Err(StoreError::Corrupt(_))
        ));

        let (tx, mut stream) = RevokedStream::channel();
        tx.finish(Ok(())).await;
        assert!(stream.next_batch().await.unwrap().is_none());
        assert!(stream.next_batch().await.unwrap().is_none());
    }
}
