use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use time::OffsetDateTime;

/// The source of "now" for everything that depends on time. Injected so that tests move
/// time instead of sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to; cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct ManualClock {
    unix_seconds: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock stopped at `at` (sub-second precision is dropped).
    pub fn new(at: OffsetDateTime) -> Self {
        Self {
            unix_seconds: Arc::new(AtomicI64::new(at.unix_timestamp())),
        }
    }

    /// Moves the clock forward (or backward, with a negative duration).
    pub fn advance(&self, by: time::Duration) {
        self.unix_seconds
            .fetch_add(by.whole_seconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let secs = self.unix_seconds.load(Ordering::SeqCst);
        // Only values that came from an OffsetDateTime are ever stored, plus test offsets.
        OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}
