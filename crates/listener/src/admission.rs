//! Caps and rates per listener and per source.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::refusal_log::RefusalLog;

/// Past this many tracked sources, idle ones are forgotten (their buckets are full again).
const PRUNE_AT: usize = 4096;

/// Limits of one listener. A per-source value of 0 turns that check off.
#[derive(Debug, Clone)]
pub struct AdmissionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one source (0: no per-source cap).
    pub max_connections_per_source: usize,
    /// New connections per second from one source, bursts up to twice that (0: no rate).
    pub accept_rate_per_source: u32,
    /// Time allowed between accept and the connection's first bytes.
    pub first_byte_timeout: Duration,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_source: 64,
            accept_rate_per_source: 20,
            first_byte_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a connection was closed without being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The listener's `max_connections` were open.
    MaxConnections,
    /// The source's `max_connections_per_source` were open.
    SourceConnections,
    /// The source opened connections faster than `accept_rate_per_source`.
    SourceRate,
    /// Nothing arrived within `first_byte_timeout` of the accept.
    FirstByteTimeout,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::SourceConnections => "source_connections",
            Self::SourceRate => "source_rate",
            Self::FirstByteTimeout => "first_byte_timeout",
        }
    }
}

/// Counts refusals (the Prometheus metric).
pub trait RefusalObserver: Send + Sync {
    /// A connection to `listener` was closed for `reason`.
    fn connection_refused(&self, listener: &'static str, reason: Refusal);
}

#[derive(Debug)]
struct Source {
    open: usize,
    tokens: f64,
    refilled: Instant,
}

/// The admission state of one listener.
pub struct Admission {
    name: &'static str,
    limits: AdmissionLimits,
    slots: Arc<Semaphore>,
    sources: Mutex<HashMap<IpAddr, Source>>,
    log: RefusalLog,
    observer: Option<Arc<dyn RefusalObserver>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("listener", &self.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The source a peer address counts as: an IPv4 address, or the /64 of an IPv6 address
/// (IPv4-mapped ones count as IPv4).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

impl Admission {
    /// Admission for the listener called `name` (the metric and log label).
    pub fn new(
        name: &'static str,
        limits: AdmissionLimits,
        observer: Option<Arc<dyn RefusalObserver>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            sources: Mutex::new(HashMap::new()),
            log: RefusalLog::new(name),
            observer,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    /// Admits a connection from `remote`, or says why not (and counts and logs that).
    pub fn admit(self: &Arc<Self>, remote: SocketAddr) -> Result<Ticket, Refusal> {
        let result = self.try_admit(remote);
        if let Err(reason) = result {
            self.refused(remote, reason);
        }
        result
    }

    /// Counts and (rate-limited) logs a refusal.
    pub fn refused(&self, remote: SocketAddr, reason: Refusal) {
        if let Some(o) = &self.observer {
            o.connection_refused(self.name, reason);
        }
        self.log.refused(remote, reason);
    }

    fn try_admit(self: &Arc<Self>, remote: SocketAddr) -> Result<Ticket, Refusal> {
        let permit = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| Refusal::MaxConnections)?;
        let source = source_of(remote.ip());
        let per_source =
            self.limits.max_connections_per_source > 0 || self.limits.accept_rate_per_source > 0;
        if per_source {
            let mut sources = self.sources.lock().map_err(|_| Refusal::MaxConnections)?;
            let now = Instant::now();
            let rate = f64::from(self.limits.accept_rate_per_source);
            let burst = rate * 2.0;
            if sources.len() >= PRUNE_AT {
                sources.retain(|_, s| {
                    s.open > 0
                        || s.tokens + now.duration_since(s.refilled).as_secs_f64() * rate < burst
                });
            }
            let entry = sources.entry(source).or_insert(Source {
                open: 0,
                tokens: burst,
                refilled: now,
            });
            if self.limits.max_connections_per_source > 0
                && entry.open >= self.limits.max_connections_per_source
            {
                return Err(Refusal::SourceConnections);
            }
            if rate > 0.0 {
                let elapsed = now.duration_since(entry.refilled).as_secs_f64();
                entry.tokens = (entry.tokens + elapsed * rate).min(burst);
                entry.refilled = now;
                if entry.tokens < 1.0 {
                    return Err(Refusal::SourceRate);
                }
                entry.tokens -= 1.0;
            }
            entry.open += 1;
        }
        Ok(Ticket {
            admission: Arc::clone(self),
            source: per_source.then_some(source),
            remote,
            _permit: permit,
        })
    }

    fn release(&self, source: IpAddr) {
        if let Ok(mut sources) = self.sources.lock() {
            if let Some(s) = sources.get_mut(&source) {
                s.open = s.open.saturating_sub(1);
            }
        }
    }

    /// Waits (up to `timeout`) until every admitted connection has ended.
    pub async fn drained(&self, timeout: Duration) {
        let all = u32::try_from(self.limits.max_connections.max(1)).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(timeout, self.slots.acquire_many(all)).await;
    }
}

/// An admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    source: Option<IpAddr>,
    remote: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

impl Ticket {
    /// Waits for the connection's first bytes; `false` (counted and logged as a refusal)
    /// when none arrive within `first_byte_timeout`. The caller then drops the connection.
    pub async fn first_bytes(&self, tcp: &TcpStream) -> bool {
        let timeout = self.admission.limits.first_byte_timeout;
        let mut first = [0u8; 1];
        match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
            Ok(_) => true,
            Err(_) => {
                self.admission
                    .refused(self.remote, Refusal::FirstByteTimeout);
                false
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(source) = self.source {
            self.admission.release(source);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_per_source_cap_leaves_room_for_other_sources() {
        let a = Admission::new(
            "test",
            AdmissionLimits {
                max_connections: 10,
                max_connections_per_source: 2,
                accept_rate_per_source: 0,
                first_byte_timeout: Duration::from_secs(1),
            },
            None,
        );
        let one = a.admit(addr("10.0.0.1:1")).unwrap();
        let _two = a.admit(addr("10.0.0.1:2")).unwrap();
        assert_eq!(
            a.admit(addr("10.0.0.1:3")).unwrap_err(),
            Refusal::SourceConnections
        );
        let _other = a.admit(addr("10.0.0.2:1")).unwrap();
        drop(one);
        let _again = a.admit(addr("10.0.0.1:4")).unwrap();
    }

    #[test]
    fn ipv6_sources_are_grouped_by_slash_64() {
        let a = Admission::new(
            "test",
            AdmissionLimits {
                max_connections: 10,
                max_connections_per_source: 1,
                accept_rate_per_source: 0,
                first_byte_timeout: Duration::from_secs(1),
            },
            None,
        );
        let _one = a.admit(addr("[2001:db8::1]:1")).unwrap();
        assert_eq!(
            a.admit(addr("[2001:db8::ffff:2]:1")).unwrap_err(),
            Refusal::SourceConnections
        );
        let _other = a.admit(addr("[2001:db8:0:1::1]:1")).unwrap();
    }

    #[test]
    fn the_accept_rate_refuses_a_burst_beyond_twice_the_rate() {
        let a = Admission::new(
            "test",
            AdmissionLimits {
                max_connections: 100,
                max_connections_per_source: 0,
                accept_rate_per_source: 3,
                first_byte_timeout: Duration::from_secs(1),
            },
            None,
        );
        let results: Vec<_> = (0..10)
            .map(|i| a.admit(addr(&format!("10.0.0.1:{i}"))))
            .collect();
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        // A burst of 6, plus at most what refilled while the loop ran.
        assert!((6..=7).contains(&admitted), "{admitted}");
        assert!(results
            .iter()
            .any(|r| matches!(r, Err(Refusal::SourceRate))));
    }

    #[test]
    fn the_listener_cap_holds_across_sources() {
        let a = Admission::new(
            "test",
            AdmissionLimits {
                max_connections: 2,
                max_connections_per_source: 0,
                accept_rate_per_source: 0,
                first_byte_timeout: Duration::from_secs(1),
            },
            None,
        );
        let _a = a.admit(addr("10.0.0.1:1")).unwrap();
        let _b = a.admit(addr("10.0.0.2:1")).unwrap();
        assert_eq!(
            a.admit(addr("10.0.0.3:1")).unwrap_err(),
            Refusal::MaxConnections
        );
    }
}
