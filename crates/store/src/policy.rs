//! What the registration authority keeps between requests: every decision with the result
//! of each rule, the manual-approval queue, and the counts behind per-device rate limits.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StoreError;

/// How a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// A certificate was issued (or an already issued one returned).
    Issued,
    /// Refused by a rule.
    Denied,
    /// Waiting for an operator (EST 202).
    Pending,
    /// A connector could not answer; the device was told to retry (EST 503).
    Unavailable,
}

impl DecisionOutcome {
    /// Stable name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Denied => "denied",
            Self::Pending => "pending",
            Self::Unavailable => "unavailable",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "issued" => Self::Issued,
            "denied" => Self::Denied,
            "pending" => Self::Pending,
            "unavailable" => Self::Unavailable,
            _ => return None,
        })
    }
}

/// The result of one rule in a decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleResult {
    /// technical, authentication, identity, eligibility or approval.
    pub stage: String,
    /// Rule name.
    pub rule: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it found (operator-facing; may name connectors).
    pub detail: String,
}

/// A decision to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDecision {
    /// When.
    pub at: OffsetDateTime,
    /// The device, once the RA established it.
    pub device_serial: Option<String>,
    /// Who asked (e.g. `birth certificate 3a.. of SN-1`).
    pub client: String,
    /// simpleenroll, simplereenroll, serverkeygen or birth.
    pub operation: String,
    /// The EST label, if any.
    pub label: Option<String>,
    /// The profile the label maps to.
    pub profile: String,
    /// How it ended.
    pub outcome: DecisionOutcome,
    /// The rule that denied or deferred, if any.
    pub rule: Option<String>,
    /// Its reason.
    pub reason: Option<String>,
    /// Every rule evaluated, in order.
    pub checks: Vec<RuleResult>,
    /// The certificate issued, if any.
    pub certificate_serial: Option<String>,
    /// The approval request involved, if any.
    pub approval_id: Option<i64>,
}

/// A recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// Row id (grows with time).
    pub id: i64,
    /// The decision.
    pub decision: NewDecision,
}

/// Where a manual-approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    /// Waiting for an operator.
    Pending,
    /// Approved; the device's next poll gets the certificate.
    Approved,
    /// Rejected; the device's next poll gets 403.
    Rejected,
    /// Approved and issued.
    Issued,
}

impl ApprovalState {
    /// Stable name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Issued => "issued",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            "issued" => Self::Issued,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request that needs an operator's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApproval {
    /// What identifies "the same request" when the device polls again: a digest of the
    /// profile, device, operation and the CSR's public key.
    pub request_key: String,
    /// The device.
    pub device_serial: String,
    /// The EST label, if any.
    pub label: Option<String>,
    /// The profile.
    pub profile: String,
    /// simpleenroll or simplereenroll.
    pub operation: String,
    /// Who asked.
    pub client: String,
    /// Why approval is needed (the rule's words).
    pub reason: String,
    /// When the request first arrived.
    pub created_at: OffsetDateTime,
}

/// An approval request and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// Id operators approve or reject by.
    pub id: i64,
    /// The request.
    pub request: NewApproval,
    /// Where it stands.
    pub state: ApprovalState,
    /// Who decided, and when.
    pub decided_by: Option<String>,
    /// When it was decided.
    pub decided_at: Option<OffsetDateTime>,
    /// The operator's reason (shown to the device on rejection).
    pub decision_reason: Option<String>,
    /// The certificate issued after approval.
    pub certificate_serial: Option<String>,
    /// How many times the device polled.
    pub polls: u32,
}

/// Decisions, approvals and rate-limit counts.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Records a decision; returns its id.
    async fn record_decision(&self, decision: NewDecision) -> Result<i64, StoreError>;
    /// The newest decisions (optionally of one device), newest first.
    async fn decisions(
        &self,
        device_serial: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DecisionRecord>, StoreError>;

    /// Opens an approval request, or, if one with the same `request_key` is pending or
    /// approved, counts the poll and returns it. Callers read [`Self::approval_by_key`]
    /// first: a rejected or issued request is answered from there, not reopened.
    async fn open_approval(&self, request: NewApproval) -> Result<ApprovalRecord, StoreError>;
    /// The newest approval request with this key, whatever its state (read only).
    async fn approval_by_key(
        &self,
        request_key: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError>;
    /// One approval request.
    async fn approval(&self, id: i64) -> Result<Option<ApprovalRecord>, StoreError>;
    /// Approval requests, oldest first, optionally only in one state.
    async fn approvals(
        &self,
        state: Option<ApprovalState>,
        limit: u32,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;
    /// Approves or rejects a pending request. [`StoreError::NotFound`] if unknown,
    /// [`StoreError::Refused`] if it is not pending.
    async fn decide_approval(
        &self,
        id: i64,
        approve: bool,
        by: &str,
        reason: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<ApprovalRecord, StoreError>;
    /// Takes an approved request for issuance until `until`, so that concurrent polls (on
    /// any node) issue it once. False if it is not approved or another claim is live.
    async fn claim_approval(
        &self,
        id: i64,
        at: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Marks a claimed request issued, with its certificate.
    async fn complete_approval(
        &self,
        id: i64,
        certificate_serial: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Lets the device re-enroll outside the profile's re-enrollment window until `until`
    /// (an operator's override). [`StoreError::NotFound`] for an unknown device.
    async fn force_reenroll(
        &self,
        device_serial: &str,
        until: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Until when the device may re-enroll outside the window, if an override was set.
    async fn reenroll_forced_until(
        &self,
        device_serial: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError>;
}

/// Backend-generic tests of [`PolicyStore`]; every backend runs them unchanged.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod conformance {
    use super::*;
    use crate::conformance::{at, certificate};
    use crate::{CertificateKind, CertificateLedger, InventoryReader};

    pub(crate) fn decision(device: &str, outcome: DecisionOutcome, secs: i64) -> NewDecision {
        NewDecision {
            at: at(secs),
            device_serial: Some(device.into()),
            client: format!("birth certificate of {device}"),
            operation: "simpleenroll".into(),
            label: Some("sensors".into()),
            profile: "operational".into(),
            outcome,
            rule: (outcome == DecisionOutcome::Denied).then(|| "inventory".to_string()),
            reason: (outcome == DecisionOutcome::Denied).then(|| "unknown device".to_string()),
            checks: vec![
                RuleResult {
                    stage: "technical".into(),
                    rule: "key-algorithm".into(),
                    passed: true,
                    detail: "P-256 key allowed".into(),
                },
                RuleResult {
                    stage: "eligibility".into(),
                    rule: "inventory".into(),
                    passed: outcome != DecisionOutcome::Denied,
                    detail: "device known to 'cmdb'".into(),
                },
            ],
            certificate_serial: (outcome == DecisionOutcome::Issued).then(|| "0a".to_string()),
            approval_id: None,
        }
    }

    pub(crate) fn approval_request(key: &str, device: &str) -> NewApproval {
        NewApproval {
            request_key: key.into(),
            device_serial: device.into(),
            label: None,
            profile: "operational".into(),
            operation: "simpleenroll".into(),
            client: format!("birth certificate of {device}"),
            reason: "new devices need an operator".into(),
            created_at: at(0),
        }
    }

    pub(crate) async fn decisions_keep_every_rule_result<S: PolicyStore>(store: S) {
        let first = store
            .record_decision(decision("SN-1", DecisionOutcome::Denied, 1))
            .await
            .unwrap();
        let second = store
            .record_decision(decision("SN-2", DecisionOutcome::Issued, 2))
            .await
            .unwrap();
        assert!(second > first);
        let third = store
            .record_decision(decision("SN-1", DecisionOutcome::Issued, 3))
            .await
            .unwrap();

        let all = store.decisions(None, 10).await.unwrap();
        let ids: Vec<i64> = all.iter().map(|d| d.id).collect();
        assert_eq!(ids, [third, second, first], "newest first");
        assert_eq!(
            all[2].decision,
            decision("SN-1", DecisionOutcome::Denied, 1)
        );

        let sn1 = store.decisions(Some("SN-1"), 10).await.unwrap();
        assert_eq!(sn1.len(), 2);
        assert!(sn1
            .iter()
            .all(|d| d.decision.device_serial.as_deref() == Some("SN-1")));
        assert_eq!(store.decisions(None, 1).await.unwrap().len(), 1);
        assert!(store.decisions(Some("SN-9"), 10).await.unwrap().is_empty());
    }

    pub(crate) async fn approvals_go_from_pending_to_issued_once<S: PolicyStore>(store: S) {
        let opened = store
            .open_approval(approval_request("k1", "SN-1"))
            .await
            .unwrap();
        assert_eq!(opened.state, ApprovalState::Pending);
        assert_eq!(opened.polls, 1);
        // The device polls again with the same request: same id, counted.
        let again = store
            .open_approval(approval_request("k1", "SN-1"))
            .await
            .unwrap();
        assert_eq!((again.id, again.polls), (opened.id, 2));
        let other = store
            .open_approval(approval_request("k2", "SN-2"))
            .await
            .unwrap();
        assert_ne!(other.id, opened.id);

        // Not approved yet: nothing to claim or complete.
        assert!(!store
            .claim_approval(opened.id, at(1), at(61))
            .await
            .unwrap());
        assert!(matches!(
            store.complete_approval(opened.id, "0a", at(1)).await,
            Err(StoreError::Refused(_))
        ));

        let pending = store
            .approvals(Some(ApprovalState::Pending), 10)
            .await
            .unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].id, opened.id, "oldest first");

        let approved = store
            .decide_approval(opened.id, true, "alice", None, at(5))
            .await
            .unwrap();
        assert_eq!(approved.state, ApprovalState::Approved);
        assert_eq!(approved.decided_by.as_deref(), Some("alice"));
        assert_eq!(approved.decided_at, Some(at(5)));
        // Deciding twice is refused; unknown ids are not found.
        assert!(matches!(
            store
                .decide_approval(opened.id, false, "bob", None, at(6))
                .await,
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            store.decide_approval(999, true, "bob", None, at(6)).await,
            Err(StoreError::NotFound(_))
        ));

        // One claim at a time; an expired claim can be taken over.
        assert!(store
            .claim_approval(opened.id, at(10), at(70))
            .await
            .unwrap());
        assert!(!store
            .claim_approval(opened.id, at(11), at(71))
            .await
            .unwrap());
        assert!(store
            .claim_approval(opened.id, at(70), at(130))
            .await
            .unwrap());
        store
            .complete_approval(opened.id, "0a", at(80))
            .await
            .unwrap();
        let issued = store.approval(opened.id).await.unwrap().unwrap();
        assert_eq!(issued.state, ApprovalState::Issued);
        assert_eq!(issued.certificate_serial.as_deref(), Some("0a"));
        assert!(!store
            .claim_approval(opened.id, at(200), at(260))
            .await
            .unwrap());
        assert_eq!(
            store.approval_by_key("k1").await.unwrap().map(|a| a.id),
            Some(opened.id)
        );

        // Rejection carries the operator's reason.
        let rejected = store
            .decide_approval(other.id, false, "alice", Some("not ours"), at(9))
            .await
            .unwrap();
        assert_eq!(rejected.state, ApprovalState::Rejected);
        assert_eq!(rejected.decision_reason.as_deref(), Some("not ours"));
        // A closed request does not block a new one with the same key.
        let reopened = store
            .open_approval(approval_request("k2", "SN-2"))
            .await
            .unwrap();
        assert_ne!(reopened.id, other.id);
        assert_eq!(
            store.approval_by_key("k2").await.unwrap().map(|a| a.id),
            Some(reopened.id)
        );
        assert!(store.approval_by_key("k3").await.unwrap().is_none());
        assert_eq!(store.approvals(None, 10).await.unwrap().len(), 3);
    }

    pub(crate) async fn concurrent_polls_open_one_approval<S>(store: S)
    where
        S: PolicyStore + Clone + 'static,
    {
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .open_approval(approval_request("same", "SN-1"))
                    .await
                    .unwrap()
                    .id
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{ids:?}");
        let a = store.approval(ids[0]).await.unwrap().unwrap();
        assert_eq!(a.polls, 16);

        store
            .decide_approval(a.id, true, "alice", None, at(1))
            .await
            .unwrap();
        let mut claims = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            claims.push(tokio::spawn(async move {
                store.claim_approval(a.id, at(2), at(62)).await.unwrap()
            }));
        }
        let mut won = 0;
        for c in claims {
            won += u32::from(c.await.unwrap());
        }
        assert_eq!(won, 1, "exactly one concurrent claim wins");
    }

    pub(crate) async fn rate_counts_and_reenroll_overrides<S>(store: S)
    where
        S: PolicyStore + CertificateLedger + InventoryReader,
    {
        for (serial, issued) in [("01", 10), ("02", 20), ("03", 30)] {
            let mut c = certificate(serial, "SN-1", CertificateKind::Operational, 1000);
            c.issued_at = at(issued);
            store.record_issuance(c).await.unwrap();
        }
        let mut c = certificate("04", "SN-2", CertificateKind::Operational, 1000);
        c.issued_at = at(30);
        store.record_issuance(c).await.unwrap();
        let mut c = certificate("05", "SN-1", CertificateKind::Birth, 1000);
        c.issued_at = at(40);
        store.record_issuance(c).await.unwrap();

        // Both limits' counts in one read: active operational certificates at `now`, and
        // every certificate (birth included) issued since `since`.
        let counts = |device: &'static str, now: i64, since: Option<i64>| {
            let store = &store;
            async move {
                let c = store
                    .limit_counts(device, at(now), since.map(at))
                    .await
                    .unwrap();
                (c.active_operational, c.issued_since)
            }
        };
        assert_eq!(counts("SN-1", 50, Some(0)).await, (3, 4));
        assert_eq!(counts("SN-1", 50, Some(20)).await, (3, 3));
        assert_eq!(counts("SN-1", 50, Some(41)).await, (3, 0));
        assert_eq!(counts("SN-1", 50, None).await, (3, 0), "nothing asked");
        assert_eq!(counts("SN-1", 1000, Some(0)).await, (0, 4), "expired");
        assert_eq!(counts("SN-9", 0, Some(0)).await, (0, 0), "unknown device");

        assert_eq!(store.reenroll_forced_until("SN-1").await.unwrap(), None);
        store.force_reenroll("SN-1", at(500)).await.unwrap();
        assert_eq!(
            store.reenroll_forced_until("SN-1").await.unwrap(),
            Some(at(500))
        );
        assert_eq!(store.reenroll_forced_until("SN-2").await.unwrap(), None);
        assert!(matches!(
            store.force_reenroll("SN-9", at(500)).await,
            Err(StoreError::NotFound(_))
        ));
    }

    pub(crate) async fn decisions_are_recorded_with_their_certificate<S>(store: S)
    where
        S: PolicyStore + CertificateLedger + crate::InventoryReader,
    {
        // A plain issuance with its decision: one commit, the decision names the serial.
        let mut c = certificate("0a", "SN-1", CertificateKind::Operational, 1000);
        c.decision = Some(decision("SN-1", DecisionOutcome::Issued, 1));
        store.record_issuance(c).await.unwrap();
        let log = store.decisions(Some("SN-1"), 10).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].decision.certificate_serial.as_deref(), Some("0a"));

        // Fulfilling an approved request completes it in the same commit.
        let a = store
            .open_approval(approval_request("k1", "SN-2"))
            .await
            .unwrap();
        store
            .decide_approval(a.id, true, "alice", None, at(1))
            .await
            .unwrap();
        assert!(store.claim_approval(a.id, at(2), at(62)).await.unwrap());
        let mut c = certificate("0b", "SN-2", CertificateKind::Operational, 1000);
        let mut d = decision("SN-2", DecisionOutcome::Issued, 3);
        d.approval_id = Some(a.id);
        c.decision = Some(d.clone());
        store.record_issuance(c).await.unwrap();
        let done = store.approval(a.id).await.unwrap().unwrap();
        assert_eq!(done.state, ApprovalState::Issued);
        assert_eq!(done.certificate_serial.as_deref(), Some("0b"));

        // The same approval cannot be fulfilled twice: nothing of the second is kept.
        let mut again = certificate("0c", "SN-2", CertificateKind::Operational, 1000);
        again.decision = Some(d);
        assert!(matches!(
            store.record_issuance(again).await,
            Err(StoreError::Refused(_))
        ));
        assert!(store.certificate("0c").await.unwrap().is_none());
        assert_eq!(store.decisions(Some("SN-2"), 10).await.unwrap().len(), 1);
    }

    /// The recording commit re-checks what the RA read before it: once the device is
    /// suspended or decommissioned, or the authenticating certificate is revoked, held or
    /// unknown, nothing of the issuance is recorded, on every recording path (plain, with
    /// its decision, fulfilling an approval, birth).
    pub(crate) async fn issuance_needs_the_device_and_credential_to_still_stand<S>(store: S)
    where
        S: PolicyStore + CertificateLedger + crate::InventoryReader + crate::RevocationStore,
    {
        let refused = |r: Result<(), StoreError>, expected: &str| match r {
            Err(StoreError::Refused(reason)) => {
                assert!(reason.contains(expected), "{reason:?} lacks {expected:?}")
            }
            other => panic!("expected a refusal ({expected}), got {other:?}"),
        };
        let by = |serial: &str, device: &str, credential: &str| {
            let mut c = certificate(serial, device, CertificateKind::Operational, 1000);
            c.authenticated_by = Some(credential.into());
            c
        };
        store
            .record_issuance(certificate("01", "SN-G", CertificateKind::Birth, 9000))
            .await
            .unwrap();
        store.record_issuance(by("02", "SN-G", "01")).await.unwrap();
        refused(
            store.record_issuance(by("03", "SN-G", "ff")).await,
            "client certificate ff is not in the inventory",
        );

        // Revoked credential, with the decision in the same statement.
        store.revoke("02", "keyCompromise", at(5)).await.unwrap();
        let mut renewal = by("04", "SN-G", "02");
        renewal.decision = Some(decision("SN-G", DecisionOutcome::Issued, 6));
        refused(
            store.record_issuance(renewal).await,
            "client certificate 02 is revoked",
        );
        store.record_issuance(by("05", "SN-G", "01")).await.unwrap();

        // Suspended: the held credential and the device both refuse, also for a request
        // fulfilling an approval (a transaction) and for a birth certificate.
        store
            .change_lifecycle("SN-G", crate::LifecycleChange::Suspend, at(7))
            .await
            .unwrap();
        refused(
            store.record_issuance(by("06", "SN-G", "05")).await,
            "device SN-G is suspended",
        );
        let a = store
            .open_approval(approval_request("kg", "SN-G"))
            .await
            .unwrap();
        store
            .decide_approval(a.id, true, "alice", None, at(8))
            .await
            .unwrap();
        assert!(store.claim_approval(a.id, at(8), at(68)).await.unwrap());
        let mut approved = certificate("07", "SN-G", CertificateKind::Operational, 1000);
        let mut d = decision("SN-G", DecisionOutcome::Issued, 9);
        d.approval_id = Some(a.id);
        approved.decision = Some(d);
        refused(
            store.record_issuance(approved).await,
            "device SN-G is suspended",
        );
        refused(
            store
                .record_issuance(certificate("08", "SN-G", CertificateKind::Birth, 9000))
                .await,
            "device SN-G is suspended",
        );
        store
            .change_lifecycle(
                "SN-G",
                crate::LifecycleChange::Decommission {
                    reason: "cessationOfOperation".into(),
                },
                at(10),
            )
            .await
            .unwrap();
        refused(
            store.record_issuance(by("09", "SN-G", "05")).await,
            "device SN-G is decommissioned",
        );

        for serial in ["03", "04", "06", "07", "08", "09"] {
            assert!(
                store.certificate(serial).await.unwrap().is_none(),
                "{serial}"
            );
        }
        // Only the decisions of recorded certificates exist; the approval stays approved.
        assert!(store.decisions(Some("SN-G"), 10).await.unwrap().is_empty());
        assert_eq!(
            store.approval(a.id).await.unwrap().unwrap().state,
            ApprovalState::Approved
        );
        // An operational certificate still moves a manufactured device to active.
        store
            .record_issuance(certificate("0a", "SN-H", CertificateKind::Birth, 9000))
            .await
            .unwrap();
        store.record_issuance(by("0b", "SN-H", "0a")).await.unwrap();
        assert_eq!(
            store.device("SN-H").await.unwrap().unwrap().status,
            crate::DeviceStatus::Active
        );
    }
}
