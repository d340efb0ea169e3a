//! The EST server (RFC 7030 with the RFC 8951 clarifications).
//!
//! `GET cacerts`, `GET csrattrs`, `POST simpleenroll`, `POST simplereenroll` under
//! `/.well-known/est/` and `/.well-known/est/<label>/`. TLS is rustls (aws-lc-rs),
//! 1.2 and 1.3; client certificates are requested and verified per request. Rules live in
//! the RA, signing in the CA service, their sequence in the enrollment pipeline
//! (`fleetca-enroll`); this crate maps its outcomes to HTTP.

mod auth;
mod enroll;
mod error;
mod front_end;
mod header_case;
mod password_throttle;
mod server;
mod service;
mod tls;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use fleetca_ca::CertificateAuthority;
use fleetca_pki::Clock;
use fleetca_ra::RegistrationAuthority;
use fleetca_store::AccountStore;

pub use auth::{parse_basic as parse_basic_authorization, ClientTrust};
pub use enroll::{BATCH_HEADER, MODEL_HEADER, REISSUE_HEADER};
pub use error::EstError;
pub use front_end::{FrontEnd, FrontEndContext, FrontEndRequest};
pub use server::{serve, serve_plain, ConnectionLimits};
pub use service::{EstService, LabelProfile, Limits, RequestObserver, ServedCa};
pub use tls::{key_exchange_group, server_config, TlsSetupError, KEY_EXCHANGE_GROUPS};
pub use wire::decode_body as decode_request_body;

/// Most argon2 password verifications run at once.
const PASSWORD_CHECKS: usize = 2;

impl EstService {
    /// Assembles the service. `default_label` serves `/.well-known/est/`; `labels` serve
    /// `/.well-known/est/<label>/`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        default_label: LabelProfile,
        labels: HashMap<String, LabelProfile>,
        ra: Arc<dyn RegistrationAuthority>,
        ca: Arc<CertificateAuthority>,
        trust: ClientTrust,
        accounts: Arc<dyn AccountStore>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        Self {
            routing: std::sync::RwLock::new(Arc::new(service::Routing {
                default_label,
                labels,
                ra,
            })),
            ca,
            auth: auth::Authenticator {
                trust: std::sync::RwLock::new(Arc::new(trust)),
                accounts,
                password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
                throttle: password_throttle::PasswordThrottle::default(),
                observer: None,
            },
            clock,
            limits,
            observer: None,
            audit: None,
            front_ends: Vec::new(),
        }
    }

    /// Serves another protocol (CMP, SCEP) on this listener, under its path prefixes.
    pub fn with_front_end(mut self, front_end: Arc<dyn FrontEnd>) -> Self {
        self.front_ends.push(front_end);
        self
    }

    /// Writes every factory-station request (granted or refused), and every refused
    /// request of a device authenticated by its birth or operational certificate, to `audit`.
    pub fn with_audit(mut self, audit: Arc<dyn fleetca_store::AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Reports every request to `observer` (metrics).
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.auth.observer = Some(Arc::clone(&observer));
        self.observer = Some(observer);
        self
    }
}
