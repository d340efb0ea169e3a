//! Failed authentications per source address, in memory on each node: after `limit`
//! failures within a window from one source, that source's authentication attempts are
//! refused until the oldest failure leaves the window (HTTP 429 with Retry-After).
//!
//! Each node counts its own: with several nodes behind a balancer, a source gets up to
//! `limit` failures per node and window, which still bounds guessing to a few per second.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sources tracked at most; beyond, the entries whose failures all left the window are
/// dropped, then the map is cleared (a flood of sources must not grow memory without end).
const MAX_SOURCES: usize = 100_000;

/// Counts failed authentications per source.
#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureLimiter {
    /// At most `limit` failures per `window` from one source (`limit` 0: no limit).
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn key(source: IpAddr) -> IpAddr {
        // One IPv6 subscriber holds a /64: count it as one source.
        match source {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let mut segments = v6.segments();
                for s in segments.iter_mut().skip(4) {
                    *s = 0;
                }
                IpAddr::V6(segments.into())
            }
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, IpAddr::V4),
            IpAddr::V4(_) => source,
        }
    }

    /// `Some(wait)` when `source` must wait before trying again.
    pub fn blocked(&self, source: IpAddr) -> Option<Duration> {
        self.blocked_at(source, Instant::now())
    }

    fn blocked_at(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get_mut(&Self::key(source))?;
        while entry
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            entry.pop_front();
        }
        if entry.len() < self.limit as usize {
            return None;
        }
        let oldest = entry.front()?;
        let wait = self.window.saturating_sub(now.duration_since(*oldest));
        // Retry-After is in whole seconds: never tell a client 0.
        Some(wait.max(Duration::from_secs(1)))
    }

    /// Records a failed authentication from `source`.
    pub fn fail(&self, source: IpAddr) {
        self.fail_at(source, Instant::now());
    }

    fn fail_at(&self, source: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SOURCES {
            let window = self.window;
            map.retain(|_, v| v.back().is_some_and(|t| now.duration_since(*t) < window));
            if map.len() >= MAX_SOURCES {
                map.clear();
            }
        }
        let entry = map.entry(Self::key(source)).or_default();
        entry.push_back(now);
        while entry.len() > self.limit as usize {
            entry.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_source_is_blocked_after_its_limit_until_the_window_passes() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(limiter.blocked_at(a, t0), None);
            limiter.fail_at(a, t0 + Duration::from_secs(i));
        }
        let wait = limiter.blocked_at(a, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(
            limiter.blocked_at(b, t0),
            None,
            "other sources are not affected"
        );
        assert_eq!(limiter.blocked_at(a, t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn an_ipv6_prefix_counts_as_one_source() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(60));
        limiter.fail("2001:db8::1".parse().unwrap());
        assert!(limiter.blocked("2001:db8::2".parse().unwrap()).is_some());
        assert!(limiter
            .blocked("2001:db8:0:1::1".parse().unwrap())
            .is_none());
    }
}
