//! `ir`, `cr`, `p10cr` and `kur` (RFC 9483 sections 4.1.1 to 4.1.4): the request becomes a
//! [`fleetca_pki::CertificateRequest`] (CRMF template with its signature proof of
//! possession, or the PKCS#10 of `p10cr`), runs through the enrollment pipeline as an EST
//! request does, and the certificate goes back in `ip`/`cp`/`kup`. The transaction is
//! recorded before the pipeline runs (a replayed request finds its transactionID in use).

use cmpv2::body::PkiBody;
use cmpv2::certified_key_pair::{CertOrEncCert, CertifiedKeyPair};
use cmpv2::response::{CertRepMessage, CertResponse};
use cmpv2::status::PkiStatus;
use crmf::pop::ProofOfPossession;
use crmf::request::CertReqMsg;
use der::asn1::Int;
use der::{Decode, Encode};
use fleetca_enroll::{Enrolled, EnrollmentInput, RequestOptions};
use fleetca_est::FrontEndContext;
use fleetca_pki::{CertificateRequest, CrmfRequest};
use fleetca_ra::{ChannelBinding, ClientIdentity, Operation};
use fleetca_store::{CmpTransaction, CmpTransactionState, StoreError};
use time::OffsetDateTime;

use crate::authenticate::Verified;
use crate::message::{self, Received, Reply};
use crate::{CmpError, CmpFrontEnd};

/// One certificate request of a message: its certReqId and the request as policy reads it.
pub(crate) struct Request {
    pub cert_req_id: Int,
    pub csr: Result<CertificateRequest, CmpError>,
}

/// Reads the certificate request of an `ir`, `cr`, `kur` or `p10cr`. RFC 9483 allows
/// exactly one per message.
pub(crate) fn requests_of(body: &PkiBody<'_>) -> Result<Option<Request>, CmpError> {
    let messages = match body {
        PkiBody::Ir(m) | PkiBody::Cr(m) | PkiBody::KUr(m) => m,
        PkiBody::P10cr(csr) => {
            let der = csr.to_der().map_err(CmpError::internal)?;
            return Ok(Some(Request {
                cert_req_id: Int::new(&[0]).map_err(CmpError::internal)?,
                csr: CertificateRequest::from_der(&der)
                    .map_err(|e| CmpError::BadPop(e.to_string())),
            }));
        }
        _ => return Ok(None),
    };
    let [message] = messages.as_slice() else {
        return Err(CmpError::BadRequest(format!(
            "exactly one certificate request per message (RFC 9483 section 4.1.1), not {}",
            messages.len()
        )));
    };
    Ok(Some(Request {
        cert_req_id: message.cert_req.cert_req_id.clone(),
        csr: crmf_request(message),
    }))
}

/// A CRMF request with a signature proof of possession, as fleetca reads it.
fn crmf_request(message: &CertReqMsg) -> Result<CertificateRequest, CmpError> {
    let template = &message.cert_req.cert_template;
    let spki = template.subject_public_key_info.as_ref().ok_or_else(|| {
        CmpError::BadCertTemplate("the certificate template has no public key".into())
    })?;
    let signing = match &message.popo {
        Some(ProofOfPossession::Signature(s)) => s,
        Some(_) => {
            return Err(CmpError::BadPop(
                "fleetca accepts a signature proof of possession only (RFC 9483 section 4.1.1)"
                    .into(),
            ))
        }
        None => {
            return Err(CmpError::BadPop(
                "the request has no proof of possession".into(),
            ))
        }
    };
    if signing.poposk_input.is_some() {
        return Err(CmpError::BadPop(
            "poposkInput is for templates without subject; name the subject in the template".into(),
        ));
    }
    let enc = |e: der::Error| CmpError::BadCertTemplate(e.to_string());
    let spki_der = spki.to_der().map_err(enc)?;
    let subject_der = template
        .subject
        .as_ref()
        .map(Encode::to_der)
        .transpose()
        .map_err(enc)?;
    let extensions_der = template
        .extensions
        .as_ref()
        .map(Encode::to_der)
        .transpose()
        .map_err(enc)?;
    let cert_request_der = message.cert_req.to_der().map_err(enc)?;
    let pop_algorithm_der = signing.alg_id.to_der().map_err(enc)?;
    let signature = signing
        .signature
        .as_bytes()
        .ok_or_else(|| CmpError::BadPop("the signature is not a whole number of bytes".into()))?;
    CertificateRequest::from_crmf(&CrmfRequest {
        subject_der: subject_der.as_deref(),
        spki_der: &spki_der,
        extensions_der: extensions_der.as_deref(),
        cert_request_der: &cert_request_der,
        pop_algorithm_der: &pop_algorithm_der,
        pop_signature: signature,
    })
    .map_err(|e| match e {
        fleetca_pki::CsrError::BadSignature => CmpError::BadPop(e.to_string()),
        fleetca_pki::CsrError::UnsupportedSignatureAlgorithm(_) => {
            CmpError::BadAlgorithm(e.to_string())
        }
        other => CmpError::BadCertTemplate(other.to_string()),
    })
}

/// The pipeline's operation for a body and client: `kur` renews; `cr` and `p10cr` signed by
/// an operational certificate renew it too (a renewal is what an operational certificate
/// may do); anything else enrolls (birth enrollment under a manufacturing label).
fn operation_of(body: &PkiBody<'_>, client: &ClientIdentity, issuer: &str) -> Operation {
    match body {
        PkiBody::KUr(_) => Operation::Reenroll,
        PkiBody::Cr(_) | PkiBody::P10cr(_)
            if matches!(client, ClientIdentity::OperationalCertificate { .. }) =>
        {
            Operation::Reenroll
        }
        _ if issuer == "manufacturing" => Operation::Birth,
        _ => Operation::Enroll,
    }
}

fn map_refusal(e: fleetca_enroll::EnrollError) -> CmpError {
    match CmpError::from(e) {
        CmpError::Refused { rule, reason } if rule == "client-certificate-status" => {
            CmpError::CertRevoked(format!("refused by rule '{rule}': {reason}"))
        }
        // The recording commit found the transactionID taken (a replay that raced past the
        // first check).
        CmpError::Refused { rule, .. } if rule == TRANSACTION_ID_RULE => {
            CmpError::TransactionIdInUse
        }
        other => other,
    }
}

/// The store's rule name for a transactionID already in use at the recording commit.
const TRANSACTION_ID_RULE: &str = "cmp-transaction-id";

/// Whether the transaction of a request is in the store before the pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Recorded before (a secret's first message, or a poll of a waiting request).
    Before,
    /// Not yet: it is recorded with the certificate, in the issuance's commit, or on its
    /// own if no certificate is issued now.
    WithCertificate,
}

/// The client identity a verified protection stands for.
pub(crate) fn client_of(
    body: &PkiBody<'_>,
    verified: &Verified,
) -> Result<ClientIdentity, CmpError> {
    match verified {
        Verified::Signature { client, .. } => Ok(client.clone()),
        Verified::Mac { device_serial, .. } => {
            if !matches!(body, PkiBody::Ir(_) | PkiBody::Cr(_) | PkiBody::P10cr(_)) {
                return Err(CmpError::NotAuthorized(
                    "a shared secret serves a device's first enrollment only (ir); renew with kur signed by the current certificate".into(),
                ));
            }
            Ok(ClientIdentity::EnrollmentSecret {
                device_serial: device_serial.clone(),
                protocol: "cmp",
            })
        }
    }
}

/// Answers a certificate request: records the transaction (refusing a transactionID in
/// use), consumes a shared secret, then runs the pipeline ([`issue`]).
pub(crate) async fn answer(
    front: &CmpFrontEnd,
    received: &Received<'_>,
    context: &FrontEndContext,
    label: Option<&str>,
    reply: &Reply,
    verified: &Verified,
    now: OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    let message::Body::Cmp(body) = &received.message.body else {
        return Err(CmpError::BadRequest("not a certificate request".into()));
    };
    let body: &PkiBody<'_> = body;
    let header = &received.message.header;
    let client = client_of(body, verified)?;
    if matches!(body, PkiBody::KUr(_))
        && !matches!(client, ClientIdentity::OperationalCertificate { .. })
    {
        return Err(CmpError::NotAuthorized(
            "kur is signed with the current operational certificate; a first certificate is requested with ir".into(),
        ));
    }
    let transaction_id = header
        .trans_id
        .as_ref()
        .map(|t| t.as_bytes().to_vec())
        .unwrap_or_default();

    let transaction = CmpTransaction {
        transaction_id: transaction_id.clone(),
        state: CmpTransactionState::Closed,
        server_nonce: reply.sender_nonce.clone(),
        protection: verified.describe(),
        device_serial: verified.device_serial().unwrap_or_default(),
        label: label.map(str::to_string),
        request_kind: message::body_name(&received.message.body).to_string(),
        request_der: None,
        certificate_serial: None,
        certificate_der: None,
        confirm_by: None,
        created_at: now,
        updated_at: now,
    };
    let recorded = match verified {
        // A shared secret is consumed by its transaction: the transaction first, then the
        // secret, so that a second message with this transactionID is refused and the
        // secret serves one transaction only.
        Verified::Mac {
            reference,
            consumed_by,
            ..
        } => {
            match front
                .store
                .cmp
                .begin_cmp_transaction(transaction.clone())
                .await
            {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => return Err(CmpError::TransactionIdInUse),
                Err(e) => return Err(e.into()),
            }
            if consumed_by.is_some()
                || !front
                    .store
                    .cmp
                    .consume_cmp_secret(reference, &transaction_id, now)
                    .await?
            {
                return Err(CmpError::NotAuthorized(format!(
                    "the shared secret {reference} was already used or expired"
                )));
            }
            Recorded::Before
        }
        // A signed request: its transaction is recorded with its certificate (one durable
        // write per renewal, not two), or on its own if none is issued now; a replay is
        // refused by that record whatever node it reaches, and before any work by the node
        // that saw the transactionID lately.
        Verified::Signature { .. } => {
            if !front.recent.first_sight(&transaction_id) {
                return Err(CmpError::TransactionIdInUse);
            }
            Recorded::WithCertificate
        }
    };
    issue(
        front,
        received,
        context,
        label,
        reply,
        verified,
        transaction,
        (recorded, false),
        now,
    )
    .await
}

/// Runs the pipeline on the request of `received` (the one received now, or the one a
/// pollReq polls for) and answers: the certificate, or "waiting" (the client polls).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn issue(
    front: &CmpFrontEnd,
    received: &Received<'_>,
    context: &FrontEndContext,
    label: Option<&str>,
    reply: &Reply,
    verified: &Verified,
    transaction: CmpTransaction,
    (recorded, polling): (Recorded, bool),
    now: OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    let message::Body::Cmp(body) = &received.message.body else {
        return Err(CmpError::BadRequest("not a certificate request".into()));
    };
    let body: &PkiBody<'_> = body;
    let header = &received.message.header;
    let profile = context
        .profile(label)
        .ok_or_else(|| CmpError::BadRequest("no such label".into()))?;
    let client = client_of(body, verified)?;
    let operation = operation_of(body, &client, profile.issuer.as_str());
    let request = requests_of(body)?
        .ok_or_else(|| CmpError::BadRequest("not a certificate request".into()))?;
    let csr = match request.csr {
        Ok(csr) => csr,
        Err(e) => {
            record_alone(front, recorded, transaction).await?;
            return Err(e);
        }
    };

    // The transaction as it stands once the certificate is out: closed when implicitly
    // confirmed, else waiting for certConf until `confirm_by`.
    let implicit = front.settings.implicit_confirm && message::implicit_confirm_requested(header);
    let done = CmpTransaction {
        state: if implicit {
            CmpTransactionState::Closed
        } else {
            CmpTransactionState::Unconfirmed
        },
        server_nonce: reply.sender_nonce.clone(),
        request_der: None,
        confirm_by: (!implicit).then(|| now + front.settings.confirm_timeout),
        updated_at: now,
        ..transaction.clone()
    };
    let with_certificate = (recorded == Recorded::WithCertificate).then(|| done.clone());
    let result = run_pipeline(
        context,
        front,
        (&client, operation),
        label,
        &profile,
        &csr,
        with_certificate,
    )
    .await;
    {
        let audit = front.store.audit.as_ref();
        if fleetca_enroll::audited(&client, result.is_err()) {
            let told = match &result {
                Ok(enrolled) => Ok(enrolled),
                Err(e) => Err(e as &(dyn std::fmt::Display + Sync)),
            };
            fleetca_enroll::audit_request(audit, now, &client, operation, false, told).await;
        }
    }
    let enrolled = match result.map_err(map_refusal) {
        Ok(enrolled) => enrolled,
        Err(CmpError::TransactionIdInUse) => return Err(CmpError::TransactionIdInUse),
        Err(e) => {
            // A refused request keeps its transactionID: its replay is refused as such.
            record_alone(front, recorded, transaction).await?;
            return Err(e);
        }
    };
    let (certificate_der, certificate_serial, device_serial, resent) = match enrolled {
        Enrolled::Issued {
            certificate,
            certificate_serial,
            device_serial,
            resent,
            ..
        } => (certificate, certificate_serial, device_serial, resent),
        Enrolled::Pending {
            approval,
            retry_after,
            device_serial,
        } => {
            let pending = CmpTransaction {
                state: CmpTransactionState::Pending,
                server_nonce: reply.sender_nonce.clone(),
                device_serial,
                request_der: Some(received.der.to_vec()),
                updated_at: now,
                ..transaction.clone()
            };
            match recorded {
                Recorded::Before => {
                    if !front
                        .store
                        .cmp
                        .advance_cmp_transaction(&transaction.server_nonce, pending)
                        .await?
                    {
                        return Err(CmpError::BadRecipientNonce(
                            "this transaction moved on meanwhile (a replayed message)".into(),
                        ));
                    }
                }
                Recorded::WithCertificate => begin(front, pending).await?,
            }
            if polling {
                let text =
                    format!("request {approval} is still waiting for an operator's approval");
                let check_after = retry_after.as_secs().max(1);
                let body = message::poll_rep_body(request.cert_req_id, check_after, &text)?;
                return front.protect(reply, body, Some(verified), Vec::new(), now);
            }
            return crate::poll::waiting(
                front,
                body,
                request.cert_req_id,
                approval,
                retry_after,
                reply,
                verified,
                now,
            );
        }
    };

    let mut reply = reply.clone();
    reply.implicit_confirm = implicit;
    let done = CmpTransaction {
        device_serial,
        certificate_serial: Some(certificate_serial),
        certificate_der: Some(certificate_der.clone()),
        ..done
    };
    match recorded {
        // Implicitly confirmed at once: the transaction recorded as closed stays as it is
        // (its transactionID stays in use).
        Recorded::Before if implicit && transaction.state == CmpTransactionState::Closed => {}
        Recorded::Before => {
            if !front
                .store
                .cmp
                .advance_cmp_transaction(&transaction.server_nonce, done)
                .await?
            {
                return Err(CmpError::BadRecipientNonce(
                    "this transaction moved on meanwhile (a replayed message)".into(),
                ));
            }
        }
        // Recorded by the issuance's commit, unless the certificate was issued earlier (an
        // approved request's, sent again): then no commit ran now.
        Recorded::WithCertificate if resent => begin(front, done).await?,
        Recorded::WithCertificate => {}
    }

    // The served chain, read once per label; self-issued ones are the trust anchors.
    let cas = crate::authenticate::ca_certificates(context, label)?;
    // caPubs: the trust anchor, for a client that authenticated with a shared secret and
    // has none yet (RFC 9483 section 4.1.5).
    let ca_pubs = match verified {
        Verified::Mac { .. } => Some(
            cas.iter()
                .filter(|ca| ca.self_issued)
                .map(|ca| message::certificate_of(&ca.der))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Verified::Signature { .. } => None,
    };
    let certificate = message::certificate_of(&certificate_der)?;
    let response = CertRepMessage {
        ca_pubs,
        response: vec![CertResponse {
            cert_req_id: request.cert_req_id,
            status: message::status_info(PkiStatus::Accepted, None, None)?,
            certified_key_pair: Some(CertifiedKeyPair {
                cert_or_enc_cert: CertOrEncCert::Certificate(Box::new(certificate)),
                priv_key: None,
                publication_info: None,
            }),
            rsp_info: None,
        }],
    };
    let answer = response_body(body, response);
    // extraCerts: the chain of the new certificate (RFC 9483 section 4.1.1).
    let extra = cas
        .iter()
        .filter(|ca| !ca.self_issued)
        .map(|ca| der::Any::from_der(&ca.der).map_err(CmpError::internal))
        .collect::<Result<Vec<_>, _>>()?;
    front.protect(
        &reply,
        message::any_body(&answer)?,
        Some(verified),
        extra,
        now,
    )
}

/// The response body kind of a request body: ip for ir, kup for kur, cp otherwise.
pub(crate) fn response_body<'a>(
    request: &PkiBody<'_>,
    response: CertRepMessage<'a>,
) -> PkiBody<'a> {
    match request {
        PkiBody::Ir(_) => PkiBody::Ip(response),
        PkiBody::KUr(_) => PkiBody::Kup(response),
        _ => PkiBody::Cp(response),
    }
}

/// Records a transaction on its own (no certificate was issued now with it).
async fn begin(front: &CmpFrontEnd, transaction: CmpTransaction) -> Result<(), CmpError> {
    match front.store.cmp.begin_cmp_transaction(transaction).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict(_)) => Err(CmpError::TransactionIdInUse),
        Err(e) => Err(e.into()),
    }
}

/// After a refusal: records the transaction (closed) if nothing recorded it yet, so that
/// its transactionID stays in use.
async fn record_alone(
    front: &CmpFrontEnd,
    recorded: Recorded,
    transaction: CmpTransaction,
) -> Result<(), CmpError> {
    match recorded {
        Recorded::Before => Ok(()),
        Recorded::WithCertificate => begin(front, transaction).await,
    }
}

async fn run_pipeline(
    context: &FrontEndContext,
    front: &CmpFrontEnd,
    (client, operation): (&ClientIdentity, Operation),
    label: Option<&str>,
    profile: &fleetca_pki::CertificateProfile,
    csr: &CertificateRequest,
    cmp_transaction: Option<CmpTransaction>,
) -> Result<Enrolled, fleetca_enroll::EnrollError> {
    let ra = context.ra();
    let admitted = fleetca_enroll::admit(ra.as_ref(), client).await?;
    let input = EnrollmentInput {
        client,
        admitted: admitted.as_ref(),
        operation,
        label,
        profile,
        csr,
        channel_binding: &ChannelBinding::Message,
        options: RequestOptions::default(),
        cmp_transaction,
    };
    fleetca_enroll::enroll(ra.as_ref(), &front.ca, input).await
}
