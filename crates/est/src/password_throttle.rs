//! Back-off for HTTP Basic password guessing, per account and per source (issue 13).
//!
//! Kept in memory, per node: a restart forgets it, and with several nodes behind a load
//! balancer an attacker gets each node's budget (the README says so). Failures count
//! within [`FORGET_AFTER`] of the last one. Past [`FREE_FAILURES_PER_ACCOUNT`] failures
//! for one account name (from any source), or [`FREE_FAILURES_PER_SOURCE`] from one source
//! (for any name), each further failure doubles a back-off from 1 s up to
//! [`MAX_BACKOFF`]; while it runs, attempts get 429 with `Retry-After`, and the password
//! is not checked (no argon2 work, and no answer to learn from).
//!
//! An account's back-off does not lock out the account's own clients: a source that
//! authenticated to that account within [`TRUSTED_FOR`] is not held by it (only by its
//! own source back-off), so a guessing attack on a factory's account from elsewhere does
//! not stop the factory. A source that never succeeded waits like the attacker does.
//! Unknown account names are tracked like known ones, so a 429 reveals nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures for one account name before a back-off starts.
pub(crate) const FREE_FAILURES_PER_ACCOUNT: u32 = 5;
/// Failures from one source before a back-off starts.
pub(crate) const FREE_FAILURES_PER_SOURCE: u32 = 10;
/// Longest back-off.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Failures are forgotten this long after the last one.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// A source that authenticated to an account is not held by that account's back-off for
/// this long.
pub(crate) const TRUSTED_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// Past this many entries, expired ones are dropped; if that is not enough, all are.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Instant,
}

impl Failures {
    fn fail(entry: Option<&Self>, free: u32, now: Instant) -> Self {
        let count = match entry {
            Some(e) if now.duration_since(e.last) < FORGET_AFTER => e.count.saturating_add(1),
            _ => 1,
        };
        let blocked_until = match count.checked_sub(free) {
            None | Some(0) => now,
            Some(over) => {
                let secs = 1u64 << (over - 1).min(20);
                now + Duration::from_secs(secs).min(MAX_BACKOFF)
            }
        };
        Self {
            count,
            last: now,
            blocked_until,
        }
    }

    fn remaining(&self, now: Instant) -> Option<Duration> {
        (self.blocked_until > now).then(|| self.blocked_until - now)
    }
}

/// Why an attempt is held back, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// Too many failures for this account name.
    Account(Duration),
    /// Too many failures from this source.
    Source(Duration),
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<String, Failures>,
    sources: HashMap<IpAddr, Failures>,
    trusted: HashMap<(String, IpAddr), Instant>,
}

/// The back-off state of one node.
#[derive(Debug, Default)]
pub(crate) struct PasswordThrottle {
    state: Mutex<State>,
}

fn prune<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>, now: Instant) {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER || f.blocked_until > now);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
    }
}

impl PasswordThrottle {
    /// Whether an attempt for `account` from `source` may check its password now.
    pub(crate) fn check(&self, account: &str, source: IpAddr) -> Result<(), Held> {
        let now = Instant::now();
        let Ok(state) = self.state.lock() else {
            return Ok(());
        };
        if let Some(wait) = state.sources.get(&source).and_then(|f| f.remaining(now)) {
            return Err(Held::Source(wait));
        }
        let trusted = state
            .trusted
            .get(&(account.to_string(), source))
            .is_some_and(|t| now.duration_since(*t) < TRUSTED_FOR);
        if !trusted {
            if let Some(wait) = state.accounts.get(account).and_then(|f| f.remaining(now)) {
                return Err(Held::Account(wait));
            }
        }
        Ok(())
    }

    /// Records a wrong password (or unknown account) for `account` from `source`.
    pub(crate) fn failed(&self, account: &str, source: IpAddr) {
        let now = Instant::now();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        prune(&mut state.accounts, now);
        prune(&mut state.sources, now);
        let a = Failures::fail(state.accounts.get(account), FREE_FAILURES_PER_ACCOUNT, now);
        state.accounts.insert(account.to_string(), a);
        let s = Failures::fail(state.sources.get(&source), FREE_FAILURES_PER_SOURCE, now);
        state.sources.insert(source, s);
    }

    /// Records a successful login: `source` is trusted for `account` from now on.
    pub(crate) fn succeeded(&self, account: &str, source: IpAddr) {
        let now = Instant::now();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.trusted.len() >= MAX_ENTRIES {
            state
                .trusted
                .retain(|_, t| now.duration_since(*t) < TRUSTED_FOR);
            if state.trusted.len() >= MAX_ENTRIES {
                state.trusted.clear();
            }
        }
        state.trusted.insert((account.to_string(), source), now);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_account_backs_off_after_its_free_failures_but_not_for_its_known_sources() {
        let t = PasswordThrottle::default();
        let (attacker, station) = (ip("10.0.0.9"), ip("10.0.0.1"));
        t.succeeded("factory", station);
        for _ in 0..FREE_FAILURES_PER_ACCOUNT {
            assert_eq!(t.check("factory", attacker), Ok(()));
            t.failed("factory", attacker);
        }
        assert_eq!(t.check("factory", attacker), Ok(()));
        t.failed("factory", attacker);
        assert!(matches!(
            t.check("factory", attacker),
            Err(Held::Account(_))
        ));
        // A fresh source waits too; the station that logged in before does not.
        assert!(matches!(
            t.check("factory", ip("10.0.0.5")),
            Err(Held::Account(_))
        ));
        assert_eq!(t.check("factory", station), Ok(()));
        // Other accounts are not held for the attacker's source yet.
        assert_eq!(t.check("other", attacker), Ok(()));
    }

    #[test]
    fn a_source_backs_off_across_account_names() {
        let t = PasswordThrottle::default();
        let attacker = ip("10.0.0.9");
        for i in 0..=FREE_FAILURES_PER_SOURCE {
            t.failed(&format!("name{i}"), attacker);
        }
        assert!(matches!(t.check("fresh", attacker), Err(Held::Source(_))));
        assert_eq!(t.check("fresh", ip("10.0.0.1")), Ok(()));
    }

    #[test]
    fn the_back_off_doubles_up_to_the_maximum() {
        let now = Instant::now();
        let mut f = None;
        let mut waits = Vec::new();
        for _ in 0..40 {
            let next = Failures::fail(f.as_ref(), 2, now);
            waits.push(next.blocked_until - now);
            f = Some(next);
        }
        assert_eq!(
            waits[..5].to_vec(),
            [0, 0, 1, 2, 4].map(Duration::from_secs)
        );
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
    }
}
