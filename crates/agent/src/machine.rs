//! The renewal state machine: sans-IO, with time passed in.
//!
//! [`Machine::decide`] looks at what the device holds (the validity of its operational and
//! birth certificates) and the time, and says what to do: send a request now, or wait until
//! a given instant. [`Machine::record`] takes the outcome of a request. The machine never
//! reads a file, opens a socket or looks at a clock; the [`Agent`](crate::Agent) and the
//! fleet simulator do, and tests move a `ManualClock` instead of sleeping.
//!
//! Policy, in order:
//! - a back-off or a server-imposed wait is pending: wait for it;
//! - the server answered `202` earlier: repeat the same request (same key, same CSR);
//! - no operational certificate, or it expired: `simpleenroll` with the birth certificate
//!   (the fallback after an outage longer than the certificate lifetime);
//! - before the renewal point: wait until then (at most `check_interval`, to look again);
//! - past it: `simplereenroll` with the current certificate and a new key.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::{Duration, OffsetDateTime};

/// The validity period of a certificate the device holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// The lifetime (zero for a malformed, inverted period).
    pub fn lifetime(&self) -> Duration {
        (self.not_after - self.not_before).max(Duration::ZERO)
    }

    /// Whether `now` is inside the period.
    pub fn contains(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// What the device holds, as the machine needs to see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// The operational certificate, if there is one on disk.
    pub operational: Option<Validity>,
    /// The birth certificate, if there is one.
    pub birth: Option<Validity>,
}

/// The two EST requests the agent makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// `simpleenroll`, authenticated by the birth certificate, for a new key.
    Enroll,
    /// `simplereenroll`, authenticated by the operational certificate, for a new key.
    Reenroll,
}

impl Operation {
    /// The EST operation name (`simpleenroll`, `simplereenroll`).
    pub fn path(self) -> &'static str {
        match self {
            Self::Enroll => "simpleenroll",
            Self::Reenroll => "simplereenroll",
        }
    }
}

/// Why the machine says to wait.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitReason {
    /// The certificate is valid and not yet at its renewal point.
    NotDue,
    /// A request failed (network, 5xx): exponential back-off.
    Backoff,
    /// The server accepted the request for approval (`202`) and said when to ask again.
    Pending,
    /// The server refused the request (`403` or another client error): long back-off.
    Denied,
    /// Nothing can be done: no usable certificate to authenticate with (the operational
    /// certificate expired and the birth certificate is missing or expired).
    Stuck,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send this request now. `repeat` is true when it must be the same request as the last
    /// one (after a `202`): same key, same CSR.
    Request {
        /// Which request.
        operation: Operation,
        /// Repeat the pending request instead of making a new key.
        repeat: bool,
    },
    /// Nothing to send before `until`.
    Wait {
        /// When to call [`Machine::decide`] again.
        until: OffsetDateTime,
        /// Why.
        reason: WaitReason,
    },
}

/// How a request ended, as the machine needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A certificate was issued and is now installed.
    Issued(Validity),
    /// `202 Accepted`: ask again after `retry_after`.
    Pending {
        /// The server's Retry-After.
        retry_after: Duration,
    },
    /// `403`: a rule refused the request. The reason is the server's text.
    Denied(String),
    /// `401`: the server did not accept the client certificate.
    Unauthorized(String),
    /// Another `4xx`: the request itself is wrong (a bug or a configuration mismatch).
    Rejected(String),
    /// `503`, another `5xx`, a network error or a timeout: try again later.
    Unavailable {
        /// Why.
        reason: String,
        /// The server's Retry-After, if it sent one.
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    /// The outcome of an HTTP answer other than `200` and `202`: `401` unauthorized,
    /// `403` denied, `408`/`429`/`5xx` unavailable (back off), other statuses rejected.
    pub fn from_status(status: u16, message: &str, retry_after: Option<Duration>) -> Self {
        let reason = format!("HTTP {status}: {message}");
        match status {
            401 => Self::Unauthorized(reason),
            403 => Self::Denied(reason),
            408 | 429 | 500..=599 => Self::Unavailable {
                reason,
                retry_after,
            },
            _ => Self::Rejected(reason),
        }
    }

    /// A one-line description for logs and the status file.
    pub fn describe(&self) -> String {
        match self {
            Self::Issued(v) => {
                let until = v
                    .not_after
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| v.not_after.to_string());
                format!("issued, valid until {until}")
            }
            Self::Pending { retry_after } => {
                format!(
                    "pending approval, retry after {}s",
                    retry_after.whole_seconds()
                )
            }
            Self::Denied(r) => format!("denied: {r}"),
            Self::Unauthorized(r) => format!("unauthorized: {r}"),
            Self::Rejected(r) => format!("rejected: {r}"),
            Self::Unavailable { reason, .. } => format!("unavailable: {reason}"),
        }
    }
}

/// When to renew and how to retry. Durations are whole seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewalPolicy {
    /// Renew once this fraction of the lifetime has passed (default 2/3).
    pub renew_at: f64,
    /// Renew this long before expiry instead (overrides `renew_at`).
    pub renew_before: Option<Duration>,
    /// The renewal point moves earlier by a random fraction, up to this much of the
    /// lifetime, fixed per certificate (default 0.1): a fleet does not renew in lock-step.
    pub jitter: f64,
    /// Longest sleep while nothing is due: the agent looks at its files again after it.
    pub check_interval: Duration,
    /// First back-off after a failure; doubled per consecutive failure.
    pub retry_initial: Duration,
    /// Cap of the exponential back-off.
    pub retry_max: Duration,
    /// First wait after a refusal (`403` and other client errors); doubled per refusal in
    /// a row, up to `denied_retry`.
    pub denied_initial: Duration,
    /// Longest wait after refusals.
    pub denied_retry: Duration,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            renew_at: 2.0 / 3.0,
            renew_before: None,
            jitter: 0.1,
            check_interval: Duration::hours(1),
            retry_initial: Duration::seconds(30),
            retry_max: Duration::hours(1),
            denied_initial: Duration::minutes(5),
            denied_retry: Duration::hours(6),
        }
    }
}

/// Longest wait a server's Retry-After may impose.
const MAX_SERVER_WAIT: Duration = Duration::days(1);

/// The last request and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When it ended.
    pub at: OffsetDateTime,
    /// Which request.
    pub operation: Operation,
    /// How it ended.
    pub outcome: Outcome,
}

/// The renewal state machine of one device.
#[derive(Debug)]
pub struct Machine {
    policy: RenewalPolicy,
    rng: StdRng,
    /// The renewal point of the certificate last seen, jitter included.
    renew_point: Option<(Validity, OffsetDateTime)>,
    /// No request before this instant, and why.
    hold: Option<(OffsetDateTime, WaitReason)>,
    /// Consecutive failed attempts.
    failures: u32,
    /// Consecutive refusals (403, 401 with the birth certificate, other 4xx).
    denials: u32,
    /// A request answered `202`, to be repeated.
    pending: Option<Operation>,
    /// The server refused the operational certificate (`401` on re-enrollment): enroll with
    /// the birth certificate instead until a new certificate is issued.
    operational_refused: bool,
    last: Option<Attempt>,
}

impl Machine {
    /// A machine with `policy`; `seed` feeds the jitter (use a random seed on devices and a
    /// fixed one in tests).
    pub fn new(policy: RenewalPolicy, seed: u64) -> Self {
        Self {
            policy,
            rng: StdRng::seed_from_u64(seed),
            renew_point: None,
            hold: None,
            failures: 0,
            denials: 0,
            pending: None,
            operational_refused: false,
            last: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RenewalPolicy {
        &self.policy
    }

    /// The last request and its outcome.
    pub fn last_attempt(&self) -> Option<&Attempt> {
        self.last.as_ref()
    }

    /// Consecutive failed attempts.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// No request before `until` (a refusal or back-off remembered across a restart);
    /// `denials` refusals in a row so far (the next wait grows from there).
    pub fn restore_hold(&mut self, until: OffsetDateTime, reason: WaitReason, denials: u32) {
        self.hold = Some((until, reason));
        self.denials = denials;
    }

    /// Forgets a back-off or refusal wait: the next [`decide`](Self::decide) asks at once
    /// if anything is due (`fleetca-agent once --now`, after the operator fixed the cause).
    pub fn clear_hold(&mut self) {
        self.hold = None;
    }

    /// Refusals in a row.
    pub fn denials(&self) -> u32 {
        self.denials
    }

    /// When the next request may go out, if the machine is holding back, and why.
    pub fn hold(&self) -> Option<(OffsetDateTime, WaitReason)> {
        self.hold.clone()
    }

    /// The renewal point of `cert` without jitter (see [`schedule`]).
    pub fn nominal_renewal_point(&self, cert: &Validity) -> OffsetDateTime {
        schedule(&self.policy, cert).nominal
    }

    /// The renewal point of `cert`, jitter included; the same value for the same
    /// certificate until another one is seen. Never earlier than [`Schedule::earliest`]:
    /// neither the configuration nor the jitter can make a fresh certificate due at once.
    pub fn renewal_point(&mut self, cert: &Validity) -> OffsetDateTime {
        if let Some((seen, at)) = self.renew_point {
            if seen == *cert {
                return at;
            }
        }
        let plan = schedule(&self.policy, cert);
        let spread = cert.lifetime() * self.policy.jitter.clamp(0.0, 0.5);
        let early = whole(spread * self.rng.gen_range(0.0f64..=1.0));
        let at: OffsetDateTime = (plan.nominal - early).max(plan.earliest);
        self.renew_point = Some((*cert, at));
        at
    }

    /// What to do at `now`, holding `view`.
    pub fn decide(&mut self, now: OffsetDateTime, view: &View) -> Decision {
        if let Some((until, reason)) = &self.hold {
            if now < *until {
                return Decision::Wait {
                    until: *until,
                    reason: reason.clone(),
                };
            }
            self.hold = None;
        }
        if let Some(operation) = self.pending {
            return Decision::Request {
                operation,
                repeat: true,
            };
        }
        let operation = match view.operational {
            Some(cert) if now < cert.not_after && !self.operational_refused => {
                let at = self.renewal_point(&cert);
                if now < at {
                    let until = at.min(now + self.policy.check_interval);
                    return Decision::Wait {
                        until,
                        reason: WaitReason::NotDue,
                    };
                }
                Operation::Reenroll
            }
            // None, expired, or refused by the server: the birth certificate.
            _ => Operation::Enroll,
        };
        if operation == Operation::Enroll && !view.birth.is_some_and(|b| b.contains(now)) {
            return Decision::Wait {
                until: now + self.policy.check_interval,
                reason: WaitReason::Stuck,
            };
        }
        Decision::Request {
            operation,
            repeat: false,
        }
    }

    /// Takes the outcome of `operation`, sent at or before `now`; `view` is what the device
    /// held when it sent it.
    pub fn record(
        &mut self,
        now: OffsetDateTime,
        operation: Operation,
        outcome: Outcome,
        view: &View,
    ) {
        match &outcome {
            Outcome::Issued(_) => {
                self.failures = 0;
                self.denials = 0;
                self.hold = None;
                self.pending = None;
                self.operational_refused = false;
            }
            Outcome::Pending { retry_after } => {
                self.pending = Some(operation);
                let wait = (*retry_after).clamp(Duration::seconds(1), MAX_SERVER_WAIT);
                self.hold = Some((now + wait, WaitReason::Pending));
            }
            Outcome::Denied(_) | Outcome::Rejected(_) => {
                self.pending = None;
                self.failures = self.failures.saturating_add(1);
                let wait = self.denied_wait();
                self.hold = Some((now + wait, WaitReason::Denied));
            }
            Outcome::Unauthorized(_) if operation == Operation::Reenroll => {
                // The server no longer accepts the operational certificate (unknown to
                // it, or expired by its clock): try the birth certificate next, soon.
                self.pending = None;
                self.operational_refused = true;
                self.failures = self.failures.saturating_add(1);
                let wait = self.backoff(now, view);
                self.hold = Some((now + wait, WaitReason::Backoff));
            }
            Outcome::Unauthorized(_) => {
                self.pending = None;
                self.failures = self.failures.saturating_add(1);
                let wait = self.denied_wait();
                self.hold = Some((now + wait, WaitReason::Denied));
            }
            Outcome::Unavailable { retry_after, .. } => {
                // A pending (202) request stays pending across a network failure.
                self.failures = self.failures.saturating_add(1);
                let mut wait = self.backoff(now, view);
                if let Some(server) = retry_after {
                    wait = wait.max((*server).min(MAX_SERVER_WAIT));
                }
                self.hold = Some((now + wait, WaitReason::Backoff));
            }
        }
        self.last = Some(Attempt {
            at: now,
            operation,
            outcome,
        });
    }

    /// Exponential back-off with "equal jitter" (a random point in the upper half), capped
    /// by `retry_max` and, while the current certificate is still valid, by half the time
    /// it has left, so that a few attempts still fit before it expires.
    fn backoff(&mut self, now: OffsetDateTime, view: &View) -> Duration {
        let exponent = self.failures.saturating_sub(1).min(30);
        let factor = 2f64.powi(i32::try_from(exponent).unwrap_or(30));
        let mut base = (self.policy.retry_initial * factor).min(self.policy.retry_max);
        if let Some(cert) = view.operational.filter(|c| now < c.not_after) {
            let half_left: Duration = (cert.not_after - now) / 2;
            base = base.min(half_left.max(self.policy.retry_initial));
        }
        let wait = whole(base * self.rng.gen_range(0.5f64..=1.0));
        wait.max(Duration::seconds(1))
    }

    /// The wait after a refusal: `denied_initial` doubled per earlier refusal in a row,
    /// capped by `denied_retry`, spread by ±10 %. Short at first, so that a device the
    /// operator has since admitted (inventory, resume) is back within minutes; long once
    /// it keeps being refused, so that it does not hammer the server.
    fn denied_wait(&mut self) -> Duration {
        let exponent = self.denials.min(30);
        self.denials = self.denials.saturating_add(1);
        let factor = 2f64.powi(i32::try_from(exponent).unwrap_or(30));
        let base = (self.policy.denied_initial * factor).min(self.policy.denied_retry);
        self.jittered(base)
    }

    /// `base` spread by ±10 %.
    fn jittered(&mut self, base: Duration) -> Duration {
        whole(base * self.rng.gen_range(0.9f64..=1.1)).max(Duration::seconds(1))
    }
}

/// No certificate is renewed before this share of its lifetime has passed, whatever the
/// configuration and the jitter say: a renewal point at or before the start of validity
/// would make every new certificate due at once (a renewal loop).
pub const MIN_RENEW_FRACTION: f64 = 0.1;

/// When a certificate is due, as `status`, `once` and `run` all compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The renewal point without jitter.
    pub nominal: OffsetDateTime,
    /// The earliest renewal point the jitter may move to
    /// ([`MIN_RENEW_FRACTION`] of the lifetime).
    pub earliest: OffsetDateTime,
    /// `renew_before` was not shorter than the lifetime (less the minimum share) of this
    /// certificate: `renew_at` was used instead. The agent warns about it.
    pub clamped: bool,
}

/// The renewal schedule of `cert` under `policy`, computed from the certificate itself.
///
/// `renew_before` counts back from `notAfter`; when that lands before
/// [`MIN_RENEW_FRACTION`] of the lifetime (e.g. `renew_before = "91d"` with 90-day
/// certificates) the point falls back to `renew_at` and `clamped` is set. `renew_at` is
/// itself held to at least that share.
pub fn schedule(policy: &RenewalPolicy, cert: &Validity) -> Schedule {
    let lifetime = cert.lifetime();
    let at_fraction = |f: f64| cert.not_before + whole(lifetime * f.clamp(0.0, 1.0));
    let earliest = at_fraction(MIN_RENEW_FRACTION);
    let by_fraction = at_fraction(policy.renew_at).max(earliest);
    match policy.renew_before {
        Some(before) => {
            let point = cert.not_after - before;
            if point < earliest {
                Schedule {
                    nominal: by_fraction,
                    earliest,
                    clamped: true,
                }
            } else {
                Schedule {
                    nominal: point,
                    earliest,
                    clamped: false,
                }
            }
        }
        None => Schedule {
            nominal: by_fraction,
            earliest,
            clamped: false,
        },
    }
}

/// `d` rounded to whole seconds (certificates and clocks count in seconds).
fn whole(d: Duration) -> Duration {
    Duration::seconds(d.as_seconds_f64().round() as i64)
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
