//! Other enrollment protocols served on the EST listener (CMP under `/.well-known/cmp`,
//! SCEP under `/scep`): one TLS listener, one set of connection limits, one configuration
//! reload, one client trust. A [`FrontEnd`] gets every request under its path prefixes with
//! the body already read (bounded by the service's size and time limits) and a
//! [`FrontEndContext`]: the profiles by label, the RA and the client trust in force when
//! the request started. It answers in its own wire format; the pipeline it calls
//! (`fleetca-enroll`) is the one EST calls.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use fleetca_pki::CertificateProfile;
use fleetca_ra::{ClientIdentity, RegistrationAuthority};
use http_body_util::Full;
use hyper::{HeaderMap, Method, Response};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::auth::ClientTrust;
use crate::service::Routing;

/// A protocol served next to EST on the same listener.
#[async_trait]
pub trait FrontEnd: Send + Sync {
    /// The path prefixes it serves (`/.well-known/cmp`, `/scep`): a request whose path is
    /// a prefix, or starts with a prefix followed by `/`, goes to this front end.
    fn prefixes(&self) -> &'static [&'static str];

    /// The name of the request in metrics (`fleetca_est_requests_total{endpoint=...}`)
    /// and logs, from its method, path and query (`cmp`, `scep-pkioperation`, ...). A
    /// fixed label set: never request text.
    fn endpoint(&self, method: &Method, path: &str, query: Option<&str>) -> &'static str;

    /// Answers one request. Every client mistake is an answer in the protocol's own
    /// terms or a 4xx; a 5xx only for the server's own failures.
    async fn handle(
        &self,
        request: FrontEndRequest,
        context: FrontEndContext,
    ) -> Response<Full<Bytes>>;
}

/// One request for a [`FrontEnd`].
#[derive(Debug)]
pub struct FrontEndRequest {
    /// The HTTP method.
    pub method: Method,
    /// The path (percent-encoded as received).
    pub path: String,
    /// The query string, if any (percent-encoded as received).
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole body (empty for GET), at most the service's `max_body_bytes`.
    pub body: Bytes,
    /// The client's address.
    pub remote: std::net::SocketAddr,
    /// The TLS client certificate chain the client presented, if any (not yet verified:
    /// see [`FrontEndContext::identify`]). `None` as well on a plain-HTTP listener.
    pub peer_chain: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// Whether the request came over TLS.
    pub tls: bool,
}

/// What was in force when a request started: it keeps it to its end, whatever a reload
/// or a CA rollover replaces meanwhile.
#[derive(Clone)]
pub struct FrontEndContext {
    pub(crate) routing: Arc<Routing>,
    pub(crate) trust: Arc<ClientTrust>,
    /// The time the request started at (the service's clock).
    pub now: OffsetDateTime,
}

impl std::fmt::Debug for FrontEndContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontEndContext")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl FrontEndContext {
    /// The RA in force.
    pub fn ra(&self) -> Arc<dyn RegistrationAuthority> {
        Arc::clone(&self.routing.ra)
    }

    /// The profile served under `label` (`None`: the default label), as for EST.
    pub fn profile(&self, label: Option<&str>) -> Option<Arc<CertificateProfile>> {
        match label {
            None => Some(Arc::clone(&self.routing.default_label.profile)),
            Some(l) => self.routing.labels.get(l).map(|p| Arc::clone(&p.profile)),
        }
    }

    /// The certs-only chain (DER PKCS#7) EST's `/cacerts` serves under `label`: the
    /// issuing CA, older generations still in use, and the root.
    pub fn cacerts(&self, label: Option<&str>) -> Option<&[u8]> {
        match label {
            None => Some(&self.routing.default_label.cacerts),
            Some(l) => self.routing.labels.get(l).map(|p| p.cacerts.as_slice()),
        }
    }

    /// The certificates of [`Self::cacerts`], read once per label (not per request).
    pub fn ca_chain(&self, label: Option<&str>) -> Option<&[crate::ServedCa]> {
        match label {
            None => Some(self.routing.default_label.chain()),
            Some(l) => self.routing.labels.get(l).map(|p| p.chain()),
        }
    }

    /// The labels served (besides the default).
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.routing.labels.keys().map(String::as_str)
    }

    /// Who a certificate chain (leaf first, then intermediates) belongs to, exactly as
    /// EST authenticates a TLS client certificate: a birth certificate (manufacturing CA
    /// or an imported manufacturer CA), an operational certificate, or a station
    /// credential (registration CA), verified at `self.now` with the client-auth usage.
    /// Revocation and holds are the RA's to check (its admission), as for EST.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Result<ClientIdentity, String> {
        let owned: Vec<CertificateDer<'static>> =
            chain.iter().map(|c| c.clone().into_owned()).collect();
        let (role, issuer, certificate) = self
            .trust
            .verify(&owned, self.now)
            .map_err(|e| e.to_string())?;
        crate::auth::identity_of(role, issuer, certificate).map_err(|e| e.to_string())
    }
}
