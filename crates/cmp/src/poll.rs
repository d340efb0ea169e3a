//! Requests waiting for an operator's approval (RFC 9483 section 4.4): the first answer
//! says "waiting"; the client polls (pollReq) and gets pollRep with a time to check again
//! until the request is decided, then the certificate in the response type of its request.
//! The transaction keeps the request; each poll runs it through the pipeline again (the RA
//! recognises it and returns the certificate once approved).

use cmpv2::body::PkiBody;
use cmpv2::response::{CertRepMessage, CertResponse};
use cmpv2::status::PkiStatus;
use der::asn1::Int;
use fleetca_est::FrontEndContext;
use fleetca_store::CmpTransactionState;
use time::OffsetDateTime;

use crate::authenticate::Verified;
use crate::message::{self, Received, Reply};
use crate::{CmpError, CmpFrontEnd};

/// The answer to a request that waits: its response type with status "waiting".
#[allow(clippy::too_many_arguments)]
pub(crate) fn waiting(
    front: &CmpFrontEnd,
    body: &PkiBody<'_>,
    cert_req_id: Int,
    approval: i64,
    retry_after: std::time::Duration,
    reply: &Reply,
    verified: &Verified,
    now: OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    let text = format!(
        "request {approval} is waiting for an operator's approval; poll in {} s",
        retry_after.as_secs().max(1)
    );
    let response = CertRepMessage {
        ca_pubs: None,
        response: vec![CertResponse {
            cert_req_id,
            status: message::status_info(PkiStatus::Waiting, None, Some(&text))?,
            certified_key_pair: None,
            rsp_info: None,
        }],
    };
    let answer = crate::enroll::response_body(body, response);
    front.protect(
        reply,
        message::any_body(&answer)?,
        Some(verified),
        Vec::new(),
        now,
    )
}

/// Answers a pollReq.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn answer(
    front: &CmpFrontEnd,
    received: &Received<'_>,
    ids: &[Int],
    context: &FrontEndContext,
    label: Option<&str>,
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
        .ok_or_else(|| CmpError::BadRequest("pollReq for an unknown transactionID".into()))?;
    if header.recip_nonce.as_ref().map(|n| n.as_bytes())
        != Some(transaction.server_nonce.as_slice())
    {
        return Err(CmpError::BadRecipientNonce(
            "recipNonce is not the senderNonce of fleetca's last message in this transaction (a replayed or stale message)".into(),
        ));
    }
    if transaction.state != CmpTransactionState::Pending {
        return Err(CmpError::BadRequest(
            "nothing in this transaction waits for approval".into(),
        ));
    }
    if transaction.label.as_deref() != label {
        return Err(CmpError::BadRequest(
            "poll at the path of the request".into(),
        ));
    }
    let stored_der = transaction.request_der.clone().unwrap_or_default();
    let stored = message::parse(&stored_der)?;
    // The request is authenticated again now (a certificate may have been revoked
    // meanwhile); the poll must come from its sender.
    let original = crate::authenticate::verify(front, &stored, context).await?;
    let same_sender = verified.same_sender(&original.describe(), &transaction.device_serial);
    if !same_sender {
        return Err(CmpError::NotAuthorized(
            "pollReq must come from the sender of the request".into(),
        ));
    }
    let message::Body::Cmp(body) = &stored.message.body else {
        return Err(CmpError::Internal("stored request is a pollReq".into()));
    };
    let body: &PkiBody<'_> = body;
    let cert_req_id = crate::enroll::requests_of(body)?
        .map(|r| r.cert_req_id)
        .ok_or_else(|| CmpError::Internal("stored request is not a certificate request".into()))?;
    if !ids.iter().any(|i| i == &cert_req_id) {
        return Err(CmpError::BadRequest(
            "pollReq names another certReqId than the request's".into(),
        ));
    }
    // The certificate (or pollRep) goes out under the header of this exchange.
    crate::enroll::issue(
        front,
        &stored,
        context,
        label,
        reply,
        verified,
        transaction,
        (crate::enroll::Recorded::Before, true),
        now,
    )
    .await
}
