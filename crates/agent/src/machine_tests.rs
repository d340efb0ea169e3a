//! The state machine under a `ManualClock`: no sleeps, no sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use fleetca_pki::{Clock, ManualClock};
use time::macros::datetime;

use super::*;

fn clock() -> ManualClock {
    ManualClock::new(datetime!(2030-01-01 00:00 UTC))
}

fn cert(from: OffsetDateTime, lifetime: Duration) -> Validity {
    Validity {
        not_before: from,
        not_after: from + lifetime,
    }
}

fn birth(clock: &ManualClock) -> Option<Validity> {
    Some(cert(clock.now() - Duration::days(1), Duration::days(7300)))
}

fn request(op: Operation) -> Decision {
    Decision::Request {
        operation: op,
        repeat: false,
    }
}

fn wait_of(d: &Decision) -> (OffsetDateTime, WaitReason) {
    match d {
        Decision::Wait { until, reason } => (*until, reason.clone()),
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn birth_only_enrolls_then_sleeps_until_two_thirds_then_reenrolls() {
    let clock = clock();
    let mut m = Machine::new(RenewalPolicy::default(), 1);
    let mut view = View {
        operational: None,
        birth: birth(&clock),
    };
    assert_eq!(m.decide(clock.now(), &view), request(Operation::Enroll));
    let first = cert(clock.now(), Duration::days(30));
    m.record(
        clock.now(),
        Operation::Enroll,
        Outcome::Issued(first),
        &view,
    );
    view.operational = Some(first);

    // Renewal point: 20 days (two thirds), moved earlier by at most 10% of 30 days.
    let point = m.renewal_point(&first);
    assert!(point <= first.not_before + Duration::days(20), "{point}");
    assert!(point >= first.not_before + Duration::days(17), "{point}");
    assert_eq!(m.renewal_point(&first), point, "stable per certificate");

    // Before it: a wait of at most check_interval, never a request.
    let (until, reason) = wait_of(&m.decide(clock.now(), &view));
    assert_eq!(reason, WaitReason::NotDue);
    assert_eq!(until, clock.now() + Duration::hours(1));
    clock.advance(point - clock.now() - Duration::seconds(1));
    let (until, _) = wait_of(&m.decide(clock.now(), &view));
    assert_eq!(until, point);
    clock.advance(Duration::seconds(1));
    assert_eq!(m.decide(clock.now(), &view), request(Operation::Reenroll));

    let second = cert(clock.now(), Duration::days(30));
    m.record(
        clock.now(),
        Operation::Reenroll,
        Outcome::Issued(second),
        &view,
    );
    view.operational = Some(second);
    assert_eq!(wait_of(&m.decide(clock.now(), &view)).1, WaitReason::NotDue);
    assert!(m.renewal_point(&second) > point);
}

#[test]
fn renew_before_sets_the_point_relative_to_expiry() {
    let clock = clock();
    let policy = RenewalPolicy {
        renew_before: Some(Duration::days(7)),
        jitter: 0.0,
        ..RenewalPolicy::default()
    };
    let mut m = Machine::new(policy, 1);
    let c = cert(clock.now(), Duration::days(90));
    assert_eq!(m.renewal_point(&c), c.not_after - Duration::days(7));
    // Not shorter than the lifetime: never "due at once" (that renewed in a loop);
    // renew_at (2/3) is used instead, and the schedule says it was clamped.
    let short = cert(clock.now(), Duration::days(3));
    assert_eq!(
        m.renewal_point(&short),
        short.not_before + Duration::days(2)
    );
    let plan = schedule(m.policy(), &short);
    assert!(plan.clamped);
    assert!(!schedule(m.policy(), &c).clamped);
}

#[test]
fn renew_before_at_or_beyond_the_lifetime_never_makes_a_new_certificate_due() {
    let clock = clock();
    for before in [89, 90, 91, 365] {
        for jitter in [0.0, 0.1, 0.5] {
            for seed in 0..20 {
                let policy = RenewalPolicy {
                    renew_before: Some(Duration::days(before)),
                    jitter,
                    ..RenewalPolicy::default()
                };
                let mut m = Machine::new(policy, seed);
                let c = cert(clock.now(), Duration::days(90));
                let at = m.renewal_point(&c);
                assert!(
                    at >= c.not_before + Duration::days(9),
                    "renew_before {before}d, jitter {jitter}: {at}"
                );
                let view = View {
                    operational: Some(c),
                    birth: birth(&clock),
                };
                assert_eq!(wait_of(&m.decide(clock.now(), &view)).1, WaitReason::NotDue);
            }
        }
    }
}

#[test]
fn jitter_spreads_a_fleet_over_the_window() {
    let clock = clock();
    let c = cert(clock.now(), Duration::seconds(600));
    let points: std::collections::BTreeSet<OffsetDateTime> = (0..50)
        .map(|seed| Machine::new(RenewalPolicy::default(), seed).renewal_point(&c))
        .collect();
    assert!(points.len() > 20, "only {} distinct points", points.len());
    let nominal = c.not_before + Duration::seconds(400);
    for p in &points {
        assert!(
            *p <= nominal && *p >= nominal - Duration::seconds(60),
            "{p}"
        );
    }
}

#[test]
fn a_day_of_a_healthy_device_costs_one_request_and_few_wake_ups() {
    let clock = clock();
    let mut m = Machine::new(RenewalPolicy::default(), 7);
    let mut view = View {
        operational: Some(cert(clock.now(), Duration::hours(24))),
        birth: birth(&clock),
    };
    let end = clock.now() + Duration::hours(24);
    let (mut requests, mut wakes) = (0, 0);
    while clock.now() < end && wakes < 1000 {
        wakes += 1;
        match m.decide(clock.now(), &view) {
            Decision::Request { operation, .. } => {
                requests += 1;
                let issued = cert(clock.now(), Duration::hours(24));
                m.record(clock.now(), operation, Outcome::Issued(issued), &view);
                view.operational = Some(issued);
            }
            Decision::Wait { until, .. } => clock.advance(until - clock.now()),
        }
    }
    assert_eq!(requests, 1);
    assert!(wakes <= 30, "{wakes} wake-ups");
}

#[test]
fn failures_back_off_exponentially_with_jitter_up_to_the_cap() {
    let clock = clock();
    let policy = RenewalPolicy {
        retry_initial: Duration::seconds(10),
        retry_max: Duration::seconds(300),
        ..RenewalPolicy::default()
    };
    let mut m = Machine::new(policy, 3);
    let view = View {
        operational: None,
        birth: birth(&clock),
    };
    let mut waits = Vec::new();
    for _ in 0..10 {
        assert_eq!(m.decide(clock.now(), &view), request(Operation::Enroll));
        let outcome = Outcome::Unavailable {
            reason: "connect: refused".into(),
            retry_after: None,
        };
        m.record(clock.now(), Operation::Enroll, outcome, &view);
        let (until, reason) = wait_of(&m.decide(clock.now(), &view));
        assert_eq!(reason, WaitReason::Backoff);
        waits.push((until - clock.now()).whole_seconds());
        clock.advance(until - clock.now());
    }
    for (i, w) in waits.iter().enumerate() {
        let base = (10i64 << i.min(20)).min(300);
        assert!(
            *w >= base / 2 && *w <= base,
            "attempt {i}: waited {w}s, base {base}s"
        );
    }
    assert_eq!(m.failures(), 10);
    // Success resets the back-off.
    let c = cert(clock.now(), Duration::days(1));
    m.record(clock.now(), Operation::Enroll, Outcome::Issued(c), &view);
    assert_eq!(m.failures(), 0);
}

#[test]
fn back_off_is_shortened_while_the_certificate_runs_out() {
    let clock = clock();
    let policy = RenewalPolicy {
        retry_initial: Duration::seconds(5),
        retry_max: Duration::hours(1),
        ..RenewalPolicy::default()
    };
    let mut m = Machine::new(policy, 3);
    let c = cert(clock.now() - Duration::seconds(50), Duration::seconds(60));
    let view = View {
        operational: Some(c),
        birth: birth(&clock),
    };
    for _ in 0..8 {
        let outcome = Outcome::Unavailable {
            reason: "HTTP 503".into(),
            retry_after: None,
        };
        m.record(clock.now(), Operation::Reenroll, outcome, &view);
    }
    let (until, _) = wait_of(&m.decide(clock.now(), &view));
    // 10 s left: at most max(half of it, retry_initial) = 5 s.
    assert!(until - clock.now() <= Duration::seconds(5));
}

#[test]
fn a_server_retry_after_is_a_floor_for_the_back_off() {
    let clock = clock();
    let mut m = Machine::new(RenewalPolicy::default(), 3);
    let view = View {
        operational: None,
        birth: birth(&clock),
    };
    let outcome = Outcome::Unavailable {
        reason: "HTTP 503".into(),
        retry_after: Some(Duration::seconds(600)),
    };
    m.record(clock.now(), Operation::Enroll, outcome, &view);
    let (until, _) = wait_of(&m.decide(clock.now(), &view));
    assert_eq!(until, clock.now() + Duration::seconds(600));
}

#[test]
fn accepted_202_waits_as_told_then_repeats_the_same_request() {
    let clock = clock();
    let mut m = Machine::new(RenewalPolicy::default(), 3);
    let c = cert(clock.now() - Duration::days(25), Duration::days(30));
    let view = View {
        operational: Some(c),
        birth: birth(&clock),
    };
    assert_eq!(m.decide(clock.now(), &view), request(Operation::Reenroll));
    let pending = Outcome::Pending {
        retry_after: Duration::seconds(120),
    };
    m.record(clock.now(), Operation::Reenroll, pending, &view);
    let (until, reason) = wait_of(&m.decide(clock.now(), &view));
    assert_eq!(
        (until - clock.now(), reason),
        (Duration::seconds(120), WaitReason::Pending)
    );
    clock.advance(Duration::seconds(119));
    assert!(matches!(
        m.decide(clock.now(), &view),
        Decision::Wait { .. }
    ));
    clock.advance(Duration::seconds(1));
    let repeat = Decision::Request {
        operation: Operation::Reenroll,
        repeat: true,
    };
    assert_eq!(m.decide(clock.now(), &view), repeat);
    // Still pending after a network error: the same request again after the back-off.
    let down = Outcome::Unavailable {
        reason: "timeout".into(),
        retry_after: None,
    };
    m.record(clock.now(), Operation::Reenroll, down, &view);
    let (until, _) = wait_of(&m.decide(clock.now(), &view));
    clock.advance(until - clock.now());
    assert_eq!(m.decide(clock.now(), &view), repeat);
    let issued = cert(clock.now(), Duration::days(30));
    m.record(
        clock.now(),
        Operation::Reenroll,
        Outcome::Issued(issued),
        &view,
    );
    let view = View {
        operational: Some(issued),
        ..view
    };
    assert_eq!(wait_of(&m.decide(clock.now(), &view)).1, WaitReason::NotDue);
}

/// Issue 15 item 5: a device refused once waited `denied_retry` (6 h) even after the
/// operator fixed the cause. The wait now starts at `denied_initial` (5 min) and doubles
/// per refusal in a row up to `denied_retry`; an issuance resets it.
#[test]
fn denials_back_off_from_minutes_up_to_the_cap_and_do_not_hammer() {
    let clock = clock();
    let mut m = Machine::new(RenewalPolicy::default(), 3);
    let view = View {
        operational: None,
        birth: birth(&clock),
    };
    let denied =
        Outcome::Denied("refused by rule 'key-algorithm': p256 keys are not allowed".into());
    let mut waits = Vec::new();
    for _ in 0..10 {
        assert!(matches!(
            m.decide(clock.now(), &view),
            Decision::Request { .. }
        ));
        m.record(clock.now(), Operation::Enroll, denied.clone(), &view);
        let (until, reason) = wait_of(&m.decide(clock.now(), &view));
        assert_eq!(reason, WaitReason::Denied);
        waits.push(until - clock.now());
        clock.advance(until - clock.now());
    }
    let minutes: Vec<i64> = waits.iter().map(|w| w.whole_minutes()).collect();
    // 5 min ±10 %, then doubling: 10, 20, 40, 80, 160, 320, then the 6 h cap (±10 %).
    assert!((4..=6).contains(&minutes[0]), "{minutes:?}");
    assert!((9..=11).contains(&minutes[1]), "{minutes:?}");
    assert!((144..=176).contains(&minutes[5]), "{minutes:?}");
    for m in &minutes[7..] {
        assert!((324..=396).contains(m), "{minutes:?}");
    }
    assert!(m
        .last_attempt()
        .unwrap()
        .outcome
        .describe()
        .contains("key-algorithm"));

    // The operator fixed it; `once --now` clears the wait and the next request is issued.
    m.clear_hold();
    assert!(matches!(
        m.decide(clock.now(), &view),
        Decision::Request { .. }
    ));
    let issued = cert(clock.now(), Duration::days(30));
    m.record(
        clock.now(),
        Operation::Enroll,
        Outcome::Issued(issued),
        &view,
    );
    assert_eq!(m.denials(), 0);
}

#[test]
fn an_expired_operational_certificate_falls_back_to_the_birth_certificate() {
    let clock = clock();
    let mut m = Machine::new(RenewalPolicy::default(), 3);
    let expired = cert(clock.now() - Duration::days(31), Duration::days(30));
    let view = View {
        operational: Some(expired),
        birth: birth(&clock),
    };
    assert_eq!(m.decide(clock.now(), &view), request(Operation::Enroll));
    // Without a usable birth certificate the machine is stuck, and says so.
    let no_birth = View {
        operational: Some(expired),
        birth: Some(cert(clock.now() - Duration::days(10), Duration::days(5))),
    };
    assert_eq!(
        wait_of(&m.decide(clock.now(), &no_birth)).1,
        WaitReason::Stuck
    );
}

#[test]
fn unauthorized_on_reenroll_falls_back_to_the_birth_certificate() {
    let clock = clock();
    let mut m = Machine::new(RenewalPolicy::default(), 3);
    let c = cert(clock.now() - Duration::days(25), Duration::days(30));
    let view = View {
        operational: Some(c),
        birth: birth(&clock),
    };
    assert_eq!(m.decide(clock.now(), &view), request(Operation::Reenroll));
    let refused = Outcome::Unauthorized("client certificate from an unknown CA".into());
    m.record(clock.now(), Operation::Reenroll, refused, &view);
    let (until, reason) = wait_of(&m.decide(clock.now(), &view));
    assert_eq!(reason, WaitReason::Backoff);
    clock.advance(until - clock.now());
    assert_eq!(m.decide(clock.now(), &view), request(Operation::Enroll));
}

#[test]
fn an_outage_longer_than_the_retry_interval_costs_few_requests() {
    // Server down for 30 minutes, retry_initial 30 s, cap 5 min: the agent keeps trying
    // at a bounded rate and renews as soon as the server is back.
    let clock = clock();
    let policy = RenewalPolicy {
        retry_initial: Duration::seconds(30),
        retry_max: Duration::minutes(5),
        ..RenewalPolicy::default()
    };
    let mut m = Machine::new(policy, 11);
    let start = clock.now();
    let c = cert(start - Duration::hours(20), Duration::hours(24));
    let view = View {
        operational: Some(c),
        birth: birth(&clock),
    };
    let back_at = start + Duration::minutes(30);
    let mut requests = 0;
    let mut renewed_at = None;
    for _ in 0..1000 {
        match m.decide(clock.now(), &view) {
            Decision::Request { operation, .. } => {
                requests += 1;
                if clock.now() < back_at {
                    let down = Outcome::Unavailable {
                        reason: "connect: refused".into(),
                        retry_after: None,
                    };
                    m.record(clock.now(), operation, down, &view);
                } else {
                    let issued = cert(clock.now(), Duration::hours(24));
                    m.record(clock.now(), operation, Outcome::Issued(issued), &view);
                    renewed_at = Some(clock.now());
                    break;
                }
            }
            Decision::Wait { until, .. } => clock.advance(until - clock.now()),
        }
    }
    let renewed_at = renewed_at.expect("renewed after the outage");
    assert!(renewed_at - back_at <= Duration::minutes(5), "{renewed_at}");
    // 30 minutes: 30+60+120+240 s, then at least 150 s apart: at most ~14 requests.
    assert!(requests <= 15, "{requests} requests");
}
