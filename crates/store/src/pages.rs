//! Paging back through the audit trail and the decision log by id (keyset: stable while
//! new rows are appended, no OFFSET).

use async_trait::async_trait;

use crate::model::AuditRecord;
use crate::policy::DecisionRecord;
use crate::StoreError;

/// Older pages of the audit trail and the decision log.
#[async_trait]
pub trait HistoryPages: Send + Sync {
    /// Audit events (optionally of one actor) with an id below `before` (`None`: the
    /// newest), newest first.
    async fn audit_page(
        &self,
        actor: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// Decisions (optionally of one device) with an id below `before`, newest first.
    async fn decision_page(
        &self,
        device_serial: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DecisionRecord>, StoreError>;
}

/// Backend-generic tests of [`HistoryPages`]; every backend runs them unchanged.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use crate::conformance::at;
    use crate::policy::{conformance::decision, DecisionOutcome, PolicyStore};
    use crate::{AuditEvent, AuditLog};

    pub(crate) async fn history_is_paged_by_id_newest_first<S>(store: S)
    where
        S: HistoryPages + AuditLog + PolicyStore,
    {
        for i in 0..7 {
            store
                .append(AuditEvent {
                    at: at(i),
                    actor: if i % 2 == 0 { "cli:a" } else { "cli:b" }.into(),
                    action: "x".into(),
                    subject: format!("s{i}"),
                    outcome: "granted".into(),
                    detail: String::new(),
                })
                .await
                .unwrap();
            store
                .record_decision(decision(
                    if i % 2 == 0 { "SN-A" } else { "SN-B" },
                    DecisionOutcome::Denied,
                    i,
                ))
                .await
                .unwrap();
        }
        let subjects = |page: &[AuditRecord]| -> Vec<String> {
            page.iter().map(|r| r.event.subject.clone()).collect()
        };
        let first = store.audit_page(None, None, 3).await.unwrap();
        assert_eq!(subjects(&first), ["s6", "s5", "s4"]);
        let next = store
            .audit_page(None, first.last().map(|r| r.id), 3)
            .await
            .unwrap();
        assert_eq!(subjects(&next), ["s3", "s2", "s1"]);
        let a = store.audit_page(Some("cli:a"), None, 2).await.unwrap();
        assert_eq!(subjects(&a), ["s6", "s4"]);
        let a = store
            .audit_page(Some("cli:a"), a.last().map(|r| r.id), 10)
            .await
            .unwrap();
        assert_eq!(subjects(&a), ["s2", "s0"]);

        let all = store.decision_page(None, None, 10).await.unwrap();
        assert_eq!(all.len(), 7);
        let older = store
            .decision_page(None, Some(all[2].id), 10)
            .await
            .unwrap();
        assert_eq!(older.len(), 4);
        assert!(older.iter().all(|d| d.id < all[2].id));
        let b = store.decision_page(Some("SN-B"), None, 2).await.unwrap();
        assert_eq!(b.len(), 2);
        let b_rest = store
            .decision_page(Some("SN-B"), b.last().map(|d| d.id), 10)
            .await
            .unwrap();
        assert_eq!(b_rest.len(), 1);
        assert!(b_rest
            .iter()
            .all(|d| d.decision.device_serial.as_deref() == Some("SN-B")));
    }
}
