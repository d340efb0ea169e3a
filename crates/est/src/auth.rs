//! Who is asking: a client certificate verified against the CA it claims (manufacturing,
//! an imported manufacturer CA, or the operational CA), or HTTP Basic credentials of an
//! enrollment account.

use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine;
use fleetca_pki::CertificateInfo;
use fleetca_ra::ClientIdentity;
use fleetca_store::AccountStore;
use hyper::header::{HeaderMap, AUTHORIZATION};
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::password_throttle::{Held, PasswordThrottle};
use crate::EstError;

/// A CA whose certificates may authenticate.
#[derive(Debug)]
struct Anchor {
    name: String,
    anchor: TrustAnchor<'static>,
}

/// Role a client certificate plays, by the CA that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Birth { issued_here: bool },
    Operational,
    Station,
}

/// The CAs client certificates may chain to.
#[derive(Debug)]
pub struct ClientTrust {
    /// Every valid generation of the operational CA (the issuing one first).
    operational: Vec<Anchor>,
    /// Every valid generation of the manufacturing CA.
    manufacturing: Vec<Anchor>,
    /// Every valid generation of the registration CA, once one exists.
    registration: Vec<Anchor>,
    manufacturers: Vec<Anchor>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

fn anchor(name: &str, der: &[u8]) -> Result<Anchor, String> {
    let cert = CertificateDer::from(der.to_vec());
    let anchor = webpki::anchor_from_trusted_cert(&cert)
        .map_err(|e| format!("CA certificate '{name}' cannot be a trust anchor: {e:?}"))?
        .to_owned();
    Ok(Anchor {
        name: name.to_string(),
        anchor,
    })
}

impl ClientTrust {
    /// Trust for the operational CA, the manufacturing CA and imported manufacturer CAs
    /// (name, DER certificate).
    pub fn new(
        operational_ca: &[u8],
        manufacturing_ca: &[u8],
        manufacturers: &[(String, Vec<u8>)],
    ) -> Result<Self, String> {
        Ok(Self {
            operational: vec![anchor("operational", operational_ca)?],
            manufacturing: vec![anchor("manufacturing", manufacturing_ca)?],
            registration: Vec::new(),
            manufacturers: manufacturers
                .iter()
                .map(|(n, d)| anchor(n, d))
                .collect::<Result<_, _>>()?,
            algorithms: crate::tls::verification_algorithms(),
        })
    }

    /// Also trusts the registration CA, whose certificates authenticate factory stations.
    pub fn with_registration(mut self, registration_ca: &[u8]) -> Result<Self, String> {
        self.registration
            .push(anchor("registration", registration_ca)?);
        Ok(self)
    }

    /// Also trusts an older, still valid generation of a CA (`operational`,
    /// `manufacturing` or `registration`): what it issued authenticates until it expires
    /// or is revoked, and renews onto the issuing generation.
    pub fn with_generation(mut self, ca: &str, certificate: &[u8]) -> Result<Self, String> {
        let list = match ca {
            "operational" => &mut self.operational,
            "manufacturing" => &mut self.manufacturing,
            "registration" => &mut self.registration,
            other => return Err(format!("no CA '{other}' to trust a generation of")),
        };
        list.push(anchor(ca, certificate)?);
        Ok(self)
    }

    /// Verifies a presented chain at `now` and says which CA issued it.
    pub(crate) fn verify(
        &self,
        chain: &[CertificateDer<'static>],
        now: OffsetDateTime,
    ) -> Result<(Role, String, CertificateInfo), EstError> {
        let leaf = chain
            .first()
            .ok_or_else(|| EstError::Unauthenticated("empty client certificate chain".into()))?;
        let intermediates = chain.get(1..).unwrap_or_default();
        let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| {
            EstError::Unauthenticated(format!("client certificate cannot be parsed: {e:?}"))
        })?;
        let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        let candidates = self
            .operational
            .iter()
            .map(|a| (a, Role::Operational))
            .chain(
                self.manufacturing
                    .iter()
                    .map(|a| (a, Role::Birth { issued_here: true })),
            )
            .chain(
                self.manufacturers
                    .iter()
                    .map(|a| (a, Role::Birth { issued_here: false })),
            )
            .chain(self.registration.iter().map(|a| (a, Role::Station)));
        let mut first_error = None;
        for (anchor, role) in candidates {
            match ee.verify_for_usage(
                self.algorithms.all,
                std::slice::from_ref(&anchor.anchor),
                intermediates,
                time,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            ) {
                Ok(_) => {
                    let info = CertificateInfo::from_der(leaf).map_err(|e| {
                        EstError::Unauthenticated(format!("client certificate: {e}"))
                    })?;
                    return Ok((role, anchor.name.clone(), info));
                }
                Err(webpki::Error::UnknownIssuer) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(EstError::Unauthenticated(match first_error {
            None => "client certificate was not issued by a CA this server trusts".into(),
            Some(webpki::Error::CertExpired { not_after, .. }) => format!(
                "client certificate expired at {}",
                format_unix(not_after.as_secs())
            ),
            Some(webpki::Error::CertNotValidYet { not_before, .. }) => format!(
                "client certificate is not valid before {}",
                format_unix(not_before.as_secs())
            ),
            Some(webpki::Error::InvalidSignatureForPublicKey) => {
                "client certificate signature does not verify".into()
            }
            Some(e) => format!("client certificate rejected: {e:?}"),
        }))
    }
}

fn format_unix(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// A connection's verified client chain: which CA issued it and the leaf's fields.
pub(crate) type VerifiedChain = std::sync::OnceLock<(Role, String, CertificateInfo)>;

/// Authenticates requests.
pub(crate) struct Authenticator {
    /// Replaced whole when CA generations change (see `EstService::replace_client_trust`).
    pub(crate) trust: std::sync::RwLock<Arc<ClientTrust>>,
    pub(crate) accounts: Arc<dyn AccountStore>,
    /// Bounds concurrent argon2 verifications (each costs tens of milliseconds of CPU), so
    /// password guessing cannot starve certificate enrollments.
    pub(crate) password_checks: Semaphore,
    /// Back-off for password guessing, per account and per source.
    pub(crate) throttle: PasswordThrottle,
    /// Counts logins (metrics).
    pub(crate) observer: Option<Arc<dyn crate::RequestObserver>>,
}

impl Authenticator {
    /// The client's identity: its certificate if it presented one (never falling back to a
    /// password when a certificate is invalid), else HTTP Basic credentials.
    pub(crate) async fn authenticate(
        &self,
        peer_chain: Option<&[CertificateDer<'static>]>,
        verified: &VerifiedChain,
        headers: &HeaderMap,
        remote: std::net::IpAddr,
        now: OffsetDateTime,
    ) -> Result<ClientIdentity, EstError> {
        if let Some(chain) = peer_chain {
            // Verified once per connection; the validity window is checked every time.
            let cached = verified
                .get()
                .filter(|(_, _, c)| c.not_before <= now && now < c.not_after)
                .cloned();
            let (role, issuer, certificate) = match cached {
                Some(v) => v,
                None => {
                    let trust = match self.trust.read() {
                        Ok(t) => Arc::clone(&t),
                        Err(poisoned) => Arc::clone(&poisoned.into_inner()),
                    };
                    let v = trust.verify(chain, now)?;
                    let _ = verified.set(v.clone());
                    v
                }
            };
            return identity_of(role, issuer, certificate);
        }
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Err(EstError::Unauthenticated(
                "authentication required: present a birth or operational certificate over TLS, or HTTP Basic credentials".into(),
            ));
        };
        let (name, password) = parse_basic(value.as_bytes())?;
        let source = fleetca_listener::source_of(remote);
        let observe = |result: &'static str| {
            if let Some(o) = &self.observer {
                o.password_attempt(result);
            }
        };
        if let Err(held) = self.throttle.check(&name, source) {
            let (scope, wait, result) = match held {
                Held::Account(w) => ("for this account", w, "held_account"),
                Held::Source(w) => ("from this address", w, "held_source"),
            };
            observe(result);
            return Err(EstError::TooManyAttempts {
                scope,
                retry_after: wait.as_secs().saturating_add(1),
            });
        }
        let bad = || EstError::Unauthenticated("invalid username or password".into());
        let account = self
            .accounts
            .account(&name)
            .await
            .map_err(|e| EstError::Unavailable(format!("account lookup failed: {e}")))?;
        // Verify against a fixed dummy hash for unknown accounts, so that timing does not
        // reveal which names exist.
        let hash = account
            .as_ref()
            .filter(|a| a.enabled)
            .map(|a| a.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_string());
        let permit = self
            .password_checks
            .acquire()
            .await
            .map_err(|_| EstError::Unavailable("server is shutting down".into()))?;
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(|e| EstError::internal(&e))?;
        drop(permit);
        match account {
            Some(a) if ok && a.enabled => {
                self.throttle.succeeded(&name, source);
                observe("success");
                Ok(ClientIdentity::Account {
                    name: a.name,
                    label: a.label,
                    serial_pattern: a.serial_pattern,
                    any_serial: a.any_serial,
                    known_devices: a.known_devices,
                })
            }
            _ => {
                self.throttle.failed(&name, source);
                observe("failure");
                Err(bad())
            }
        }
    }
}

/// The identity a verified certificate gives its holder, by the CA that issued it.
pub(crate) fn identity_of(
    role: Role,
    issuer: String,
    certificate: CertificateInfo,
) -> Result<ClientIdentity, EstError> {
    Ok(match role {
        Role::Station => {
            let name = certificate
                .subject
                .iter()
                .find(|a| a.oid == "2.5.4.3")
                .map(|a| a.value.clone())
                .ok_or_else(|| {
                    EstError::Unauthenticated("station credential has no common name".into())
                })?;
            ClientIdentity::Station { name, certificate }
        }
        Role::Operational => ClientIdentity::OperationalCertificate { certificate },
        Role::Birth { issued_here } => ClientIdentity::BirthCertificate {
            issuer,
            issued_here,
            certificate,
        },
    })
}

/// argon2id hash of a random password nobody knows.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$ZmxlZXRjYS1kdW1teQ$ZjZ0K3d5dGJwV0k5c2V0b2N0eXFtZz09YWJj";

/// The name and password of an HTTP Basic `Authorization` header value (RFC 7617). The
/// password is not checked here; this only reads the header (untrusted input, fuzz target
/// `basic_auth`).
pub fn parse_basic(value: &[u8]) -> Result<(String, String), EstError> {
    let bad =
        |why: &str| EstError::Unauthenticated(format!("malformed Authorization header: {why}"));
    let text = std::str::from_utf8(value).map_err(|_| bad("not text"))?;
    let (scheme, rest) = text
        .split_once(' ')
        .ok_or_else(|| bad("expected 'Basic <credentials>'"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad("only the Basic scheme is supported"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| bad("credentials are not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad("credentials are not UTF-8"))?;
    let (name, password) = decoded
        .split_once(':')
        .ok_or_else(|| bad("credentials lack ':'"))?;
    Ok((name.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_parse_and_garbage_is_refused() {
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("a:b:c")
        );
        assert_eq!(
            parse_basic(v.as_bytes()).unwrap(),
            ("a".into(), "b:c".into())
        );
        for bad in ["Bearer x", "Basic !!!", "Basic", "Basic Zm9v"] {
            assert!(parse_basic(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_dummy_hash_parses() {
        PasswordHash::new(DUMMY_HASH).unwrap();
    }
}
