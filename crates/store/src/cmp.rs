//! CMP (RFC 9483) state: the one-time shared secrets operators create for a device's first
//! enrollment with a MAC-protected `ir`, and the transactions in flight (replay protection,
//! requests waiting for approval, certificates waiting for confirmation). In the database so
//! that several nodes on one PostgreSQL database serve the same transactions.
//!
//! Only a digest of each secret is stored: the server derives the secret from its own key
//! and the reference (see the CMP front end), and checks the derivation against the digest.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StoreError;

/// A one-time CMP shared secret to record (an [`crate::OperatorChange`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCmpSecret {
    /// The reference the client sends as senderKID (unique, random).
    pub reference: String,
    /// The device it was created for.
    pub device_serial: String,
    /// SHA-256 of the secret, lower-case hex. Never the secret.
    pub secret_sha256: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// After this time it is refused.
    pub expires_at: OffsetDateTime,
    /// Who created it (the actor).
    pub created_by: String,
}

/// A recorded CMP shared secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmpSecretRecord {
    /// The secret as recorded.
    pub secret: NewCmpSecret,
    /// When a request consumed it, if one did.
    pub consumed_at: Option<OffsetDateTime>,
    /// The transaction that consumed it (its later messages are MAC-protected too).
    pub consumed_by: Option<Vec<u8>>,
}

/// Where a CMP transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CmpTransactionState {
    /// The request waits for an operator's approval (the client polls).
    Pending,
    /// A certificate was issued and waits for the client's certConf.
    Unconfirmed,
    /// Finished (confirmed, implicitly confirmed, refused, or revoked unconfirmed).
    Closed,
}

impl CmpTransactionState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Unconfirmed => "unconfirmed",
            Self::Closed => "closed",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => Self::Pending,
            "unconfirmed" => Self::Unconfirmed,
            "closed" => Self::Closed,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "CMP transaction state '{other}'"
                )))
            }
        })
    }
}

/// One CMP transaction (RFC 9483 section 3.1: all messages of one enrollment share the
/// client's transactionID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmpTransaction {
    /// The client's transactionID (16 bytes in RFC 9483; at most 64 accepted).
    pub transaction_id: Vec<u8>,
    /// Where it stands.
    pub state: CmpTransactionState,
    /// The senderNonce of fleetca's last answer: the client's next message must carry it
    /// as recipNonce (a replayed message does not).
    pub server_nonce: Vec<u8>,
    /// How the client protected its request: `mac:<reference>` or `signature:<cert serial>`.
    pub protection: String,
    /// The device.
    pub device_serial: String,
    /// The label the request came under (`None`: the default).
    pub label: Option<String>,
    /// The request body kind (`ir`, `cr`, `kur`, `p10cr`).
    pub request_kind: String,
    /// The request to re-run when polled (DER PKIMessage of the original request).
    pub request_der: Option<Vec<u8>>,
    /// The issued certificate waiting for confirmation (hex serial).
    pub certificate_serial: Option<String>,
    /// The issued certificate (DER), to answer a certConf's hash.
    pub certificate_der: Option<Vec<u8>>,
    /// When an unconfirmed certificate is revoked.
    pub confirm_by: Option<OffsetDateTime>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// CMP secrets and transactions.
#[async_trait]
pub trait CmpStore: Send + Sync {
    /// One secret by reference.
    async fn cmp_secret(&self, reference: &str) -> Result<Option<CmpSecretRecord>, StoreError>;
    /// Marks the secret consumed by `transaction_id` if it is unconsumed and unexpired at
    /// `at`; returns whether it did. Atomic: of two requests with one secret, one wins.
    async fn consume_cmp_secret(
        &self,
        reference: &str,
        transaction_id: &[u8],
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Records a new transaction; [`StoreError::Conflict`] if its transactionID is in use.
    async fn begin_cmp_transaction(&self, transaction: CmpTransaction) -> Result<(), StoreError>;
    /// One transaction by transactionID.
    async fn cmp_transaction(&self, id: &[u8]) -> Result<Option<CmpTransaction>, StoreError>;
    /// Replaces the transaction if its stored `server_nonce` is still `expected_nonce`
    /// (compare and set); returns whether it did. Two copies of one message: one wins.
    async fn advance_cmp_transaction(
        &self,
        expected_nonce: &[u8],
        transaction: CmpTransaction,
    ) -> Result<bool, StoreError>;
    /// Unconfirmed transactions whose confirmation time passed at `at`.
    async fn overdue_cmp_confirmations(
        &self,
        at: OffsetDateTime,
    ) -> Result<Vec<CmpTransaction>, StoreError>;
}
