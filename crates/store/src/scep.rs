//! SCEP (RFC 8894) state: the one-time challenge passwords operators create for a device
//! serial (stored as the SHA-256 of a high-entropy secret, consumed on use), and the
//! transactions (their request key, and the CSR a pending request is polled with).

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StoreError;

/// A challenge password an operator creates (recorded with
/// [`crate::OperatorChange::CreateScepChallenge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScepChallenge {
    /// SHA-256 (hex) of the secret; the secret itself is never stored.
    pub secret_sha256: String,
    /// The device serial the challenge authenticates.
    pub device_serial: String,
    /// Created at.
    pub created_at: OffsetDateTime,
    /// Unusable from then on.
    pub expires_at: OffsetDateTime,
    /// Who created it (audit actor).
    pub created_by: String,
}

/// A SCEP transaction: the request key its transactionID names, and what a poll needs to
/// run the request again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScepTransaction {
    /// The transactionID (the hex SHA-256 of the request's public key, as RFC 8894 section
    /// 3.2.1.1.1 asks).
    pub transaction_id: String,
    /// SHA-256 (hex) of the request's subjectPublicKeyInfo.
    pub key_sha256: String,
    /// The label the request came under (`None`: the default).
    pub label: Option<String>,
    /// The device serial a consumed challenge authenticated (`None`: the request was
    /// signed by a birth or operational certificate, identified again when polled).
    pub secret_device: Option<String>,
    /// The request's CSR (DER), run again when the client polls.
    pub csr: Vec<u8>,
    /// First seen at.
    pub created_at: OffsetDateTime,
    /// The certificate issued for it (hex serial): the answer to the transaction from then
    /// on, however often it is sent again.
    pub certificate_serial: Option<String>,
}

/// SCEP state.
#[async_trait]
pub trait ScepStore: Send + Sync {
    /// Consumes the challenge whose secret hashes to `secret_sha256`: returns the device
    /// serial it was created for when it exists, was never used and has not expired at
    /// `at`, and marks it used in the same statement (two requests with one challenge:
    /// one wins). `None` otherwise.
    async fn consume_scep_challenge(
        &self,
        secret_sha256: &str,
        at: OffsetDateTime,
    ) -> Result<Option<String>, StoreError>;

    /// Records a transaction. The same transactionID again with the same key keeps the
    /// first record; with another key: [`StoreError::Conflict`].
    async fn record_scep_transaction(
        &self,
        transaction: ScepTransaction,
    ) -> Result<ScepTransaction, StoreError>;

    /// Records the certificate issued for a transaction.
    async fn complete_scep_transaction(
        &self,
        transaction_id: &str,
        certificate_serial: &str,
    ) -> Result<(), StoreError>;

    /// A transaction by its id.
    async fn scep_transaction(
        &self,
        transaction_id: &str,
    ) -> Result<Option<ScepTransaction>, StoreError>;
}

#[cfg(test)]
pub(crate) mod conformance {
    use crate::conformance::at;
    use crate::*;

    fn event() -> AuditEvent {
        AuditEvent {
            at: at(0),
            actor: "cli:root".into(),
            action: "scep-challenge-create".into(),
            subject: "SN-1".into(),
            outcome: "granted".into(),
            detail: String::new(),
        }
    }

    fn challenge(secret: &str, device: &str, expires: i64) -> NewScepChallenge {
        NewScepChallenge {
            secret_sha256: secret.repeat(64),
            device_serial: device.into(),
            created_at: at(0),
            expires_at: at(expires),
            created_by: "cli:root".into(),
        }
    }

    fn transaction(id: &str, key: &str) -> ScepTransaction {
        ScepTransaction {
            transaction_id: id.into(),
            key_sha256: key.repeat(64),
            label: Some("scep".into()),
            secret_device: Some("SN-1".into()),
            csr: vec![0x30, 0x00],
            created_at: at(5),
            certificate_serial: None,
        }
    }

    pub(crate) async fn scep_challenges_are_consumed_once_and_expire<S>(store: S)
    where
        S: ScepStore + OperatorLog + AuditLog + Clone + 'static,
    {
        let create = |c| {
            let store = store.clone();
            async move {
                store
                    .apply_audited(OperatorChange::CreateScepChallenge(c), at(0), event())
                    .await
            }
        };
        create(challenge("a", "SN-1", 3600)).await.unwrap();
        create(challenge("b", "SN-2", 60)).await.unwrap();
        // The same secret twice: a conflict, and the trail holds only the two creations.
        assert!(matches!(
            create(challenge("a", "SN-3", 60)).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.audit_events(None, 10).await.unwrap().len(), 2);
        // Unknown and expired challenges authenticate nothing.
        assert_eq!(
            store
                .consume_scep_challenge(&"c".repeat(64), at(10))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .consume_scep_challenge(&"b".repeat(64), at(60))
                .await
                .unwrap(),
            None
        );
        // Twenty concurrent uses of one challenge: exactly one gets the device.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .consume_scep_challenge(&"a".repeat(64), at(10))
                    .await
                    .unwrap()
            }));
        }
        let mut won = Vec::new();
        for t in tasks {
            if let Some(device) = t.await.unwrap() {
                won.push(device);
            }
        }
        assert_eq!(won, vec!["SN-1".to_string()]);
    }

    pub(crate) async fn scep_transactions_keep_their_first_key<S>(store: S)
    where
        S: ScepStore,
    {
        assert_eq!(store.scep_transaction("t1").await.unwrap(), None);
        let first = store
            .record_scep_transaction(transaction("t1", "a"))
            .await
            .unwrap();
        assert_eq!(first, transaction("t1", "a"));
        // Again with the same key: the first record stands (a later CSR does not replace it).
        let mut again = transaction("t1", "a");
        again.csr = vec![0x30, 0x01, 0x00];
        assert_eq!(
            store.record_scep_transaction(again).await.unwrap(),
            transaction("t1", "a")
        );
        // With another key: refused.
        assert!(matches!(
            store.record_scep_transaction(transaction("t1", "b")).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store.scep_transaction("t1").await.unwrap(),
            Some(transaction("t1", "a"))
        );
        // Completed: the issued certificate is its answer from then on.
        store.complete_scep_transaction("t1", "0abc").await.unwrap();
        let done = store.scep_transaction("t1").await.unwrap().unwrap();
        assert_eq!(done.certificate_serial.as_deref(), Some("0abc"));
        assert_eq!(
            store
                .record_scep_transaction(transaction("t1", "a"))
                .await
                .unwrap()
                .certificate_serial
                .as_deref(),
            Some("0abc")
        );
    }
}
