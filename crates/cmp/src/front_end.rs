//! The [`fleetca_est::FrontEnd`] for CMP: paths, content type, decoding, protection of the
//! answer, and the dispatch by body kind.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use fleetca_ca::CertificateAuthority;
use fleetca_est::{FrontEnd, FrontEndContext, FrontEndRequest};
use fleetca_store::{AuditLog, CmpStore, RevocationStore};
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use time::Duration;

use crate::authenticate::Verified;
use crate::message::{self, Reply};
use crate::protection::ProtectionCredential;
use crate::{CmpError, SecretKey};

/// RFC 6712 section 3.4.
pub const CMP_CONTENT_TYPE: &str = "application/pkixcmp";
const PREFIX: &str = "/.well-known/cmp";

/// The `[cmp]` settings the front end applies.
#[derive(Debug, Clone)]
pub struct CmpSettings {
    /// How long an issued certificate waits for the client's certConf before it is
    /// revoked (cessationOfOperation).
    pub confirm_timeout: Duration,
    /// Whether a client's request for implicit confirmation is granted.
    pub implicit_confirm: bool,
}

impl Default for CmpSettings {
    fn default() -> Self {
        Self {
            confirm_timeout: Duration::minutes(5),
            implicit_confirm: true,
        }
    }
}

/// What the CMP front end needs from the store: its transactions and secrets, the audit
/// trail, and revocation (certConf rejections, overdue confirmations, rr).
#[derive(Clone)]
pub struct CmpBackend {
    /// Secrets and transactions.
    pub cmp: Arc<dyn CmpStore>,
    /// The audit trail.
    pub audit: Arc<dyn AuditLog>,
    /// Revocation.
    pub revocation: Arc<dyn RevocationStore>,
}

/// The CMP front end.
pub struct CmpFrontEnd {
    pub(crate) store: CmpBackend,
    pub(crate) ca: Arc<CertificateAuthority>,
    pub(crate) secret_key: SecretKey,
    pub(crate) credential: RwLock<Arc<ProtectionCredential>>,
    pub(crate) settings: CmpSettings,
    /// Signed requests' transactionIDs answered lately by this node.
    pub(crate) recent: crate::recent::RecentTransactions,
}

impl std::fmt::Debug for CmpFrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmpFrontEnd")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl CmpFrontEnd {
    /// A front end answering with `credential`'s protection.
    pub fn new(
        store: CmpBackend,
        ca: Arc<CertificateAuthority>,
        secret_key: SecretKey,
        credential: ProtectionCredential,
        settings: CmpSettings,
    ) -> Self {
        Self {
            store,
            ca,
            secret_key,
            credential: RwLock::new(Arc::new(credential)),
            settings,
            recent: Default::default(),
        }
    }

    /// Replaces the protection credential (after its renewal).
    pub fn replace_credential(&self, credential: ProtectionCredential) {
        if let Ok(mut c) = self.credential.write() {
            *c = Arc::new(credential);
        }
    }

    pub(crate) fn credential(&self) -> Result<Arc<ProtectionCredential>, CmpError> {
        self.credential
            .read()
            .map(|c| Arc::clone(&c))
            .map_err(|_| CmpError::Internal("protection credential lock poisoned".into()))
    }

    /// Protects an answer: the client's MAC when its request was MAC-protected and
    /// verified, else fleetca's signature.
    pub(crate) fn protect(
        &self,
        reply: &Reply,
        body: der::Any,
        verified: Option<&Verified>,
        extra: Vec<der::Any>,
        now: time::OffsetDateTime,
    ) -> Result<Vec<u8>, CmpError> {
        let credential = self.credential()?;
        let header = reply.header(credential.subject().clone(), now)?;
        match verified {
            Some(Verified::Mac {
                reference,
                parameters,
                secret,
                ..
            }) => crate::protection::mac_protect(
                header,
                body,
                parameters,
                reference,
                secret.as_bytes(),
                extra,
            ),
            _ => credential.sign(header, body, extra),
        }
    }

    /// An error message for `error`, protected as [`CmpFrontEnd::protect`] does.
    pub(crate) fn error_message(
        &self,
        reply: &Reply,
        error: &CmpError,
        verified: Option<&Verified>,
        now: time::OffsetDateTime,
    ) -> Vec<u8> {
        if let CmpError::Internal(detail) = error {
            tracing::error!(error = %detail, "CMP request failed");
        }
        let built = message::error_body(error)
            .and_then(|body| self.protect(reply, body, verified, Vec::new(), now));
        match built {
            Ok(der) => der,
            Err(e) => {
                tracing::error!(error = %e, "CMP error message could not be built");
                Vec::new()
            }
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str("text/plain; charset=utf-8") {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

pub(crate) fn pkixcmp(status: StatusCode, der: Vec<u8>) -> Response<Full<Bytes>> {
    if der.is_empty() {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the CMP answer could not be built",
        );
    }
    let mut response = Response::new(Full::new(Bytes::from(der)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CMP_CONTENT_TYPE),
    );
    response
}

/// The label of a path: `None` for `/.well-known/cmp`, the label of
/// `/.well-known/cmp/p/<label>`; `Err` for anything else.
fn label_of(path: &str) -> Result<Option<&str>, ()> {
    let rest = path.strip_prefix(PREFIX).ok_or(())?;
    if rest.is_empty() || rest == "/" {
        return Ok(None);
    }
    let label = rest.strip_prefix("/p/").ok_or(())?;
    let label = label.strip_suffix('/').unwrap_or(label);
    if label.is_empty() || label.contains('/') {
        return Err(());
    }
    Ok(Some(label))
}

#[async_trait]
impl FrontEnd for CmpFrontEnd {
    fn prefixes(&self) -> &'static [&'static str] {
        &[PREFIX]
    }

    fn endpoint(&self, _method: &Method, _path: &str, _query: Option<&str>) -> &'static str {
        "cmp"
    }

    async fn handle(
        &self,
        request: FrontEndRequest,
        context: FrontEndContext,
    ) -> Response<Full<Bytes>> {
        let Ok(label) = label_of(&request.path) else {
            return plain(
                StatusCode::NOT_FOUND,
                "CMP is served at /.well-known/cmp and /.well-known/cmp/p/<label>",
            );
        };
        if label.is_some_and(|l| context.profile(Some(l)).is_none()) {
            return plain(
                StatusCode::NOT_FOUND,
                &format!("no CMP label '{}' is served", label.unwrap_or_default()),
            );
        }
        if request.method != Method::POST {
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "CMP requests are HTTP POSTs of application/pkixcmp (RFC 6712)",
            );
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("POST"),
            );
            return r;
        }
        let content_type = request
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if content_type.as_deref() != Some(CMP_CONTENT_TYPE) {
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a CMP request has Content-Type application/pkixcmp (RFC 6712)",
            );
        }
        let now = context.now;
        let received = match message::parse(&request.body) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, remote = %request.remote, "CMP request refused");
                let der = match Reply::blind() {
                    Ok(reply) => self.error_message(&reply, &e, None, now),
                    Err(_) => Vec::new(),
                };
                return pkixcmp(StatusCode::BAD_REQUEST, der);
            }
        };
        let header = &received.message.header;
        // Only the server's randomness can fail here: its own failure, a 5xx.
        let Ok(reply) = Reply::to(header) else {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no randomness for a nonce",
            );
        };
        let kind = message::body_name(&received.message.body);
        let outcome =
            crate::authenticate::dispatch(self, &received, &context, label, reply, now).await;
        match outcome {
            Ok(der) => {
                tracing::debug!(kind, remote = %request.remote, "CMP request answered");
                pkixcmp(StatusCode::OK, der)
            }
            Err((reply, verified, e)) => {
                tracing::info!(kind, error = %e, remote = %request.remote, "CMP request refused");
                pkixcmp(
                    StatusCode::OK,
                    self.error_message(&reply, &e, verified.as_ref(), now),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::label_of;

    #[test]
    fn paths_name_labels() {
        assert_eq!(label_of("/.well-known/cmp"), Ok(None));
        assert_eq!(label_of("/.well-known/cmp/"), Ok(None));
        assert_eq!(label_of("/.well-known/cmp/p/line"), Ok(Some("line")));
        assert!(label_of("/.well-known/cmp/x").is_err());
        assert!(label_of("/.well-known/cmp/p/a/b").is_err());
        assert!(label_of("/.well-known/cmp/p/").is_err());
    }
}
