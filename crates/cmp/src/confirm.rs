//! `certConf` → `pkiConf` (RFC 9483 section 4.1.1), and what happens to certificates that
//! are never confirmed: revoked (cessationOfOperation) once the configured time passed,
//! with an audit event.

use cmpv2::body::PkiBody;
use cmpv2::status::{CertStatus, PkiStatus};
use fleetca_store::{AuditEvent, CmpTransaction, CmpTransactionState};
use time::OffsetDateTime;

use crate::authenticate::Verified;
use crate::front_end::CmpBackend;
use crate::message::{Received, Reply};
use crate::{CmpError, CmpFrontEnd};

/// The hash a certConf carries for a certificate: the hash of its signature algorithm
/// (RFC 4210 section 5.3.18); SHA-256 for Ed25519 and anything else.
fn certificate_hash(der: &[u8]) -> Result<Vec<u8>, CmpError> {
    let certificate = crate::message::certificate_of(der)?;
    let algorithm = match certificate.signature_algorithm.oid.to_string().as_str() {
        "1.2.840.10045.4.3.3" | "1.2.840.113549.1.1.12" => &aws_lc_rs::digest::SHA384,
        "1.2.840.10045.4.3.4" | "1.2.840.113549.1.1.13" => &aws_lc_rs::digest::SHA512,
        _ => &aws_lc_rs::digest::SHA256,
    };
    Ok(aws_lc_rs::digest::digest(algorithm, der).as_ref().to_vec())
}

/// Answers a certConf.
pub(crate) async fn answer(
    front: &CmpFrontEnd,
    received: &Received<'_>,
    statuses: &[CertStatus<'_>],
    reply: &Reply,
    verified: &Verified,
    now: OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    let header = &received.message.header;
    let tid = header
        .trans_id
        .as_ref()
        .map(|t| t.as_bytes().to_vec())
        .unwrap_or_default();
    let transaction = front
        .store
        .cmp
        .cmp_transaction(&tid)
        .await?
        .ok_or_else(|| CmpError::BadRequest("certConf for an unknown transactionID".into()))?;
    let recip_nonce = header.recip_nonce.as_ref().map(|n| n.as_bytes());
    if recip_nonce != Some(transaction.server_nonce.as_slice()) {
        return Err(CmpError::BadRecipientNonce(
            "recipNonce is not the senderNonce of fleetca's last message in this transaction (a replayed or stale message)".into(),
        ));
    }
    if transaction.state != CmpTransactionState::Unconfirmed {
        return Err(CmpError::BadRequest(
            "nothing in this transaction waits for confirmation".into(),
        ));
    }
    // The same sender as the request: the same secret, or a certificate of the device.
    let same_sender = verified.same_sender(&transaction.protection, &transaction.device_serial);
    if !same_sender {
        return Err(CmpError::NotAuthorized(
            "certConf must come from the sender of the request".into(),
        ));
    }
    let [status] = statuses else {
        return Err(CmpError::BadRequest(
            "certConf confirms the one certificate of the transaction".into(),
        ));
    };
    let certificate_der = transaction.certificate_der.clone().unwrap_or_default();
    if status.cert_hash.as_bytes() != certificate_hash(&certificate_der)?.as_slice() {
        return Err(CmpError::BadCertId(
            "certHash is not the hash of the certificate issued in this transaction".into(),
        ));
    }
    let rejected = status
        .status_info
        .as_ref()
        .is_some_and(|s| s.status == PkiStatus::Rejection);
    let closed = CmpTransaction {
        state: CmpTransactionState::Closed,
        server_nonce: reply.sender_nonce.clone(),
        confirm_by: None,
        updated_at: now,
        ..transaction.clone()
    };
    if !front
        .store
        .cmp
        .advance_cmp_transaction(&transaction.server_nonce, closed)
        .await?
    {
        return Err(CmpError::BadRecipientNonce(
            "this transaction moved on meanwhile (a replayed message)".into(),
        ));
    }
    if rejected {
        revoke_unaccepted(
            &front.store,
            &transaction,
            "rejected by the client in certConf",
            now,
        )
        .await;
    }
    front.protect(
        reply,
        crate::message::any_body(&PkiBody::PkiConf(der::asn1::Null))?,
        Some(verified),
        Vec::new(),
        now,
    )
}

/// Revokes the certificate of a transaction that was not accepted, and audits it.
async fn revoke_unaccepted(
    store: &CmpBackend,
    transaction: &CmpTransaction,
    why: &str,
    now: OffsetDateTime,
) {
    let Some(serial) = &transaction.certificate_serial else {
        return;
    };
    let result = store
        .revocation
        .revoke(serial, "cessationOfOperation", now)
        .await;
    let (outcome, detail) = match &result {
        Ok(_) => (
            "granted",
            format!("CMP certificate {why}; revoked (cessationOfOperation)"),
        ),
        Err(e) => (
            "failed",
            format!("CMP certificate {why}; revocation failed: {e}"),
        ),
    };
    tracing::info!(serial = %serial, device = %transaction.device_serial, outcome, "{detail}");
    let event = AuditEvent {
        at: now,
        actor: "system:cmp".into(),
        action: "cmp-unconfirmed-revoke".into(),
        subject: format!("certificate:{serial}"),
        outcome: outcome.into(),
        detail: format!("device {}: {detail}", transaction.device_serial),
    };
    if let Err(e) = store.audit.append(event).await {
        tracing::error!(error = %e, "audit event could not be recorded");
    }
}

/// Revokes the certificates not confirmed in time (cessationOfOperation) and closes their
/// transactions; returns how many. Run periodically by the server; several nodes may run
/// it at once (a transaction is closed by one of them only).
pub async fn revoke_overdue(store: &CmpBackend, now: OffsetDateTime) -> Result<usize, CmpError> {
    let mut revoked = 0;
    for transaction in store.cmp.overdue_cmp_confirmations(now).await? {
        let closed = CmpTransaction {
            state: CmpTransactionState::Closed,
            confirm_by: None,
            updated_at: now,
            ..transaction.clone()
        };
        if store
            .cmp
            .advance_cmp_transaction(&transaction.server_nonce, closed)
            .await?
        {
            revoke_unaccepted(store, &transaction, "not confirmed in time", now).await;
            revoked += 1;
        }
    }
    Ok(revoked)
}
