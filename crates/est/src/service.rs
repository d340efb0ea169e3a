//! EST request handling: path and label routing, then one function per operation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetca_ca::CertificateAuthority;
use fleetca_pki::{CertificateProfile, Clock};
use fleetca_ra::{ChannelBinding, Operation, RegistrationAuthority};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use rustls::pki_types::CertificateDer;

use crate::auth::Authenticator;
use crate::wire::{self, base64_response, PKCS7_CERTS_ONLY};
use crate::EstError;

/// What one TLS connection tells every request on it.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    pub(crate) peer_chain: Option<Arc<Vec<CertificateDer<'static>>>>,
    pub(crate) channel_binding: ChannelBinding,
    pub(crate) remote: std::net::SocketAddr,
    /// The presented chain's verification, done once per connection (keep-alive clients
    /// such as factory stations send many requests); its validity is rechecked per request
    /// and its revocation status is read from the inventory per request.
    pub(crate) verified: crate::auth::VerifiedChain,
    /// Whether the connection is TLS (the plain-HTTP listener serves only front ends that
    /// protect their own messages).
    pub(crate) tls: bool,
}

/// A profile as served under one label, with its precomputed responses.
#[derive(Debug, Clone)]
pub struct LabelProfile {
    /// The profile.
    pub profile: Arc<CertificateProfile>,
    /// DER certs-only message of the issuing CA chain up to the root (`/cacerts`).
    pub cacerts: Vec<u8>,
    /// DER `CsrAttrs` (`/csrattrs`).
    pub csrattrs: Vec<u8>,
    /// The certificates of `cacerts`, read once here rather than on every request of a
    /// front end that needs them one by one (CMP's extraCerts and recipient check).
    chain: Vec<ServedCa>,
}

/// One CA certificate of a label's served chain.
#[derive(Debug, Clone)]
pub struct ServedCa {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its subject name, DER.
    pub subject_der: Vec<u8>,
    /// Whether its subject is its issuer (a trust anchor: the root, or a link's subject).
    pub self_issued: bool,
}

impl LabelProfile {
    /// A label's profile with its `/cacerts` (certs-only, DER) and `/csrattrs` answers.
    pub fn new(
        profile: Arc<CertificateProfile>,
        cacerts: Vec<u8>,
        csrattrs: Vec<u8>,
    ) -> Result<Self, fleetca_pki::PkiError> {
        let chain = fleetca_pki::parse_certs_only(&cacerts)?
            .into_iter()
            .map(|der| {
                let info = fleetca_pki::CertificateInfo::from_der(&der)?;
                Ok(ServedCa {
                    self_issued: info.subject == info.issuer,
                    subject_der: info.subject_der,
                    der,
                })
            })
            .collect::<Result<Vec<_>, fleetca_pki::PkiError>>()?;
        Ok(Self {
            profile,
            cacerts,
            csrattrs,
            chain,
        })
    }

    /// The certificates of the served chain, in `/cacerts` order.
    pub fn chain(&self) -> &[ServedCa] {
        &self.chain
    }
}

/// Limits applied to every request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body (default 64 KiB).
    pub max_body_bytes: usize,
    /// Time allowed to receive a request body.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything EST handlers need. Handlers see the RA and CA through their traits and
/// never a database handle.
pub struct EstService {
    /// Profiles by label and the RA: what a configuration reload (SIGHUP) replaces.
    /// Each request takes a snapshot when it starts and keeps it to its end.
    pub(crate) routing: std::sync::RwLock<Arc<Routing>>,
    pub(crate) ca: Arc<CertificateAuthority>,
    pub(crate) auth: Authenticator,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: Limits,
    pub(crate) observer: Option<Arc<dyn RequestObserver>>,
    pub(crate) audit: Option<Arc<dyn fleetca_store::AuditLog>>,
    /// Other protocols on this listener (CMP, SCEP), by path prefix.
    pub(crate) front_ends: Vec<Arc<dyn crate::FrontEnd>>,
}

/// The reloadable part of the service.
pub(crate) struct Routing {
    pub(crate) default_label: LabelProfile,
    pub(crate) labels: HashMap<String, LabelProfile>,
    pub(crate) ra: Arc<dyn RegistrationAuthority>,
}

impl EstService {
    /// The profiles and RA in force now.
    pub(crate) fn routing(&self) -> Arc<Routing> {
        // A poisoned lock still holds a complete value (it is only ever replaced whole).
        match self.routing.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The RA in force now.
    pub(crate) fn ra(&self) -> Arc<dyn RegistrationAuthority> {
        Arc::clone(&self.routing().ra)
    }

    /// Replaces the profiles (by label) and the RA, for a configuration reload. Requests
    /// already running finish with what they started with; the next ones see the new.
    pub fn reconfigure(
        &self,
        default_label: LabelProfile,
        labels: HashMap<String, LabelProfile>,
        ra: Arc<dyn RegistrationAuthority>,
    ) {
        let routing = Arc::new(Routing {
            default_label,
            labels,
            ra,
        });
        match self.routing.write() {
            Ok(mut r) => *r = routing,
            Err(poisoned) => *poisoned.into_inner() = routing,
        }
    }
}

impl EstService {
    /// Replaces every label's `/cacerts` answer with `cacerts(profile)` (CA generations
    /// changed), keeping the profiles and RA in force.
    pub fn replace_cacerts(&self, cacerts: impl Fn(&CertificateProfile) -> Option<Vec<u8>>) {
        let current = self.routing();
        let relabel = |l: &LabelProfile| {
            let Some(new) = cacerts(&l.profile) else {
                return l.clone();
            };
            LabelProfile::new(Arc::clone(&l.profile), new, l.csrattrs.clone()).unwrap_or_else(|e| {
                // Made by fleetca from its own CA certificates: keep serving the last good
                // chain rather than none.
                tracing::error!(error = %e, profile = %l.profile.name, "new CA chain unreadable; the label keeps its chain");
                l.clone()
            })
        };
        let routing = Arc::new(Routing {
            default_label: relabel(&current.default_label),
            labels: current
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), relabel(v)))
                .collect(),
            ra: Arc::clone(&current.ra),
        });
        match self.routing.write() {
            Ok(mut r) => *r = routing,
            Err(poisoned) => *poisoned.into_inner() = routing,
        }
    }

    /// Replaces the CAs client certificates may chain to (a CA generation activated or
    /// expired). Connections verified before keep their verdict for their lifetime.
    pub fn replace_client_trust(&self, trust: crate::ClientTrust) {
        let trust = Arc::new(trust);
        match self.auth.trust.write() {
            Ok(mut t) => *t = trust,
            Err(poisoned) => *poisoned.into_inner() = trust,
        }
    }
}

/// Told about every EST request when it is answered (metrics). Must not block.
pub trait RequestObserver: Send + Sync {
    /// `endpoint` is the EST operation (`cacerts`, `simpleenroll`, ...; `other` for
    /// anything else), `status` the HTTP status sent.
    fn request_finished(&self, endpoint: &'static str, status: u16, elapsed: std::time::Duration);

    /// An HTTP Basic login: `result` is `success`, `failure` (wrong password or unknown
    /// account), `held_account` or `held_source` (refused during a back-off, password not
    /// checked).
    fn password_attempt(&self, _result: &'static str) {}
}

/// The EST operation a path names, as a fixed label.
fn endpoint_of(path: &str) -> &'static str {
    match path.rsplit('/').next().unwrap_or("") {
        "cacerts" => "cacerts",
        "csrattrs" => "csrattrs",
        "simpleenroll" => "simpleenroll",
        "simplereenroll" => "simplereenroll",
        "serverkeygen" => "serverkeygen",
        _ => "other",
    }
}

const PREFIX: &str = "/.well-known/est/";

enum EstOperation {
    CaCerts,
    CsrAttrs,
    Enroll(Operation),
    ServerKeygen,
}

impl EstService {
    pub(crate) async fn handle(
        self: Arc<Self>,
        conn: Arc<ConnectionInfo>,
        req: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        if let Some(front_end) = self.front_end_for(&path) {
            let endpoint = front_end.endpoint(&method, &path, req.uri().query());
            let response = self.hand_to(&front_end, &conn, req).await;
            if let Some(observer) = &self.observer {
                observer.request_finished(endpoint, response.status().as_u16(), started.elapsed());
            }
            tracing::debug!(
                %method, %path, endpoint,
                status = response.status().as_u16(),
                micros = started.elapsed().as_micros() as u64,
                "request"
            );
            return response;
        }
        if !conn.tls {
            return EstError::NotFound(format!(
                "no resource at {path} on the plain-HTTP listener (EST needs TLS)"
            ))
            .into_response();
        }
        let (response, device) = match self.route(&conn, req).await {
            Ok((r, device)) => (r, device),
            Err(e) => {
                let status = e.status();
                // A refusal can quote request text: escaped, it cannot forge a log line.
                let text = e.to_string();
                let text = fleetca_pki::escape_controls(&text);
                if status.is_server_error() {
                    tracing::warn!(%method, %path, status = status.as_u16(), error = %text, "EST request failed");
                } else {
                    tracing::info!(%method, %path, status = status.as_u16(), reason = %text, remote = %conn.remote, "EST request refused");
                }
                (e.into_response(), None)
            }
        };
        if let Some(observer) = &self.observer {
            observer.request_finished(
                endpoint_of(&path),
                response.status().as_u16(),
                started.elapsed(),
            );
        }
        tracing::debug!(
            %method, %path,
            status = response.status().as_u16(),
            device = device.as_deref().unwrap_or("-"),
            micros = started.elapsed().as_micros() as u64,
            "EST request"
        );
        response
    }

    /// The front end serving `path`, if one does.
    fn front_end_for(&self, path: &str) -> Option<Arc<dyn crate::FrontEnd>> {
        self.front_ends
            .iter()
            .find(|f| {
                f.prefixes().iter().any(|p| {
                    path.strip_prefix(p)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                })
            })
            .cloned()
    }

    /// Reads the body within the service's limits and hands the request to `front_end`
    /// with what is in force now.
    async fn hand_to(
        &self,
        front_end: &Arc<dyn crate::FrontEnd>,
        conn: &ConnectionInfo,
        req: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match read_body(body, self.limits.max_body_bytes, self.limits.body_timeout).await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::info!(path = %parts.uri.path(), remote = %conn.remote, reason = %e, "request refused");
                return e.into_response();
            }
        };
        let trust = match self.auth.trust.read() {
            Ok(t) => Arc::clone(&t),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        let context = crate::FrontEndContext {
            routing: self.routing(),
            trust,
            now: self.clock.now(),
        };
        let request = crate::FrontEndRequest {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
            remote: conn.remote,
            peer_chain: conn.peer_chain.clone(),
            tls: conn.tls,
        };
        front_end.handle(request, context).await
    }

    async fn route(
        &self,
        conn: &ConnectionInfo,
        req: Request<Incoming>,
    ) -> Result<(Response<Full<Bytes>>, Option<String>), EstError> {
        let path = req.uri().path();
        let rest = path.strip_prefix(PREFIX).ok_or_else(|| {
            EstError::NotFound(format!("no resource at {path}; EST lives under {PREFIX}"))
        })?;
        let (label, op) = match rest.split('/').collect::<Vec<_>>().as_slice() {
            [op] => (None, (*op).to_string()),
            [label, op] => (Some((*label).to_string()), (*op).to_string()),
            _ => return Err(EstError::NotFound(format!("no EST resource at {path}"))),
        };
        let routing = self.routing();
        let target = match label.as_deref() {
            None => &routing.default_label,
            Some(l) => routing
                .labels
                .get(l)
                .ok_or_else(|| EstError::NotFound(format!("unknown EST label '{l}'")))?,
        };
        let (operation, method) = match op.as_str() {
            "cacerts" => (EstOperation::CaCerts, Method::GET),
            "csrattrs" => (EstOperation::CsrAttrs, Method::GET),
            "simpleenroll" => (EstOperation::Enroll(Operation::Enroll), Method::POST),
            "simplereenroll" => (EstOperation::Enroll(Operation::Reenroll), Method::POST),
            "serverkeygen" if target.profile.server_keygen => {
                (EstOperation::ServerKeygen, Method::POST)
            }
            "serverkeygen" | "fullcmc" => {
                return Err(EstError::NotFound(format!(
                    "EST operation '{op}' is not offered under this label"
                )))
            }
            other => {
                return Err(EstError::NotFound(format!(
                    "unknown EST operation '{other}'"
                )))
            }
        };
        if req.method() != method {
            return Err(EstError::MethodNotAllowed {
                allow: if method == Method::GET { "GET" } else { "POST" },
            });
        }
        match operation {
            EstOperation::CaCerts => Ok((base64_response(PKCS7_CERTS_ONLY, &target.cacerts), None)),
            EstOperation::CsrAttrs => Ok((base64_response(wire::CSRATTRS, &target.csrattrs), None)),
            EstOperation::Enroll(operation) => {
                let (response, device) = self
                    .enroll(conn, label.as_deref(), target, operation, false, req)
                    .await?;
                Ok((response, Some(device)))
            }
            EstOperation::ServerKeygen => {
                let (response, device) = self
                    .enroll(conn, label.as_deref(), target, Operation::Enroll, true, req)
                    .await?;
                Ok((response, Some(device)))
            }
        }
    }
}

pub(crate) async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, EstError> {
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| EstError::Timeout {
            seconds: timeout.as_secs(),
        })?;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(EstError::PayloadTooLarge { limit })
        }
        Err(e) => Err(EstError::BadRequest(format!(
            "request body could not be read: {e}"
        ))),
    }
}
