//! The store conformance suite: every test takes a fresh backend and must pass unchanged on
//! each backend. `all_conformance_tests!(fixture)` instantiates the whole list (this file's
//! and the monitoring suite) for one backend, so SQLite and PostgreSQL run the same tests.

use time::{Duration, OffsetDateTime};

/// Instantiates backend-generic tests (from `$suite`) with `$fixture() -> (guard, store)`.
macro_rules! conformance_tests {
    ($fixture:path; $suite:path; $($name:ident),+ $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            use $suite as suite;
            let (_guard, store) = $fixture();
            suite::$name(store).await;
        }
    )+};
}

/// Every conformance test, for the backend that `$fixture` makes.
macro_rules! all_conformance_tests {
    ($fixture:path) => {
        crate::conformance::conformance_tests!(
            $fixture;
            crate::monitoring::conformance;
            expiry_candidates_skip_renewed_revoked_and_superseded,
            expiry_candidates_carry_the_lifetime,
            scans_commit_escalations_and_outbox_atomically,
            leases_have_one_holder,
            failing_devices_count_refusals_after_the_newest_issuance,
            inventory_summary_counts_as_the_rows_say,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::operator::conformance;
            operator_changes_are_recorded_with_their_audit_event,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::scep::conformance;
            scep_challenges_are_consumed_once_and_expire,
            scep_transactions_keep_their_first_key,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::generations::conformance;
            generations_follow_each_other_one_pending_at_a_time,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::fleet::conformance;
            devices_are_listed_by_filter_and_paged_by_serial,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::pages::conformance;
            history_is_paged_by_id_newest_first,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::policy::conformance;
            decisions_keep_every_rule_result,
            approvals_go_from_pending_to_issued_once,
            concurrent_polls_open_one_approval,
            rate_counts_and_reenroll_overrides,
            decisions_are_recorded_with_their_certificate,
            issuance_needs_the_device_and_credential_to_still_stand,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::conformance;
            recorded_certificates_read_back,
            operational_certificates_activate_devices_and_link_renewals,
            duplicate_serials_are_refused_and_nothing_else_is_lost,
            queries_filter_and_order_by_expiry,
            concurrent_writes_all_commit,
            concurrent_issuances_succeed_or_fail_alone,
            device_limits_hold_against_concurrent_issuances,
            accounts_round_trip_and_names_are_unique,
            standing_reports_device_and_certificate_state,
            revocation_and_holds_follow_the_rules,
            lifecycle_changes_apply_to_every_live_certificate,
            superseded_certificates_are_revoked_after_the_grace_period,
            crl_numbers_only_grow,
            crl_entries_stream_in_serial_order_across_batches,
            stations_are_charged_in_the_issuing_transaction,
            active_operational_certificates_are_counted,
            stored_crls_are_served_by_number,
            concurrent_births_never_exceed_a_station_quota,
            concurrent_audit_appends_keep_one_chain,
            concurrent_crl_allocations_never_repeat,
            concurrent_lease_claims_have_one_winner,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::conformance_views;
            certificate_pages_never_repeat_or_skip_under_concurrent_inserts,
            certificate_filters_select_and_bound,
            approvals_alerts_audit_and_accounts_are_filtered_and_paged,
            fleet_stats_count_by_state_day_and_outcome,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::conformance_identity;
            tokens_are_created_once_and_revoked_once,
            users_change_and_their_sessions_end,
            sessions_are_found_touched_and_purged,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::conformance_binding;
            new_device_issuances_record_one_device_once,
            devices_are_bound_to_profile_and_birth_issuer,
            key_compromise_is_pending_until_a_new_issuance,
            manufacturer_scopes_round_trip,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::conformance_races;
            revocations_racing_renewals_leave_no_live_certificate_behind,
        );
        crate::conformance::conformance_tests!(
            $fixture;
            crate::conformance_cmp;
            cmp_secrets_are_recorded_audited_and_consumed_once,
            cmp_transactions_are_unique_and_advance_once_per_nonce,
            cmp_transactions_recorded_with_certificates_refuse_replays,
        );
    };
}

pub(crate) use {all_conformance_tests, conformance_tests};

use crate::*;

pub(crate) fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
}

pub(crate) fn certificate(
    serial: &str,
    device: &str,
    kind: CertificateKind,
    not_after: i64,
) -> NewCertificate {
    NewCertificate {
        serial: serial.into(),
        device_serial: device.into(),
        issuer: "operational".into(),
        profile: kind.as_str().into(),
        kind,
        not_before: at(0),
        not_after: at(not_after),
        spki_sha256: "ab".repeat(32),
        der: vec![0x30, 0x00],
        replaces: None,
        authenticated_by: None,
        limits: Default::default(),
        binding: Default::default(),
        issued_at: at(0),
        birth: None,
        decision: None,
        cmp_transaction: None,
    }
}

/// Records birth certificate "01" of device SN-1: one write through the store.
pub(crate) async fn record_one(store: &impl CertificateLedger) {
    store
        .record_issuance(certificate("01", "SN-1", CertificateKind::Birth, 10))
        .await
        .unwrap();
}

/// A profile's per-device limits hold in the recording commit: of many simultaneous
/// issuances to one device, only as many as the limit allow are recorded, whatever each
/// request's own earlier check said. The renewed certificate and expired ones do not count.
pub(crate) async fn device_limits_hold_against_concurrent_issuances<S>(store: S)
where
    S: CertificateLedger + InventoryReader + Clone + 'static,
{
    async fn race<S>(store: &S, device: &str, limits: DeviceLimits) -> (usize, usize)
    where
        S: CertificateLedger + Clone + 'static,
    {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = store.clone();
                let mut c = certificate(
                    &format!("{device}-{i}").to_ascii_lowercase(),
                    device,
                    CertificateKind::Operational,
                    50,
                );
                c.limits = limits.clone();
                tokio::spawn(async move { s.record_issuance(c).await })
            })
            .collect();
        let (mut ok, mut refused) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ok += 1,
                Err(StoreError::Refused(reason)) => {
                    assert!(reason.contains("meanwhile"), "{reason}");
                    refused += 1;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        (ok, refused)
    }
    let max_two = DeviceLimits {
        max_active: Some(2),
        issued_since: None,
    };
    // An expired certificate does not count.
    store
        .record_issuance(certificate(
            "sn-m-old",
            "SN-M",
            CertificateKind::Operational,
            -1,
        ))
        .await
        .unwrap();
    assert_eq!(race(&store, "SN-M", max_two.clone()).await, (2, 6));
    let three_since_start = DeviceLimits {
        max_active: None,
        issued_since: Some((3, at(0))),
    };
    assert_eq!(race(&store, "SN-R", three_since_start).await, (3, 5));
    // A renewal does not count the certificate it renews; a new one is over the limit.
    let renewed = every_certificate(&store)
        .await
        .into_iter()
        .find(|c| c.device_serial == "SN-M" && c.serial != "sn-m-old")
        .unwrap()
        .serial;
    let mut renewal = certificate("sn-m-new", "SN-M", CertificateKind::Operational, 50);
    renewal.replaces = Some(renewed);
    renewal.limits = max_two.clone();
    store.record_issuance(renewal).await.unwrap();
    let mut third = certificate("sn-m-third", "SN-M", CertificateKind::Operational, 50);
    third.limits = max_two;
    assert!(matches!(
        store.record_issuance(third).await,
        Err(StoreError::Refused(_))
    ));
}

/// Every recorded certificate (up to 10,000).
async fn every_certificate(store: &impl InventoryReader) -> Vec<CertificateRecord> {
    store
        .certificates(&CertificateQuery {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap()
}

pub(crate) async fn recorded_certificates_read_back<S>(store: S)
where
    S: CertificateLedger + InventoryReader,
{
    store
        .record_issuance(certificate("01", "SN-1", CertificateKind::Birth, 1000))
        .await
        .unwrap();
    let c = store.certificate("01").await.unwrap().unwrap();
    assert_eq!(c.device_serial, "SN-1");
    assert_eq!(c.kind, CertificateKind::Birth);
    assert_eq!(c.status, CertificateStatus::Valid);
    assert_eq!(c.not_after, at(1000));
    assert_eq!(c.der, vec![0x30, 0x00]);
    assert_eq!(c.replaced_by, None);
    let d = store.device("SN-1").await.unwrap().unwrap();
    assert_eq!(d.status, DeviceStatus::Manufactured);
    assert_eq!(store.certificate("02").await.unwrap(), None);
    assert_eq!(store.device("SN-2").await.unwrap(), None);
}

pub(crate) async fn operational_certificates_activate_devices_and_link_renewals<S>(store: S)
where
    S: CertificateLedger + InventoryReader,
{
    store
        .record_issuance(certificate("01", "SN-1", CertificateKind::Birth, 9000))
        .await
        .unwrap();
    store
        .record_issuance(certificate("02", "SN-1", CertificateKind::Operational, 100))
        .await
        .unwrap();
    let mut renewal = certificate("03", "SN-1", CertificateKind::Operational, 200);
    renewal.replaces = Some("02".into());
    store.record_issuance(renewal).await.unwrap();
    assert_eq!(
        store.device("SN-1").await.unwrap().unwrap().status,
        DeviceStatus::Active
    );
    let old = store.certificate("02").await.unwrap().unwrap();
    assert_eq!(old.replaced_by.as_deref(), Some("03"));
    let new = store.certificate("03").await.unwrap().unwrap();
    assert_eq!(new.replaces.as_deref(), Some("02"));
}

pub(crate) async fn duplicate_serials_are_refused_and_nothing_else_is_lost<S>(store: S)
where
    S: CertificateLedger + InventoryReader,
{
    store
        .record_issuance(certificate("01", "SN-1", CertificateKind::Birth, 10))
        .await
        .unwrap();
    let err = store
        .record_issuance(certificate("01", "SN-2", CertificateKind::Birth, 10))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The failed write left no device behind.
    assert_eq!(store.device("SN-2").await.unwrap(), None);
}

pub(crate) async fn queries_filter_and_order_by_expiry<S>(store: S)
where
    S: CertificateLedger + InventoryReader,
{
    for (serial, device, not_after) in [("0a", "A", 300), ("0b", "B", 100), ("0c", "A", 200)] {
        store
            .record_issuance(certificate(
                serial,
                device,
                CertificateKind::Operational,
                not_after,
            ))
            .await
            .unwrap();
    }
    let all = store
        .certificates(&CertificateQuery::default())
        .await
        .unwrap();
    let serials: Vec<&str> = all.iter().map(|c| c.serial.as_str()).collect();
    assert_eq!(serials, ["0b", "0c", "0a"]);
    let a = store
        .certificates(&CertificateQuery {
            device_serial: Some("A".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a.len(), 2);
    let soon = store
        .certificates(&CertificateQuery {
            expiring_before: Some(at(250)),
            not_expired_at: Some(at(150)),
            ..Default::default()
        })
        .await
        .unwrap();
    let serials: Vec<&str> = soon.iter().map(|c| c.serial.as_str()).collect();
    assert_eq!(serials, ["0c"]);
    let limited = store
        .certificates(&CertificateQuery {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
}

pub(crate) async fn concurrent_writes_all_commit<S>(store: S)
where
    S: CertificateLedger + InventoryReader + Clone + 'static,
{
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.record_issuance(certificate(
                &format!("{i:04x}"),
                &format!("D{i}"),
                CertificateKind::Birth,
                50,
            ))
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let all = every_certificate(&store).await;
    assert_eq!(all.len(), 200);
}

/// Concurrent operational issuances (which PostgreSQL commits in groups): each one's
/// answer is its own. The good ones commit with or without their decision; a refused one
/// (suspended device) and a duplicate serial fail alone and leave nothing behind.
pub(crate) async fn concurrent_issuances_succeed_or_fail_alone<S>(store: S)
where
    S: CertificateLedger + InventoryReader + RevocationStore + crate::PolicyStore + Clone + 'static,
{
    use crate::policy::conformance::decision;
    use crate::DecisionOutcome;
    store
        .record_issuance(certificate("b0", "SN-S", CertificateKind::Birth, 9000))
        .await
        .unwrap();
    store
        .change_lifecycle("SN-S", LifecycleChange::Suspend, at(1))
        .await
        .unwrap();
    store
        .record_issuance(certificate("d0", "SN-D", CertificateKind::Operational, 50))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..100u32 {
        let s = store.clone();
        let (serial, device) = match i % 25 {
            0 => ("d0".to_string(), format!("DUP{i}")),
            1 => (format!("r{i:03}"), "SN-S".to_string()),
            _ => (format!("c{i:03}"), format!("D{i}")),
        };
        let mut c = certificate(&serial, &device, CertificateKind::Operational, 50);
        if i % 2 == 0 {
            c.decision = Some(decision(&device, DecisionOutcome::Issued, 2));
        }
        tasks.push(tokio::spawn(async move { (i, s.record_issuance(c).await) }));
    }
    for t in tasks {
        let (i, result) = t.await.unwrap();
        match (i % 25, result) {
            (0, Err(StoreError::Conflict(_))) | (1, Err(StoreError::Refused(_))) => {}
            (0 | 1, other) => panic!("issuance {i}: expected a failure, got {other:?}"),
            (_, other) => assert!(other.is_ok(), "issuance {i}: {other:?}"),
        }
    }
    let all = every_certificate(&store).await;
    assert_eq!(all.len(), 92 + 2);
    for i in (0..100).step_by(25) {
        assert_eq!(store.device(&format!("DUP{i}")).await.unwrap(), None);
        assert!(store
            .certificate(&format!("r{:03}", i + 1))
            .await
            .unwrap()
            .is_none());
    }
    // A decision exists exactly for the even, recorded issuances.
    for i in [2u32, 3, 48, 99] {
        let log = store.decisions(Some(&format!("D{i}")), 10).await.unwrap();
        assert_eq!(log.len(), usize::from(i % 2 == 0), "D{i}");
    }
}

pub(crate) async fn accounts_round_trip_and_names_are_unique<S>(store: S)
where
    S: AccountStore,
{
    let account = NewAccount {
        name: "line-1".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        label: Some("factory".into()),
        serial_pattern: Some("^SN-".into()),
        any_serial: false,
        known_devices: true,
        created_at: at(0),
    };
    store.add_account(account.clone()).await.unwrap();
    let got = store.account("line-1").await.unwrap().unwrap();
    assert_eq!(got.password_hash, account.password_hash);
    assert_eq!(got.label.as_deref(), Some("factory"));
    assert!(got.enabled);
    assert!(!got.any_serial && got.known_devices);
    assert!(
        !format!("{got:?}").contains("argon2"),
        "Debug must not print the hash"
    );
    let err = store.add_account(account).await.unwrap_err();
    assert_eq!(err, StoreError::Conflict("account 'line-1'".into()));
    assert_eq!(store.account("nobody").await.unwrap(), None);
    let _ = Duration::ZERO;
}

pub(crate) async fn standing_reports_device_and_certificate_state<S>(store: S)
where
    S: CertificateLedger + InventoryReader,
{
    let empty = store.standing("SN-1", Some("01")).await.unwrap();
    assert_eq!(
        empty,
        Standing {
            device: None,
            device_profile: None,
            birth_issuer: None,
            certificate: None
        }
    );
    store
        .record_issuance(certificate("01", "SN-1", CertificateKind::Birth, 1000))
        .await
        .unwrap();
    let s = store.standing("SN-1", Some("01")).await.unwrap();
    assert_eq!(s.device, Some(DeviceStatus::Manufactured));
    let c = s.certificate.unwrap();
    assert_eq!(
        (c.serial.as_str(), c.device_serial.as_str(), c.status),
        ("01", "SN-1", CertificateStatus::Valid)
    );
    assert_eq!(c.not_after, at(1000));
    assert_eq!(
        store.standing("SN-1", None).await.unwrap().certificate,
        None
    );
}

pub(crate) async fn active_operational_certificates_are_counted<S>(store: S)
where
    S: CertificateLedger + InventoryReader + RevocationStore,
{
    for (serial, kind, not_after) in [
        ("01", CertificateKind::Birth, 9000),
        ("02", CertificateKind::Operational, 100),
        ("03", CertificateKind::Operational, 200),
        ("04", CertificateKind::Operational, 300),
    ] {
        store
            .record_issuance(certificate(serial, "SN-1", kind, not_after))
            .await
            .unwrap();
    }
    store
        .record_issuance(certificate("05", "SN-2", CertificateKind::Operational, 300))
        .await
        .unwrap();
    let count = |secs| store.active_operational_certificates("SN-1", at(secs));
    assert_eq!(
        count(50).await.unwrap(),
        3,
        "birth certificates do not count"
    );
    assert_eq!(count(150).await.unwrap(), 2, "expired ones do not count");
    store.revoke("04", "keyCompromise", at(10)).await.unwrap();
    assert_eq!(count(150).await.unwrap(), 1, "revoked ones do not count");
    assert_eq!(
        store
            .active_operational_certificates("SN-9", at(0))
            .await
            .unwrap(),
        0
    );
}

pub(crate) async fn revocation_and_holds_follow_the_rules<S>(store: S)
where
    S: CertificateLedger + InventoryReader + RevocationStore,
{
    let r0 = store.status_revision().await.unwrap();
    store
        .record_issuance(certificate(
            "01",
            "SN-1",
            CertificateKind::Operational,
            1000,
        ))
        .await
        .unwrap();
    store
        .record_issuance(certificate(
            "02",
            "SN-1",
            CertificateKind::Operational,
            1000,
        ))
        .await
        .unwrap();

    let held = store.revoke("01", "certificateHold", at(5)).await.unwrap();
    assert_eq!(held.status, CertificateStatus::OnHold);
    // A held certificate can still be revoked for good; a revoked one cannot change again.
    let revoked = store.revoke("01", "keyCompromise", at(6)).await.unwrap();
    assert_eq!(revoked.status, CertificateStatus::Revoked);
    assert_eq!(revoked.revoked_at, Some(at(6)));
    assert_eq!(revoked.revocation_reason.as_deref(), Some("keyCompromise"));
    assert!(matches!(
        store.revoke("01", "superseded", at(7)).await,
        Err(StoreError::Refused(_))
    ));
    assert!(matches!(
        store.revoke("ff", "superseded", at(7)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.status_revision().await.unwrap() >= r0 + 2);

    let standing = store.certificate_standing("01").await.unwrap().unwrap();
    assert_eq!(standing.issuer, "operational");
    assert_eq!(standing.revocation_reason.as_deref(), Some("keyCompromise"));

    let entries = store.revoked("operational", at(10)).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].serial.as_str(), entries[0].reason.as_str()),
        ("01", "keyCompromise")
    );
    // Expired entries leave the CRL.
    assert!(store
        .revoked("operational", at(2000))
        .await
        .unwrap()
        .is_empty());
}

pub(crate) async fn lifecycle_changes_apply_to_every_live_certificate<S>(store: S)
where
    S: CertificateLedger + InventoryReader + RevocationStore,
{
    store
        .record_issuance(certificate("0a", "SN-L", CertificateKind::Birth, 9000))
        .await
        .unwrap();
    store
        .record_issuance(certificate(
            "0b",
            "SN-L",
            CertificateKind::Operational,
            1000,
        ))
        .await
        .unwrap();
    store
        .record_issuance(certificate("0c", "SN-L", CertificateKind::Operational, 5))
        .await
        .unwrap(); // expired at 10

    let mut held = store
        .change_lifecycle("SN-L", LifecycleChange::Suspend, at(10))
        .await
        .unwrap();
    held.sort();
    assert_eq!(held, ["0a", "0b"]);
    assert_eq!(
        store.device("SN-L").await.unwrap().unwrap().status,
        DeviceStatus::Suspended
    );
    assert_eq!(
        store.certificate("0b").await.unwrap().unwrap().status,
        CertificateStatus::OnHold
    );
    assert!(matches!(
        store
            .change_lifecycle("SN-L", LifecycleChange::Suspend, at(11))
            .await,
        Err(StoreError::Refused(_))
    ));

    let resumed = store
        .change_lifecycle("SN-L", LifecycleChange::Resume, at(12))
        .await
        .unwrap();
    assert_eq!(resumed.len(), 2);
    assert_eq!(
        store.device("SN-L").await.unwrap().unwrap().status,
        DeviceStatus::Active
    );
    let back = store.certificate("0b").await.unwrap().unwrap();
    assert_eq!(
        (back.status, back.revoked_at),
        (CertificateStatus::Valid, None)
    );

    let gone = store
        .change_lifecycle(
            "SN-L",
            LifecycleChange::Decommission {
                reason: "cessationOfOperation".into(),
            },
            at(13),
        )
        .await
        .unwrap();
    assert_eq!(gone.len(), 2);
    assert_eq!(
        store.device("SN-L").await.unwrap().unwrap().status,
        DeviceStatus::Decommissioned
    );
    assert_eq!(
        store.certificate("0a").await.unwrap().unwrap().status,
        CertificateStatus::Revoked
    );
    assert!(matches!(
        store
            .change_lifecycle("SN-L", LifecycleChange::Resume, at(14))
            .await,
        Err(StoreError::Refused(_))
    ));
    assert!(matches!(
        store
            .change_lifecycle("nobody", LifecycleChange::Suspend, at(14))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn superseded_certificates_are_revoked_after_the_grace_period<S>(store: S)
where
    S: CertificateLedger + InventoryReader + RevocationStore,
{
    store
        .record_issuance(certificate(
            "01",
            "SN-S",
            CertificateKind::Operational,
            1000,
        ))
        .await
        .unwrap();
    let mut renewal = certificate("02", "SN-S", CertificateKind::Operational, 2000);
    renewal.replaces = Some("01".into());
    renewal.issued_at = at(100);
    store.record_issuance(renewal).await.unwrap();
    // Renewed at 100: within the grace period at 50, past it at 150.
    assert!(store
        .revoke_superseded(at(50), at(60))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.revoke_superseded(at(150), at(160)).await.unwrap(),
        ["01"]
    );
    let old = store.certificate("01").await.unwrap().unwrap();
    assert_eq!(old.revocation_reason.as_deref(), Some("superseded"));
    assert_eq!(
        store.certificate("02").await.unwrap().unwrap().status,
        CertificateStatus::Valid
    );
}

/// The CRL entry stream delivers every unexpired revoked or held certificate of the CA, in
/// serial order, across batch boundaries (batches are three entries in tests); a consumer
/// that stops early leaves the store usable.
pub(crate) async fn crl_entries_stream_in_serial_order_across_batches<S>(store: S)
where
    S: CertificateLedger + InventoryReader + RevocationStore,
{
    let reasons = [
        "keyCompromise",
        "superseded",
        "certificateHold",
        "cessationOfOperation",
    ];
    // Recorded out of serial order.
    let serials = ["17", "10", "15", "12", "11", "16", "14", "13"];
    for s in serials {
        store
            .record_issuance(certificate(s, "SN-1", CertificateKind::Operational, 1000))
            .await
            .unwrap();
    }
    for s in ["20", "21"] {
        store
            .record_issuance(certificate(s, "SN-1", CertificateKind::Operational, 5))
            .await
            .unwrap();
    }
    store
        .record_issuance(certificate(
            "30",
            "SN-1",
            CertificateKind::Operational,
            1000,
        ))
        .await
        .unwrap();
    for (i, s) in serials.iter().enumerate() {
        let reason = reasons[i % reasons.len()];
        store.revoke(s, reason, at(i as i64)).await.unwrap();
    }
    // Revoked but expired at the time of the CRL: left out.
    store.revoke("20", "keyCompromise", at(1)).await.unwrap();

    let mut expected: Vec<(String, i64, String)> = serials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.to_string(),
                at(i as i64).unix_timestamp(),
                reasons[i % reasons.len()].to_string(),
            )
        })
        .collect();
    expected.sort();

    let mut stream = store.revoked_stream("operational", at(10)).await.unwrap();
    let mut got = Vec::new();
    let mut batches = 0;
    while let Some(batch) = stream.next_batch().await.unwrap() {
        batches += 1;
        got.extend(batch.iter().map(|e| {
            (
                e.serial.to_string(),
                e.revoked_at.unix_timestamp(),
                e.reason.to_string(),
            )
        }));
    }
    assert_eq!(got, expected);
    assert!(batches >= 3, "{batches} batches");
    // The end is final.
    assert!(stream.next_batch().await.unwrap().is_none());

    let records = store.revoked("operational", at(10)).await.unwrap();
    let listed: Vec<(String, i64, String)> = records
        .into_iter()
        .map(|r| (r.serial, r.revoked_at.unix_timestamp(), r.reason))
        .collect();
    assert_eq!(listed, expected);
    assert!(store
        .revoked_stream("manufacturing", at(10))
        .await
        .unwrap()
        .next_batch()
        .await
        .unwrap()
        .is_none());

    // A consumer that stops after one batch: the store keeps answering.
    for _ in 0..3 {
        let mut stream = store.revoked_stream("operational", at(10)).await.unwrap();
        assert!(stream.next_batch().await.unwrap().is_some());
        drop(stream);
    }
    assert_eq!(store.revoked("operational", at(10)).await.unwrap().len(), 8);
}

pub(crate) async fn crl_numbers_only_grow<S>(store: S)
where
    S: RevocationStore,
{
    let a = store.allocate_crl_number("operational").await.unwrap();
    let b = store.allocate_crl_number("operational").await.unwrap();
    let c = store.allocate_crl_number("manufacturing").await.unwrap();
    assert_eq!((a, b, c), (1, 2, 1));
    store
        .store_crl("operational", b, at(0), at(10), vec![1, 2].into())
        .await
        .unwrap();
}

fn station(name: &str, quota: Option<u64>) -> NewStation {
    NewStation {
        name: name.into(),
        serial_pattern: "^SN-".into(),
        range_from: None,
        range_to: None,
        quota,
        valid_days: 365,
        allow_reissue: false,
        credential_serial: "aa".into(),
        created_at: at(0),
    }
}

fn birth_of(serial: &str, device: &str, station: &str, reissue: bool) -> NewCertificate {
    let mut c = certificate(serial, device, CertificateKind::Birth, 9000);
    c.birth = Some(BirthContext {
        station: Some(station.into()),
        reissue,
        model: Some("M1".into()),
        batch: None,
    });
    c
}

pub(crate) async fn stations_are_charged_in_the_issuing_transaction<S>(store: S)
where
    S: CertificateLedger + InventoryReader + StationStore,
{
    store.add_station(station("line-1", Some(2))).await.unwrap();
    assert!(matches!(
        store.add_station(station("line-1", None)).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .record_issuance(birth_of("01", "SN-1", "line-1", false))
        .await
        .unwrap();
    // One live birth certificate per device unless re-issue is explicit.
    let dup = store
        .record_issuance(birth_of("02", "SN-1", "line-1", false))
        .await
        .unwrap_err();
    assert!(
        matches!(&dup, StoreError::Refused(r) if r.contains("already has a live birth certificate")),
        "{dup:?}"
    );
    assert_eq!(
        store.certificate("02").await.unwrap(),
        None,
        "a refused certificate is not recorded"
    );
    store
        .record_issuance(birth_of("03", "SN-1", "line-1", true))
        .await
        .unwrap();
    // Quota 2 is used up now.
    let over = store
        .record_issuance(birth_of("04", "SN-2", "line-1", false))
        .await
        .unwrap_err();
    assert!(
        matches!(&over, StoreError::Limit { rule, reason } if rule == "station-quota" && reason.contains("quota of 2")),
        "{over:?}"
    );
    let s = store.station("line-1").await.unwrap().unwrap();
    assert_eq!((s.issued, s.status), (2, StationStatus::Active));
    assert!(store
        .has_live_birth_certificate("SN-1", at(10))
        .await
        .unwrap());
    assert!(!store
        .has_live_birth_certificate("SN-2", at(10))
        .await
        .unwrap());
    assert!(!store
        .has_live_birth_certificate("SN-1", at(99_999))
        .await
        .unwrap());

    store.add_station(station("line-2", None)).await.unwrap();
    store
        .set_station_status("line-2", StationStatus::Suspended, at(1))
        .await
        .unwrap();
    let suspended = store
        .record_issuance(birth_of("05", "SN-3", "line-2", false))
        .await
        .unwrap_err();
    assert!(
        matches!(&suspended, StoreError::Refused(r) if r.contains("suspended")),
        "{suspended:?}"
    );
    store
        .set_station_status("line-2", StationStatus::Removed, at(2))
        .await
        .unwrap();
    assert!(matches!(
        store
            .set_station_status("line-2", StationStatus::Active, at(3))
            .await,
        Err(StoreError::Refused(_))
    ));
    assert_eq!(store.stations().await.unwrap().len(), 2);
}

pub(crate) async fn the_audit_chain_detects_tampering<S>(store: S, tamper: impl FnOnce())
where
    S: AuditLog,
{
    for i in 0..5 {
        store
            .append(AuditEvent {
                at: at(i),
                actor: format!("station:line-{}", i % 2),
                action: "birth-enroll".into(),
                subject: format!("SN-{i}"),
                outcome: "granted".into(),
                detail: "ok".into(),
            })
            .await
            .unwrap();
    }
    assert_eq!(store.verify_audit_chain().await.unwrap(), Ok(5));
    let line0 = store
        .audit_events(Some("station:line-0"), 10)
        .await
        .unwrap();
    assert_eq!(line0.len(), 3);
    assert!(line0[0].id > line0[1].id, "newest first");
    tamper();
    assert_eq!(store.verify_audit_chain().await.unwrap(), Err(3));
}

pub(crate) async fn stored_crls_are_served_by_number<S>(store: S)
where
    S: RevocationStore,
{
    assert_eq!(store.stored_crl("operational", 0).await.unwrap(), None);
    let one = store.allocate_crl_number("operational").await.unwrap();
    store
        .store_crl("operational", one, at(0), at(10), vec![1].into())
        .await
        .unwrap();
    let two = store.allocate_crl_number("operational").await.unwrap();
    // While CRL 2 is being built, the stored one is still CRL 1.
    let stored = store.stored_crl("operational", 0).await.unwrap().unwrap();
    assert_eq!((stored.number, stored.der.as_slice()), (1, &[1u8][..]));
    assert_eq!(stored.next_update, at(10));
    assert_eq!(store.stored_crl("operational", 1).await.unwrap(), None);
    let three = store.allocate_crl_number("operational").await.unwrap();
    store
        .store_crl("operational", three, at(2), at(12), vec![3].into())
        .await
        .unwrap();
    // A slower builder of CRL 2 finishes last: it does not replace CRL 3.
    store
        .store_crl("operational", two, at(1), at(11), vec![2].into())
        .await
        .unwrap();
    let stored = store.stored_crl("operational", 1).await.unwrap().unwrap();
    assert_eq!((stored.number, stored.der), (3, vec![3]));
    assert_eq!(store.stored_crl("manufacturing", 0).await.unwrap(), None);
}

/// Many concurrent birth requests against one station: exactly `quota` are recorded, the
/// counter says so, and every other one is refused for the quota.
pub(crate) async fn concurrent_births_never_exceed_a_station_quota<S>(store: S)
where
    S: CertificateLedger + InventoryReader + StationStore + Clone + 'static,
{
    store.add_station(station("line-q", Some(7))).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.record_issuance(birth_of(
                &format!("b{i:03x}"),
                &format!("SN-Q{i}"),
                "line-q",
                false,
            ))
            .await
        }));
    }
    let mut granted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => granted += 1,
            Err(StoreError::Limit { rule, reason }) => {
                assert_eq!(rule, "station-quota");
                assert!(reason.contains("quota of 7"), "{reason}");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(granted, 7);
    assert_eq!(store.station("line-q").await.unwrap().unwrap().issued, 7);
    let recorded = store
        .certificates(&CertificateQuery {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(recorded.len(), 7);
}

/// Concurrent appenders: one unbroken chain with every event in it.
pub(crate) async fn concurrent_audit_appends_keep_one_chain<S>(store: S)
where
    S: AuditLog + Clone + 'static,
{
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.append(AuditEvent {
                at: at(i),
                actor: format!("device:SN-{i}"),
                action: "simpleenroll".into(),
                subject: format!("SN-{i}"),
                outcome: "granted".into(),
                detail: format!("{i}"),
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.verify_audit_chain().await.unwrap(), Ok(60));
}

/// Concurrent allocations of CRL numbers: each number once, no gaps.
pub(crate) async fn concurrent_crl_allocations_never_repeat<S>(store: S)
where
    S: RevocationStore + Clone + 'static,
{
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.allocate_crl_number("operational").await
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap().unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=40).collect::<Vec<u64>>());
}

/// Many holders racing for a free lease: exactly one gets it.
pub(crate) async fn concurrent_lease_claims_have_one_winner<S>(store: S)
where
    S: MonitoringStore + Clone + 'static,
{
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.acquire_lease("crl", &format!("node-{i}"), at(0), at(30))
                .await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}
