//! Reading a PKIMessage (RustCrypto `cmpv2`) and the exact bytes its protection covers, and
//! writing fleetca's answers: header fields (transactionID, nonces, recipient), status and
//! error bodies.

use cmpv2::body::PkiBody;
use cmpv2::gen::InfoTypeAndValue;
use cmpv2::header::{PkiFreeText, PkiHeader, Pvno};
use cmpv2::status::{PkiFailureInfo, PkiStatus, PkiStatusInfo};
use der::asn1::{GeneralizedTime, Int, OctetString, Utf8StringRef};
use der::{Decode, Encode, Header, Length, Reader, SliceReader, Tag, Tagged};
use time::OffsetDateTime;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;

use crate::CmpError;

/// id-it-implicitConfirm (RFC 4210 section 5.1.1.1).
pub(crate) const IMPLICIT_CONFIRM: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.13");

/// A received message: `cmpv2`'s PKIMessage fields, with the body read by fleetca where
/// `cmpv2` 0.2 cannot (pollReq: it declares the pollRep type for it).
pub(crate) struct Message<'a> {
    pub header: PkiHeader<'a>,
    pub body: Body<'a>,
    pub protection: Option<der::asn1::BitString>,
    /// extraCerts as received (each a DER certificate, decoded where needed).
    pub extra_certs: Option<Vec<der::Any>>,
}

/// The body of a received message.
pub(crate) enum Body<'a> {
    /// Any body `cmpv2` decodes (boxed: it is large, and read once per request).
    Cmp(Box<PkiBody<'a>>),
    /// pollReq: the certReqIds polled for.
    PollReq(Vec<Int>),
    /// An error message (`cmpv2` 0.2 cannot decode most failure bits): its statusString.
    Error(String),
}

/// The PKIMessage with the body left encoded.
#[derive(der::Sequence)]
struct Envelope<'a> {
    header: PkiHeader<'a>,
    body: der::AnyRef<'a>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    protection: Option<der::asn1::BitString>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    extra_certs: Option<Vec<der::Any>>,
}

/// `PollReqContent ::= SEQUENCE OF SEQUENCE { certReqId INTEGER }` (RFC 4210 5.3.22).
#[derive(der::Sequence)]
struct PollReqEntry {
    cert_req_id: Int,
}

/// One entry of `PollRepContent` (RFC 4210 section 5.3.22).
#[derive(der::Sequence)]
struct PollRepEntry<'a> {
    cert_req_id: Int,
    check_after: u64,
    reason: Option<PkiFreeText<'a>>,
}

/// The `[26] pollRep` body for one request.
pub(crate) fn poll_rep_body(
    cert_req_id: Int,
    check_after: u64,
    reason: &str,
) -> Result<der::Any, CmpError> {
    let entry = PollRepEntry {
        cert_req_id,
        check_after,
        reason: Some(vec![Utf8StringRef::new(reason).map_err(CmpError::internal)?]),
    };
    let tagged = der::asn1::ContextSpecific {
        tag_number: der::TagNumber::new(26),
        tag_mode: der::TagMode::Explicit,
        value: vec![entry],
    };
    der::Any::encode_from(&tagged).map_err(CmpError::internal)
}

/// A received message with the DER ProtectedPart its protection covers, taken from the
/// bytes received (not re-encoded), and the message's own bytes.
pub(crate) struct Received<'a> {
    pub message: Message<'a>,
    pub protected_part: Vec<u8>,
    pub der: &'a [u8],
}

/// Decodes a request. Every failure is the client's: [`CmpError::BadDataFormat`].
pub(crate) fn parse(body: &[u8]) -> Result<Received<'_>, CmpError> {
    let bad = |e: der::Error| CmpError::BadDataFormat(e.to_string());
    let mut reader = SliceReader::new(body).map_err(bad)?;
    let (header, content) = reader
        .sequence(|r| {
            let header = r.tlv_bytes()?;
            let content = r.tlv_bytes()?;
            while !r.is_finished() {
                r.tlv_bytes()?;
            }
            Ok((header, content))
        })
        .map_err(bad)?;
    if !reader.is_finished() {
        return Err(CmpError::BadDataFormat(
            "trailing data after the PKIMessage".into(),
        ));
    }
    let envelope = Envelope::from_der(body).map_err(bad)?;
    let poll_req = der::Tag::ContextSpecific {
        constructed: true,
        number: der::TagNumber::new(25),
    };
    let error = der::Tag::ContextSpecific {
        constructed: true,
        number: der::TagNumber::new(23),
    };
    let decoded = if envelope.body.tag() == error {
        let content = ErrorContent::from_der(envelope.body.value()).map_err(bad)?;
        let text = content
            .pki_status_info
            .status_string
            .unwrap_or_default()
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Body::Error(text)
    } else if envelope.body.tag() == poll_req {
        let entries: Vec<PollReqEntry> = Vec::from_der(envelope.body.value()).map_err(bad)?;
        Body::PollReq(entries.into_iter().map(|e| e.cert_req_id).collect())
    } else {
        Body::Cmp(Box::new(PkiBody::from_der(content).map_err(bad)?))
    };
    let message = Message {
        header: envelope.header,
        body: decoded,
        protection: envelope.protection,
        extra_certs: envelope.extra_certs,
    };
    let inner = header.len().saturating_add(content.len());
    let mut protected_part = Header::new(Tag::Sequence, Length::try_from(inner).map_err(bad)?)
        .map_err(bad)?
        .to_der()
        .map_err(bad)?;
    protected_part.extend_from_slice(header);
    protected_part.extend_from_slice(content);
    Ok(Received {
        message,
        protected_part,
        der: body,
    })
}

/// The name of a body kind in logs and metrics.
pub(crate) fn body_name(body: &Body<'_>) -> &'static str {
    let body = match body {
        Body::Cmp(body) => body,
        Body::PollReq(_) => return "pollReq",
        Body::Error(_) => return "error",
    };
    let body: &PkiBody<'_> = body;
    match body {
        PkiBody::Ir(_) => "ir",
        PkiBody::Cr(_) => "cr",
        PkiBody::P10cr(_) => "p10cr",
        PkiBody::KUr(_) => "kur",
        PkiBody::Rr(_) => "rr",
        PkiBody::CertConf(_) => "certConf",
        PkiBody::GenM(_) => "genm",
        PkiBody::PollReq(_) => "pollReq",
        PkiBody::Error(_) => "error",
        _ => "other",
    }
}

/// Header checks every request passes: version, transactionID and senderNonce present.
pub(crate) fn check_header(header: &PkiHeader<'_>) -> Result<(), CmpError> {
    if header.pvno != Pvno::Cmp2000 {
        return Err(CmpError::UnsupportedVersion(header.pvno as u8));
    }
    let tid = header
        .trans_id
        .as_ref()
        .ok_or_else(|| CmpError::BadRequest("the header has no transactionID".into()))?;
    if tid.as_bytes().len() < 16 || tid.as_bytes().len() > 64 {
        return Err(CmpError::BadRequest(
            "transactionID must be 16 to 64 bytes (RFC 9483: 128 random bits)".into(),
        ));
    }
    match &header.sender_nonce {
        Some(n) if n.as_bytes().len() >= 16 && n.as_bytes().len() <= 64 => Ok(()),
        _ => Err(CmpError::BadSenderNonce),
    }
}

/// Whether the client asked for implicit confirmation.
pub(crate) fn implicit_confirm_requested(header: &PkiHeader<'_>) -> bool {
    header
        .general_info
        .as_ref()
        .is_some_and(|infos| infos.iter().any(|i| i.oid == IMPLICIT_CONFIRM))
}

/// The directory name of a GeneralName (`None` for other kinds).
pub(crate) fn directory_name(name: &GeneralName) -> Option<&Name> {
    match name {
        GeneralName::DirectoryName(n) => Some(n),
        _ => None,
    }
}

/// What fleetca's answer repeats from the request and adds.
#[derive(Clone)]
pub(crate) struct Reply {
    pub transaction_id: Option<OctetString>,
    pub recip_nonce: Option<OctetString>,
    pub recipient: GeneralName,
    pub recip_kid: Option<OctetString>,
    pub sender_nonce: Vec<u8>,
    pub implicit_confirm: bool,
}

impl Reply {
    /// The answer to `header` with a fresh senderNonce.
    pub(crate) fn to(header: &PkiHeader<'_>) -> Result<Self, CmpError> {
        Ok(Self {
            transaction_id: header.trans_id.clone(),
            recip_nonce: header.sender_nonce.clone(),
            recipient: header.sender.clone(),
            recip_kid: header.sender_kid.clone(),
            sender_nonce: random_bytes::<16>()?.to_vec(),
            implicit_confirm: false,
        })
    }

    /// An answer to a message that could not be read.
    pub(crate) fn blind() -> Result<Self, CmpError> {
        Ok(Self {
            transaction_id: None,
            recip_nonce: None,
            recipient: GeneralName::DirectoryName(Name::default()),
            recip_kid: None,
            sender_nonce: random_bytes::<16>()?.to_vec(),
            implicit_confirm: false,
        })
    }

    /// The response header, before protection fields are set.
    pub(crate) fn header(
        &self,
        sender: Name,
        now: OffsetDateTime,
    ) -> Result<PkiHeader<'static>, CmpError> {
        let secs = u64::try_from(now.unix_timestamp()).map_err(CmpError::internal)?;
        let time = GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))
            .map_err(CmpError::internal)?;
        let general_info = self.implicit_confirm.then(|| {
            vec![InfoTypeAndValue {
                oid: IMPLICIT_CONFIRM,
                value: Some(der::Any::from(der::asn1::Null)),
            }]
        });
        Ok(PkiHeader {
            pvno: Pvno::Cmp2000,
            sender: GeneralName::DirectoryName(sender),
            recipient: self.recipient.clone(),
            message_time: Some(time),
            protection_alg: None,
            sender_kid: None,
            recip_kid: self.recip_kid.clone(),
            trans_id: self.transaction_id.clone(),
            sender_nonce: Some(
                OctetString::new(self.sender_nonce.clone()).map_err(CmpError::internal)?,
            ),
            recip_nonce: self.recip_nonce.clone(),
            free_text: None,
            general_info,
        })
    }
}

/// Cryptographically random bytes.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], CmpError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| CmpError::Internal("no randomness".into()))?;
    Ok(out)
}

/// A PKIStatusInfo with the text of `text` (kept in the `'a` of the caller's string).
pub(crate) fn status_info<'a>(
    status: PkiStatus,
    fail: Option<PkiFailureInfo>,
    text: Option<&'a str>,
) -> Result<PkiStatusInfo<'a>, CmpError> {
    let status_string: Option<PkiFreeText<'a>> = match text {
        None => None,
        Some(t) => Some(vec![Utf8StringRef::new(t).map_err(CmpError::internal)?]),
    };
    Ok(PkiStatusInfo {
        status,
        status_string,
        fail_info: fail,
    })
}

/// PKIStatusInfo with the failure bit encoded by fleetca (see [`crate::error::Fail`]).
#[derive(der::Sequence)]
struct StatusWithFailure<'a> {
    status: PkiStatus,
    status_string: Option<PkiFreeText<'a>>,
    fail_info: Option<der::asn1::BitString>,
}

/// ErrorMsgContent (RFC 4210 section 5.3.21); `cmpv2` keeps its fields private.
#[derive(der::Sequence)]
struct ErrorContent<'a> {
    pki_status_info: StatusWithFailure<'a>,
    error_code: Option<u64>,
    error_details: Option<PkiFreeText<'a>>,
}

/// The body (`[23] error`) of an error message for `error`.
pub(crate) fn error_body(error: &CmpError) -> Result<der::Any, CmpError> {
    let text = error.status_text();
    let content = ErrorContent {
        pki_status_info: StatusWithFailure {
            status: PkiStatus::Rejection,
            status_string: Some(vec![Utf8StringRef::new(&text).map_err(CmpError::internal)?]),
            fail_info: Some(
                error
                    .failure_info()
                    .bit_string()
                    .map_err(CmpError::internal)?,
            ),
        },
        error_code: None,
        error_details: None,
    };
    let tagged = der::asn1::ContextSpecific {
        tag_number: der::TagNumber::new(23),
        tag_mode: der::TagMode::Explicit,
        value: content,
    };
    der::Any::encode_from(&tagged).map_err(CmpError::internal)
}

/// A body as it goes into fleetca's messages.
pub(crate) fn any_body(body: &PkiBody<'_>) -> Result<der::Any, CmpError> {
    der::Any::encode_from(body).map_err(CmpError::internal)
}

/// DER of one certificate of `cmpv2`'s type.
pub(crate) fn certificate_of(der: &[u8]) -> Result<x509_cert::Certificate, CmpError> {
    x509_cert::Certificate::from_der(der).map_err(CmpError::internal)
}
