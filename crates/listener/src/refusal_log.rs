//! Warnings about refused connections, at most one line per interval.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Refusal;

/// At most one warning line per listener in this interval; the next line counts the
/// refusals not logged since.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct State {
    last_line: Option<Instant>,
    unlogged: u64,
}

/// A rate-limited warning about refused connections: a flood writes one line per
/// [`WARN_INTERVAL`], not one per connection.
#[derive(Debug)]
pub struct RefusalLog {
    listener: &'static str,
    state: Mutex<State>,
}

impl RefusalLog {
    /// The log of the listener called `listener`.
    pub fn new(listener: &'static str) -> Self {
        Self {
            listener,
            state: Mutex::new(State::default()),
        }
    }

    /// Notes one refusal; writes a line unless one was written within the interval.
    pub fn refused(&self, remote: SocketAddr, reason: Refusal) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        let due = state
            .last_line
            .is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL);
        if !due {
            state.unlogged = state.unlogged.saturating_add(1);
            return;
        }
        let unlogged = std::mem::take(&mut state.unlogged);
        state.last_line = Some(now);
        drop(state);
        tracing::warn!(
            listener = self.listener,
            %remote,
            reason = reason.as_str(),
            unlogged_since_last_warning = unlogged,
            "connection refused (at most one such line per {} s per listener; the count is in fleetca_connections_refused_total)",
            WARN_INTERVAL.as_secs()
        );
    }
}
