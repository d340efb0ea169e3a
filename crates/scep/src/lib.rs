//! SCEP (RFC 8894) on the EST listener (and on a plain-HTTP listener: its messages are
//! protected by CMS): `GET|POST /scep[/<label>]?operation=...` with `GetCACaps`,
//! `GetCACert` and `PKIOperation` (PKCSReq, RenewalReq, CertPoll, GetCert, GetCRL).
//! Requests go through the enrollment pipeline (`fleetca-enroll`) like EST's; every
//! refusal is a SCEP FAILURE with its failInfo and the rule that refused it.

mod algorithms;
mod caps;
pub mod client;
mod enroll;
mod envelope;
mod error;
mod message;
mod operation;
mod ra_credential;
mod reply;
mod retrieve;
mod wire;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use fleetca_ca::CertificateAuthority;
use fleetca_est::{FrontEnd, FrontEndContext, FrontEndRequest};
use fleetca_store::{AuditLog, InventoryReader, RevocationStore, ScepStore};
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};

pub use error::{FailInfo, ScepError};
pub use message::{open_request, MessageType, PkiMessage};
pub use ra_credential::RaCredential;

/// The path SCEP is served under.
pub const PATH: &str = "/scep";

/// SCEP settings (the `[scep]` section of the configuration).
#[derive(Debug, Clone)]
pub struct ScepSettings {
    /// Profiles (by name) whose requests may use legacy algorithms: SHA-1 digests and
    /// signatures, DES-CBC and DES-EDE3-CBC envelopes (GetCACaps adds DES3 and SHA-1).
    pub legacy_profiles: HashSet<String>,
    /// Profiles (by name) where a birth certificate may sign a PKCSReq instead of a
    /// challenge password.
    pub birth_signer_profiles: HashSet<String>,
    /// Largest accepted difference between a request's signingTime and the server's clock.
    pub max_clock_skew: time::Duration,
}

impl Default for ScepSettings {
    fn default() -> Self {
        Self {
            legacy_profiles: HashSet::new(),
            birth_signer_profiles: HashSet::new(),
            max_clock_skew: time::Duration::hours(24),
        }
    }
}

/// What SCEP reads and writes in the store (narrow traits, no SQL).
#[derive(Clone)]
pub struct ScepStores {
    /// Challenges and transactions.
    pub scep: Arc<dyn ScepStore>,
    /// Certificates, for GetCert.
    pub inventory: Arc<dyn InventoryReader>,
    /// Published CRLs, for GetCRL.
    pub revocation: Arc<dyn RevocationStore>,
    /// The audit trail (refusals, station requests).
    pub audit: Option<Arc<dyn AuditLog>>,
}

/// The SCEP front end.
pub struct ScepFrontEnd {
    ca: Arc<CertificateAuthority>,
    stores: ScepStores,
    credential: RwLock<Arc<RaCredential>>,
    settings: ScepSettings,
}

impl std::fmt::Debug for ScepFrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScepFrontEnd")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ScepFrontEnd {
    /// The front end with its RA credential.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        stores: ScepStores,
        credential: RaCredential,
        settings: ScepSettings,
    ) -> Self {
        Self {
            ca,
            stores,
            credential: RwLock::new(Arc::new(credential)),
            settings,
        }
    }

    /// Installs a renewed RA credential; requests already running finish with the old.
    pub fn replace_credential(&self, credential: RaCredential) {
        let credential = Arc::new(credential);
        match self.credential.write() {
            Ok(mut c) => *c = credential,
            Err(poisoned) => *poisoned.into_inner() = credential,
        }
    }

    pub(crate) fn credential(&self) -> Arc<RaCredential> {
        match self.credential.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// The `operation` query parameter, and the `message` one of a GET PKIOperation.
fn query_parameters(query: Option<&str>) -> (Option<String>, Option<String>) {
    let mut operation = None;
    let mut message = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "operation" => operation = Some(v.into_owned()),
            "message" => message = Some(v.into_owned()),
            _ => {}
        }
    }
    (operation, message)
}

pub(crate) fn text_response(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn binary_response(content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[async_trait]
impl FrontEnd for ScepFrontEnd {
    fn prefixes(&self) -> &'static [&'static str] {
        &[PATH]
    }

    fn endpoint(&self, _method: &Method, _path: &str, query: Option<&str>) -> &'static str {
        match query_parameters(query).0.as_deref() {
            Some("GetCACaps") => "scep-getcacaps",
            Some("GetCACert") => "scep-getcacert",
            Some("PKIOperation") => "scep-pkioperation",
            _ => "scep-other",
        }
    }

    async fn handle(
        &self,
        request: FrontEndRequest,
        context: FrontEndContext,
    ) -> Response<Full<Bytes>> {
        let label = match request.path.strip_prefix(PATH) {
            Some("") | Some("/") => None,
            Some(rest) => match rest.strip_prefix('/') {
                Some(l) if !l.contains('/') => Some(l.to_string()),
                _ => {
                    return text_response(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no SCEP resource at {}\n",
                            fleetca_pki::escape_controls(&request.path)
                        ),
                    )
                }
            },
            None => return text_response(StatusCode::NOT_FOUND, "not SCEP\n".into()),
        };
        let Some(profile) = context.profile(label.as_deref()) else {
            return text_response(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown SCEP label '{}'\n",
                    fleetca_pki::escape_controls(label.as_deref().unwrap_or_default())
                ),
            );
        };
        let legacy = self.settings.legacy_profiles.contains(&profile.name);
        let (operation, message) = query_parameters(request.query.as_deref());
        match (operation.as_deref(), &request.method) {
            (Some("GetCACaps"), &Method::GET) => caps::ca_caps(legacy),
            (Some("GetCACert"), &Method::GET) => self.ca_cert(label.as_deref(), &context),
            (Some("PKIOperation"), &Method::POST) => {
                self.pki_operation(label.as_deref(), &request.body, &request, &context)
                    .await
            }
            (Some("PKIOperation"), &Method::GET) => {
                let Some(message) = message else {
                    return text_response(
                        StatusCode::BAD_REQUEST,
                        "PKIOperation by GET needs the base64 pkiMessage in the 'message' parameter\n".into(),
                    );
                };
                match base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    message.trim().replace(['\r', '\n', ' '], ""),
                ) {
                    Ok(der) => {
                        self.pki_operation(label.as_deref(), &der, &request, &context)
                            .await
                    }
                    Err(e) => text_response(
                        StatusCode::BAD_REQUEST,
                        format!("the 'message' parameter is not base64: {e}\n"),
                    ),
                }
            }
            (Some("GetCACaps" | "GetCACert" | "PKIOperation"), _) => text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed for this SCEP operation\n".into(),
            ),
            (Some(other), _) => text_response(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown SCEP operation '{}' (GetCACaps, GetCACert, PKIOperation)\n",
                    fleetca_pki::escape_controls(other)
                ),
            ),
            (None, _) => text_response(
                StatusCode::BAD_REQUEST,
                "SCEP requests name an operation: ?operation=GetCACaps, GetCACert or PKIOperation\n"
                    .into(),
            ),
        }
    }
}
