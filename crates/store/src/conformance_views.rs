//! Conformance tests of [`AdminViews`]: keyset listings (stable under concurrent inserts),
//! their filters and the fleet statistics. Every backend runs them unchanged.

use std::collections::HashSet;

use time::{Date, Duration};

use crate::conformance::{at, certificate};
use crate::monitoring::{EscalationChange, EscalationKind, NewNotification, ScanCommit};
use crate::policy::conformance::decision;
use crate::*;

fn cert(serial: &str, device: &str, profile: &str, not_after: i64) -> NewCertificate {
    let mut c = certificate(serial, device, CertificateKind::Operational, not_after);
    c.profile = profile.into();
    c
}

fn keys(page: &[CertificateRecord]) -> Vec<(i64, String)> {
    page.iter()
        .map(|c| (c.not_after.unix_timestamp(), c.serial.clone()))
        .collect()
}

/// A listing paged while certificates are inserted, between the pages and concurrently:
/// every certificate present at the start is listed exactly once, in (not_after, serial)
/// order, and so is every certificate inserted after the cursor; nothing inserted behind
/// the cursor appears (so nothing repeats).
pub(crate) async fn certificate_pages_never_repeat_or_skip_under_concurrent_inserts<S>(store: S)
where
    S: AdminViews + CertificateLedger + Clone + 'static,
{
    // Four certificates per expiry time: the serial breaks the ties.
    let mut originals = Vec::new();
    for i in 0..40 {
        let serial = format!("{i:02x}");
        store
            .record_issuance(cert(
                &serial,
                &format!("SN-P{}", i % 5),
                "p",
                1000 + (i % 10) * 100,
            ))
            .await
            .unwrap();
        originals.push(serial);
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                store
                    .record_issuance(cert(
                        &format!("c{i:02x}"),
                        "SN-C",
                        "p",
                        900 + (i * 37) % 1200,
                    ))
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut after = None;
    let mut late = Vec::new();
    for page_no in 0.. {
        let page = store
            .certificate_page(&CertificateFilter {
                after: after.clone(),
                limit: 6,
                ..CertificateFilter::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= 6);
        let Some(last) = page.last() else { break };
        after = Some((last.not_after, last.serial.clone()));
        seen.extend(keys(&page));
        // Behind the cursor (never listed now) and far ahead of it (listed later).
        store
            .record_issuance(cert(&format!("e{page_no:02x}"), "SN-E", "p", 500))
            .await
            .unwrap();
        if page_no < 10 {
            let serial = format!("l{page_no:02x}");
            store
                .record_issuance(cert(&serial, "SN-L", "p", 5000 + page_no))
                .await
                .unwrap();
            late.push(serial);
        }
    }
    writer.await.unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "strictly ascending, so nothing repeats: {seen:?}"
    );
    let serials: HashSet<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
    for s in originals.iter().chain(&late) {
        assert!(serials.contains(s.as_str()), "{s} was skipped");
    }
    assert!(
        !serials.iter().any(|s| s.starts_with('e')),
        "rows inserted behind the cursor appeared"
    );
}

pub(crate) async fn certificate_filters_select_and_bound<S>(store: S)
where
    S: AdminViews + CertificateLedger + RevocationStore,
{
    let mut birth = certificate("b1", "SN-1", CertificateKind::Birth, 90_000);
    birth.issuer = "manufacturing".into();
    store.record_issuance(birth).await.unwrap();
    for (serial, device, profile, not_after) in [
        ("01", "SN-1", "p1", 100),
        ("02", "SN-2", "p1", 200),
        ("03", "SN-2", "p2", 300),
        ("04", "SN-3", "p2", 400),
        ("05", "SN-3", "p1", -50),
    ] {
        store
            .record_issuance(cert(serial, device, profile, not_after))
            .await
            .unwrap();
    }
    store.revoke("03", "keyCompromise", at(1)).await.unwrap();
    let list = |f: CertificateFilter| {
        let store = &store;
        async move {
            let page = store
                .certificate_page(&CertificateFilter {
                    limit: if f.limit == 0 { 100 } else { f.limit },
                    ..f
                })
                .await
                .unwrap();
            page.into_iter().map(|c| c.serial).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(CertificateFilter::default()).await,
        ["05", "01", "02", "03", "04", "b1"]
    );
    // The expiring report: valid, not expired at now, expiring before now + 250 s.
    assert_eq!(
        list(CertificateFilter {
            status: Some(CertificateStatus::Valid),
            not_after_from: Some(at(0)),
            not_after_before: Some(at(250)),
            ..Default::default()
        })
        .await,
        ["01", "02"]
    );
    assert_eq!(
        list(CertificateFilter {
            status: Some(CertificateStatus::Revoked),
            ..Default::default()
        })
        .await,
        ["03"]
    );
    assert_eq!(
        list(CertificateFilter {
            kind: Some(CertificateKind::Birth),
            ..Default::default()
        })
        .await,
        ["b1"]
    );
    assert_eq!(
        list(CertificateFilter {
            issuer: Some("manufacturing".into()),
            ..Default::default()
        })
        .await,
        ["b1"]
    );
    assert_eq!(
        list(CertificateFilter {
            profile: Some("p2".into()),
            ..Default::default()
        })
        .await,
        ["03", "04"]
    );
    assert_eq!(
        list(CertificateFilter {
            device_serial: Some("SN-1".into()),
            ..Default::default()
        })
        .await,
        ["01", "b1"]
    );
    assert_eq!(
        list(CertificateFilter {
            profile: Some("p1".into()),
            after: Some((at(100), "01".into())),
            limit: 1,
            ..Default::default()
        })
        .await,
        ["02"]
    );
    let page = store
        .certificate_page(&CertificateFilter {
            status: Some(CertificateStatus::Valid),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        keys(&page),
        [
            (at(-50).unix_timestamp(), "05".into()),
            (at(100).unix_timestamp(), "01".into())
        ]
    );
    assert_eq!(page[0].profile, "p1");

    // A renewal of 01: the expiring report's "not renewed" leaves 01 out in the query, so a
    // page of one is still full.
    let mut renewal = cert("06", "SN-1", "p1", 500);
    renewal.replaces = Some("01".into());
    store.record_issuance(renewal).await.unwrap();
    assert_eq!(
        list(CertificateFilter {
            status: Some(CertificateStatus::Valid),
            unrenewed: true,
            not_after_from: Some(at(0)),
            limit: 1,
            ..Default::default()
        })
        .await,
        ["02"]
    );
}

pub(crate) async fn approvals_alerts_audit_and_accounts_are_filtered_and_paged<S>(store: S)
where
    S: AdminViews + PolicyStore + MonitoringStore + AuditLog + AccountStore + OperatorLog,
{
    // Approvals: oldest first, by state and device, after an id.
    let mut ids = Vec::new();
    for (i, device) in ["SN-1", "SN-2", "SN-1", "SN-3"].into_iter().enumerate() {
        let a = store
            .open_approval(NewApproval {
                request_key: format!("k{i}"),
                device_serial: device.into(),
                label: None,
                profile: "operational".into(),
                operation: "simpleenroll".into(),
                client: format!("birth certificate of {device}"),
                reason: "manual approval".into(),
                created_at: at(i as i64),
            })
            .await
            .unwrap();
        ids.push(a.id);
    }
    store
        .decide_approval(ids[2], false, "cli:alice", Some("unknown"), at(10))
        .await
        .unwrap();
    let approvals = |f: ApprovalFilter| {
        let store = &store;
        async move {
            let page = store.approval_page(&f).await.unwrap();
            page.into_iter().map(|a| a.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        approvals(ApprovalFilter {
            limit: 10,
            ..Default::default()
        })
        .await,
        ids
    );
    assert_eq!(
        approvals(ApprovalFilter {
            state: Some(ApprovalState::Pending),
            limit: 10,
            ..Default::default()
        })
        .await,
        [ids[0], ids[1], ids[3]]
    );
    assert_eq!(
        approvals(ApprovalFilter {
            device_serial: Some("SN-1".into()),
            limit: 10,
            ..Default::default()
        })
        .await,
        [ids[0], ids[2]]
    );
    assert_eq!(
        approvals(ApprovalFilter {
            after: Some(ids[0]),
            limit: 2,
            ..Default::default()
        })
        .await,
        [ids[1], ids[2]]
    );

    // Alerts: newest first, open or resolved, by kind, tier and device, before an id.
    let open = |kind, device: &str, tier: &str| EscalationChange::Open {
        kind,
        device_serial: device.into(),
        certificate_serial: format!("{device}-cert"),
        tier: tier.into(),
        not_after: Some(at(500)),
    };
    store
        .commit_scan(ScanCommit {
            at: at(0),
            changes: vec![
                open(EscalationKind::Expiry, "SN-1", "notice"),
                open(EscalationKind::Expiry, "SN-2", "warning"),
                open(EscalationKind::BirthOnly, "SN-3", "notice"),
            ],
            notifications: vec![NewNotification {
                channel: "hook".into(),
                tier: "notice".into(),
                event: "firing".into(),
                payload: "{}".into(),
            }],
        })
        .await
        .unwrap();
    let all = store.open_escalations().await.unwrap();
    let id_of = |device: &str| {
        all.iter()
            .find(|e| e.device_serial == device)
            .map(|e| e.id)
            .unwrap()
    };
    let (e1, e2, e3) = (id_of("SN-1"), id_of("SN-2"), id_of("SN-3"));
    store
        .commit_scan(ScanCommit {
            at: at(5),
            changes: vec![EscalationChange::Resolve {
                id: e2,
                resolution: "renewed".into(),
            }],
            notifications: vec![],
        })
        .await
        .unwrap();
    let alerts = |f: AlertFilter| {
        let store = &store;
        async move {
            let limit = if f.limit == 0 { 10 } else { f.limit };
            let page = store.alert_page(&AlertFilter { limit, ..f }).await.unwrap();
            page.into_iter()
                .map(|a| a.escalation.id)
                .collect::<Vec<_>>()
        }
    };
    let mut newest_first = vec![e1, e2, e3];
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(alerts(AlertFilter::default()).await, newest_first);
    assert_eq!(
        alerts(AlertFilter {
            open: Some(false),
            ..Default::default()
        })
        .await,
        [e2]
    );
    let mut open_ids = vec![e1, e3];
    open_ids.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(
        alerts(AlertFilter {
            open: Some(true),
            ..Default::default()
        })
        .await,
        open_ids
    );
    assert_eq!(
        alerts(AlertFilter {
            kind: Some("birth-only".into()),
            ..Default::default()
        })
        .await,
        [e3]
    );
    assert_eq!(
        alerts(AlertFilter {
            tier: Some("warning".into()),
            ..Default::default()
        })
        .await,
        [e2]
    );
    assert_eq!(
        alerts(AlertFilter {
            device_serial: Some("SN-1".into()),
            ..Default::default()
        })
        .await,
        [e1]
    );
    assert_eq!(
        alerts(AlertFilter {
            before: Some(newest_first[0]),
            ..Default::default()
        })
        .await,
        newest_first[1..]
    );
    let first = store
        .alert_page(&AlertFilter {
            device_serial: Some("SN-1".into()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first[0].delivery, Some(DeliveryState::Pending));

    // Audit: newest first, by actor, action, subject and time, before an id.
    for (i, (actor, action, subject)) in [
        ("cli:root", "cert-revoke", "0a"),
        ("user:alice", "device-suspend", "SN-1"),
        ("token:cmdb", "cert-revoke", "0b"),
        ("user:alice", "cert-revoke", "0a"),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .append(AuditEvent {
                at: at(100 * i as i64),
                actor: actor.into(),
                action: action.into(),
                subject: subject.into(),
                outcome: "granted".into(),
                detail: format!("event {i}"),
            })
            .await
            .unwrap();
    }
    let audit = |f: AuditFilter| {
        let store = &store;
        async move {
            let limit = if f.limit == 0 { 10 } else { f.limit };
            let page = store
                .audit_search(&AuditFilter { limit, ..f })
                .await
                .unwrap();
            page.into_iter().map(|r| r.event.detail).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        audit(AuditFilter::default()).await,
        ["event 3", "event 2", "event 1", "event 0"]
    );
    assert_eq!(
        audit(AuditFilter {
            actor: Some("user:alice".into()),
            ..Default::default()
        })
        .await,
        ["event 3", "event 1"]
    );
    assert_eq!(
        audit(AuditFilter {
            action: Some("cert-revoke".into()),
            subject: Some("0a".into()),
            ..Default::default()
        })
        .await,
        ["event 3", "event 0"]
    );
    assert_eq!(
        audit(AuditFilter {
            since: Some(at(100)),
            until: Some(at(300)),
            ..Default::default()
        })
        .await,
        ["event 2", "event 1"]
    );
    let newest = store
        .audit_search(&AuditFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        audit(AuditFilter {
            before: Some(newest[0].id),
            limit: 2,
            ..Default::default()
        })
        .await,
        ["event 2", "event 1"]
    );

    // Accounts by name, enabled and disabled through the operator log.
    for name in ["zeta", "alpha"] {
        store
            .add_account(NewAccount {
                name: name.into(),
                password_hash: "h".into(),
                label: None,
                serial_pattern: Some("^SN-".into()),
                any_serial: false,
                known_devices: false,
                created_at: at(0),
            })
            .await
            .unwrap();
    }
    let names: Vec<String> = store
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    let enable = |name: &str, enabled: bool| {
        store.apply_audited(
            OperatorChange::AccountEnabled {
                name: name.into(),
                enabled,
            },
            at(20),
            AuditEvent {
                at: at(20),
                actor: "cli:root".into(),
                action: "account-enable".into(),
                subject: format!("account:{name}"),
                outcome: "granted".into(),
                detail: String::new(),
            },
        )
    };
    enable("zeta", false).await.unwrap();
    assert!(!store.account("zeta").await.unwrap().unwrap().enabled);
    let again = enable("zeta", false).await;
    assert!(matches!(again, Err(StoreError::Refused(_))), "{again:?}");
    let unknown = enable("nobody", true).await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
    enable("zeta", true).await.unwrap();
    assert!(store.account("zeta").await.unwrap().unwrap().enabled);
    // 4 appended events and the two applied changes: the refused ones left no trace.
    assert_eq!(store.verify_audit_chain().await.unwrap(), Ok(6));
}

/// The statistics: devices by status; certificates by kind, profile and state (valid,
/// expired, revoked, on-hold), split at `now` within today; expiries per day and profile
/// for the next days; decisions per day for the last days; and they follow changes.
pub(crate) async fn fleet_stats_count_by_state_day_and_outcome<S>(store: S)
where
    S: AdminViews + CertificateLedger + RevocationStore + PolicyStore,
{
    const D: i64 = 86_400;
    let now = at(0); // 08:00 UTC
    let today: Date = now.date();
    for (serial, profile, not_after) in [
        ("c1", "p1", 3600),     // today, after now: valid, expiring today
        ("c2", "p1", -3600),    // today, before now: expired
        ("c3", "p1", D),        // tomorrow
        ("c4", "p2", D + 10),   // tomorrow
        ("c5", "p2", -2 * D),   // expired two days ago
        ("c6", "p1", 5 * D),    // revoked below
        ("c7", "p1", 6 * D),    // held below
        ("c9", "p1", 29 * D),   // the 30th day, the last one of 30
        ("c10", "p1", 30 * D),  // the 31st day
        ("c11", "p3", 100 * D), // its device is suspended below: on hold
    ] {
        store
            .record_issuance(cert(serial, &format!("SN-{serial}"), profile, not_after))
            .await
            .unwrap();
    }
    store
        .record_issuance(certificate("c8", "SN-c8", CertificateKind::Birth, 400 * D))
        .await
        .unwrap();
    store.revoke("c6", "keyCompromise", at(-10)).await.unwrap();
    store
        .revoke("c7", "certificateHold", at(-10))
        .await
        .unwrap();
    store
        .change_lifecycle("SN-c11", LifecycleChange::Suspend, at(-10))
        .await
        .unwrap();
    for (outcome, secs) in [
        (DecisionOutcome::Issued, 0),
        (DecisionOutcome::Issued, 10),
        (DecisionOutcome::Denied, 20),
        (DecisionOutcome::Pending, 30),
        (DecisionOutcome::Unavailable, 40),
        (DecisionOutcome::Issued, -D),
        (DecisionOutcome::Denied, -3 * D),
        (DecisionOutcome::Issued, D), // tomorrow: outside
    ] {
        store
            .record_decision(decision("SN-c1", outcome, secs))
            .await
            .unwrap();
    }

    let stats = store.fleet_stats(now, 30, 3).await.unwrap();
    let s = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(a, n)| (a.to_string(), *n)).collect()
    };
    assert_eq!(
        stats.devices_by_status,
        s(&[("active", 9), ("manufactured", 1), ("suspended", 1)])
    );
    let c = |v: &[(&str, &str, &str, u64)]| -> Vec<(String, String, String, u64)> {
        v.iter()
            .map(|(k, p, st, n)| (k.to_string(), p.to_string(), st.to_string(), *n))
            .collect()
    };
    assert_eq!(
        stats.certificates,
        c(&[
            ("birth", "birth", "valid", 1),
            ("operational", "p1", "expired", 1),
            ("operational", "p1", "on-hold", 1),
            ("operational", "p1", "revoked", 1),
            ("operational", "p1", "valid", 4),
            ("operational", "p2", "expired", 1),
            ("operational", "p2", "valid", 1),
            ("operational", "p3", "on-hold", 1),
        ])
    );
    let day = |n: i64| today + Duration::days(n);
    let e = |v: &[(i64, &str, u64)]| -> Vec<(Date, String, u64)> {
        v.iter()
            .map(|(d, p, n)| (day(*d), p.to_string(), *n))
            .collect()
    };
    assert_eq!(
        stats.expiring_per_day,
        e(&[(0, "p1", 1), (1, "p1", 1), (1, "p2", 1), (29, "p1", 1)])
    );
    assert_eq!(
        stats.requests_per_day,
        vec![
            (
                day(-1),
                DayActivity {
                    issued: 1,
                    refused: 0,
                    pending: 0
                }
            ),
            (
                day(0),
                DayActivity {
                    issued: 2,
                    refused: 1,
                    pending: 1
                }
            ),
        ]
    );
    let wider = store.fleet_stats(now, 1, 4).await.unwrap();
    assert_eq!(wider.expiring_per_day, e(&[(0, "p1", 1)]));
    assert_eq!(wider.requests_per_day.len(), 3);
    assert_eq!(
        wider.requests_per_day[0],
        (
            day(-3),
            DayActivity {
                refused: 1,
                ..Default::default()
            }
        )
    );

    // Two hours later c1 has expired too; a revocation moves its certificate's count.
    store.revoke("c3", "superseded", at(7200)).await.unwrap();
    let later = store.fleet_stats(at(7200), 30, 1).await.unwrap();
    let p1: Vec<(String, u64)> = later
        .certificates
        .iter()
        .filter(|(k, p, _, _)| k == "operational" && p == "p1")
        .map(|(_, _, st, n)| (st.clone(), *n))
        .collect();
    assert_eq!(
        p1,
        s(&[("expired", 2), ("on-hold", 1), ("revoked", 2), ("valid", 2)])
    );
    assert_eq!(later.expiring_per_day, e(&[(1, "p2", 1), (29, "p1", 1)]));
    // Read twice (a backend may fold what it counted in between): the same answer.
    assert_eq!(store.fleet_stats(at(7200), 30, 1).await.unwrap(), later);
    // Resuming the suspended device releases its certificate's hold.
    store
        .change_lifecycle("SN-c11", LifecycleChange::Resume, at(7300))
        .await
        .unwrap();
    let resumed = store.fleet_stats(at(7300), 30, 1).await.unwrap();
    let p3: Vec<_> = resumed
        .certificates
        .iter()
        .filter(|(_, p, _, _)| p == "p3")
        .cloned()
        .collect();
    assert_eq!(p3, c(&[("operational", "p3", "valid", 1)]));
    assert_eq!(
        resumed.devices_by_status,
        s(&[("active", 10), ("manufactured", 1)])
    );
}
