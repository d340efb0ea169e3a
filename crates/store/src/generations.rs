//! Generations of the CAs (root, manufacturing, operational, registration): every key and
//! certificate a CA has had, when each one takes over issuing, and the link certificates
//! of a root rollover. Shared by every node of a database, so that all of them switch to a
//! new generation at its activation time without a restart.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StoreError;

/// One generation of a CA, as recorded (and as recorded again by a rollover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaGeneration {
    /// The CA: `root`, `manufacturing`, `operational` or `registration`.
    pub ca: String,
    /// 1 for the CA `fleetca init` created, then 2, 3, ...
    pub generation: u32,
    /// The generation's CA certificate (DER).
    pub certificate_der: Vec<u8>,
    /// Where its key is, as a configuration key setting: a path relative to the data
    /// directory, or `pkcs11:<label>`.
    pub key: String,
    /// Validity of the certificate.
    pub not_before: OffsetDateTime,
    /// End of validity of the certificate.
    pub not_after: OffsetDateTime,
    /// From this time on the generation issues (until a later generation activates).
    pub activate_at: OffsetDateTime,
    /// When it was recorded.
    pub created_at: OffsetDateTime,
    /// For an issuing CA: the root generation that certified it. `None` for a root.
    pub root_generation: Option<u32>,
    /// For a root of generation 2 or later: the link certificates to the previous root.
    pub links: Option<LinkCertificates>,
}

/// The two link certificates of a root rollover (RFC 4210 section 4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCertificates {
    /// The new root's key certified by the previous root ("NewWithOld"): devices that
    /// trust only the previous root reach the new one through it.
    pub new_with_old: Vec<u8>,
    /// The previous root's key certified by the new root ("OldWithNew").
    pub old_with_new: Vec<u8>,
}

/// Read and record CA generations.
#[async_trait]
pub trait CaGenerationStore: Send + Sync {
    /// Every recorded generation, by CA name then generation number.
    async fn ca_generations(&self) -> Result<Vec<CaGeneration>, StoreError>;
}

/// Checks inside a write transaction that `new` may be recorded after `existing` (the
/// recorded generations of the same CA): numbers follow each other, and no generation of
/// that CA is still waiting for its activation time at `at`.
pub(crate) fn admissible(
    existing: &[CaGeneration],
    new: &[CaGeneration],
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    for n in new {
        let same_ca = existing.iter().filter(|e| e.ca == n.ca);
        if let Some(pending) = same_ca.clone().find(|e| e.activate_at > at) {
            return Err(StoreError::Refused(format!(
                "{} CA generation {} is pending (it activates at {}); wait for it to activate before the next rollover",
                pending.ca, pending.generation, pending.activate_at
            )));
        }
        let highest = same_ca
            .map(|e| e.generation)
            .chain(
                new.iter()
                    .take_while(|m| !std::ptr::eq(*m, n))
                    .filter(|m| m.ca == n.ca)
                    .map(|m| m.generation),
            )
            .max()
            .unwrap_or(0);
        if n.generation != highest.saturating_add(1) {
            return Err(StoreError::Conflict(format!(
                "{} CA generation {} (the next one is {})",
                n.ca,
                n.generation,
                highest.saturating_add(1)
            )));
        }
    }
    Ok(())
}

/// Backend-generic tests of [`CaGenerationStore`]; every backend runs them unchanged.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use crate::conformance::at;
    use crate::*;

    fn generation(ca: &str, n: u32, activate_at: i64) -> CaGeneration {
        CaGeneration {
            ca: ca.into(),
            generation: n,
            certificate_der: vec![0x30, 0x03, 0x02, 0x01, n as u8],
            key: format!("pki/{ca}-ca.{n}.key"),
            not_before: at(0),
            not_after: at(10_000),
            activate_at: at(activate_at),
            created_at: at(0),
            root_generation: (ca != "root").then_some(1),
            links: (ca == "root" && n > 1).then(|| LinkCertificates {
                new_with_old: vec![1, 2, 3],
                old_with_new: vec![4, 5, 6],
            }),
        }
    }

    fn event(subject: &str) -> AuditEvent {
        AuditEvent {
            at: at(100),
            actor: "cli:alice".into(),
            action: "ca-rollover".into(),
            subject: subject.into(),
            outcome: "granted".into(),
            detail: String::new(),
        }
    }

    pub(crate) async fn generations_follow_each_other_one_pending_at_a_time<S>(store: S)
    where
        S: CaGenerationStore + OperatorLog + AuditLog,
    {
        assert!(store.ca_generations().await.unwrap().is_empty());
        // The first rollover records the generation `init` made and the new one together.
        store
            .apply_audited(
                OperatorChange::AddCaGenerations(vec![
                    generation("operational", 1, 0),
                    generation("operational", 2, 500),
                ]),
                at(100),
                event("ca:operational"),
            )
            .await
            .unwrap();
        // Generation 2 is pending until 500: a second rollover is refused, and so is a
        // rollover that skips a number; neither records anything.
        let refused = store
            .apply_audited(
                OperatorChange::AddCaGenerations(vec![generation("operational", 3, 600)]),
                at(200),
                event("ca:operational"),
            )
            .await;
        assert!(
            matches!(&refused, Err(StoreError::Refused(m)) if m.contains("generation 2 is pending")),
            "{refused:?}"
        );
        let skipped = store
            .apply_audited(
                OperatorChange::AddCaGenerations(vec![generation("operational", 4, 700)]),
                at(600),
                event("ca:operational"),
            )
            .await;
        assert!(
            matches!(skipped, Err(StoreError::Conflict(_))),
            "{skipped:?}"
        );
        // Another CA is independent of the pending operational generation.
        store
            .apply_audited(
                OperatorChange::AddCaGenerations(vec![
                    generation("root", 1, 0),
                    generation("root", 2, 200),
                ]),
                at(200),
                event("ca:root"),
            )
            .await
            .unwrap();
        // Once generation 2 is active, generation 3 may follow.
        store
            .apply_audited(
                OperatorChange::AddCaGenerations(vec![generation("operational", 3, 600)]),
                at(500),
                event("ca:operational"),
            )
            .await
            .unwrap();
        let all = store.ca_generations().await.unwrap();
        let names: Vec<(String, u32)> = all.iter().map(|g| (g.ca.clone(), g.generation)).collect();
        assert_eq!(
            names,
            [
                ("operational".to_string(), 1),
                ("operational".to_string(), 2),
                ("operational".to_string(), 3),
                ("root".to_string(), 1),
                ("root".to_string(), 2),
            ]
        );
        // Every field reads back as written.
        assert_eq!(all[1], generation("operational", 2, 500));
        assert_eq!(all[4], generation("root", 2, 200));
        // The refused changes left no audit event: three rollovers, three events.
        let trail = store.audit_events(None, 100).await.unwrap();
        assert_eq!(
            trail
                .iter()
                .filter(|r| r.event.action == "ca-rollover")
                .count(),
            3
        );
    }
}
