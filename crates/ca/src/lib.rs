//! The certificate authority service: turns an approved request into a certificate.
//!
//! For each issuance it asks the issuing CA to prepare (build + lint) the certificate,
//! signs it, and records it in the inventory **before** returning it. If recording fails
//! the certificate is dropped and the caller gets an error: nothing leaves that the
//! inventory does not know about.

mod generations;

pub use generations::{active_generation, state_of, GenerationState};

use std::collections::HashMap;
use std::sync::Arc;

use fleetca_pki::{CertificateProfile, Clock, IssuanceOrder, IssuedCertificate, Issuer, PkiError};
use fleetca_store::{
    BirthContext, CertificateKind, CertificateLedger, DeviceBinding, DeviceLimits, NewCertificate,
    NewDecision, StoreError,
};

/// Errors of the CA service. None of them is the client's fault: the RA has already
/// decided, so these are configuration, signer or storage failures.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The profile names a CA this server does not have.
    #[error("profile '{profile}' names unknown issuing CA '{issuer}'")]
    UnknownIssuer {
        /// Profile name.
        profile: String,
        /// Issuer name.
        issuer: String,
    },
    /// Building, linting or signing failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The inventory refused to record it (quota used, duplicate birth certificate); it
    /// was not issued.
    #[error("not issued: {0}")]
    Refused(String),
    /// The inventory refused it under a rule's name (a station's quota, used up by
    /// concurrent requests); it was not issued.
    #[error("not issued: {reason}")]
    Limit {
        /// The rule (`station-quota`).
        rule: String,
        /// Why.
        reason: String,
    },
    /// The certificate could not be recorded, so it was not issued.
    #[error("certificate not recorded, so not issued: {0}")]
    Store(#[from] StoreError),
}

/// What kind of certificate a profile's issuer produces.
/// Where an issuance stands among the device's certificates, and the per-device limits its
/// recording must keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// For a renewal: the serial of the certificate it renews.
    pub replaces: Option<String>,
    /// The recorded certificate that authenticated the request, which must still be valid
    /// when the issuance is recorded (see `NewCertificate::authenticated_by`).
    pub authenticated_by: Option<String>,
    /// The profile's per-device limits, enforced by the recording commit.
    pub limits: DeviceLimits,
    /// What the device must be bound to, checked and recorded by the recording commit.
    pub binding: DeviceBinding,
    /// The CMP transaction to record with the certificate (its device and certificate
    /// fields are filled in here); see `NewCertificate::cmp_transaction`.
    pub cmp_transaction: Option<fleetca_store::CmpTransaction>,
}

fn kind_of(issuer: &str) -> CertificateKind {
    if issuer == "manufacturing" {
        CertificateKind::Birth
    } else {
        CertificateKind::Operational
    }
}

fn by_name(
    issuers: impl IntoIterator<Item = impl Into<Arc<Issuer>>>,
) -> HashMap<String, Arc<Issuer>> {
    issuers
        .into_iter()
        .map(|i| {
            let i: Arc<Issuer> = i.into();
            (i.name().to_string(), i)
        })
        .collect()
}

/// The issuing CAs and the ledger they record into.
pub struct CertificateAuthority {
    /// The issuing generation of each CA by name; replaced whole when a newer generation
    /// activates (requests under way keep the snapshot they took).
    issuers: std::sync::RwLock<Arc<HashMap<String, Arc<Issuer>>>>,
    ledger: Arc<dyn CertificateLedger>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("issuers", &self.issuers().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A CA service over `issuers`.
    pub fn new(
        issuers: impl IntoIterator<Item = impl Into<Arc<Issuer>>>,
        ledger: Arc<dyn CertificateLedger>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            issuers: std::sync::RwLock::new(Arc::new(by_name(issuers))),
            ledger,
            clock,
        }
    }

    fn issuers(&self) -> Arc<HashMap<String, Arc<Issuer>>> {
        // A poisoned lock still holds a complete value (it is only ever replaced whole).
        match self.issuers.read() {
            Ok(i) => Arc::clone(&i),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The issuing CA called `name` (its issuing generation).
    pub fn issuer(&self, name: &str) -> Option<Arc<Issuer>> {
        self.issuers().get(name).cloned()
    }

    /// Replaces the issuing CAs (a new generation activated): the next issuance uses them.
    pub fn replace_issuers(&self, issuers: impl IntoIterator<Item = impl Into<Arc<Issuer>>>) {
        let issuers = Arc::new(by_name(issuers));
        match self.issuers.write() {
            Ok(mut i) => *i = issuers,
            Err(poisoned) => *poisoned.into_inner() = issuers,
        }
    }

    /// Issues a certificate under `profile` and records it durably. `replaces` links a
    /// renewal to the certificate it renews.
    pub async fn issue(
        &self,
        profile: &CertificateProfile,
        order: IssuanceOrder,
        replaces: Option<String>,
    ) -> Result<IssuedCertificate, CaError> {
        self.issue_with(profile, order, replaces, None).await
    }

    /// Issues a birth certificate: the store enforces the station's quota and the
    /// one-live-birth-certificate rule in the same transaction that records it, and
    /// [`CaError::Refused`] says which failed.
    pub async fn issue_birth(
        &self,
        profile: &CertificateProfile,
        order: IssuanceOrder,
        birth: BirthContext,
    ) -> Result<IssuedCertificate, CaError> {
        self.issue_with(profile, order, None, Some(birth)).await
    }

    /// Issues a certificate and records it in one commit with the RA's decision that led to
    /// it (which completes the approval request it fulfils, if any): one durable write per
    /// enrollment, and never a certificate without its decision. The commit refuses
    /// ([`CaError::Refused`]) if the device or the authenticating certificate no longer
    /// stands by then.
    pub async fn issue_decided(
        &self,
        profile: &CertificateProfile,
        order: IssuanceOrder,
        lineage: Lineage,
        birth: Option<BirthContext>,
        decision: Option<NewDecision>,
    ) -> Result<IssuedCertificate, CaError> {
        self.record(profile, order, lineage, birth, decision).await
    }

    async fn issue_with(
        &self,
        profile: &CertificateProfile,
        order: IssuanceOrder,
        replaces: Option<String>,
        birth: Option<BirthContext>,
    ) -> Result<IssuedCertificate, CaError> {
        let lineage = Lineage {
            replaces,
            authenticated_by: None,
            limits: Default::default(),
            binding: Default::default(),
            cmp_transaction: None,
        };
        self.record(profile, order, lineage, birth, None).await
    }

    async fn record(
        &self,
        profile: &CertificateProfile,
        order: IssuanceOrder,
        Lineage {
            replaces,
            authenticated_by,
            limits,
            binding,
            cmp_transaction,
        }: Lineage,
        birth: Option<BirthContext>,
        decision: Option<NewDecision>,
    ) -> Result<IssuedCertificate, CaError> {
        let issuer = self
            .issuer(&profile.issuer)
            .ok_or_else(|| CaError::UnknownIssuer {
                profile: profile.name.clone(),
                issuer: profile.issuer.clone(),
            })?;
        let now = self.clock.now();
        let prepared = issuer.prepare(profile, &order, now)?;
        // A certificate never outlives its issuer: when the issuing generation ends before
        // the profile's validity, the certificate ends with it, and the decision says so.
        let mut decision = decision;
        if !profile.no_expiry && prepared.not_after() < now + profile.validity {
            let detail = format!(
                "validity shortened to the end of {} CA generation {} ({}): the profile asks for {}s",
                issuer.name(),
                issuer.generation(),
                prepared.not_after(),
                profile.validity.whole_seconds()
            );
            tracing::warn!(
                device = %order.device_serial,
                issuer = issuer.name(),
                generation = issuer.generation(),
                not_after = %prepared.not_after(),
                "certificate validity shortened to its issuer's end"
            );
            if let Some(d) = decision.as_mut() {
                d.checks.push(fleetca_store::RuleResult {
                    stage: "issuance".into(),
                    rule: "issuer-validity".into(),
                    passed: true,
                    detail,
                });
            }
        }
        let issued = issuer.issue(prepared)?;
        let cmp_transaction = cmp_transaction.map(|t| fleetca_store::CmpTransaction {
            device_serial: issued.device_serial.clone(),
            certificate_serial: Some(issued.serial.to_hex()),
            certificate_der: Some(issued.der.clone()),
            ..t
        });
        self.ledger
            .record_issuance(NewCertificate {
                serial: issued.serial.to_hex(),
                device_serial: issued.device_serial.clone(),
                issuer: issued.issuer.clone(),
                profile: issued.profile.clone(),
                kind: kind_of(&issued.issuer),
                not_before: issued.not_before,
                not_after: issued.not_after,
                spki_sha256: issued.spki_sha256.clone(),
                der: issued.der.clone(),
                replaces,
                authenticated_by,
                limits,
                binding,
                issued_at: now,
                birth,
                decision,
                cmp_transaction,
            })
            .await
            .map_err(|e| match e {
                StoreError::Refused(reason) => CaError::Refused(reason),
                StoreError::Limit { rule, reason } => CaError::Limit { rule, reason },
                other => CaError::Store(other),
            })?;
        tracing::debug!(
            device = %issued.device_serial,
            serial = %issued.serial,
            profile = %issued.profile,
            not_after = %issued.not_after,
            "certificate issued and recorded"
        );
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetca_pki::{CaCertificate, CaRole, HierarchyParams, KeyAlgorithm, SystemClock};
    use fleetca_store::{InventoryReader, SqliteStore};

    fn ca(store: SqliteStore) -> CertificateAuthority {
        let now = time::OffsetDateTime::now_utc();
        let params = HierarchyParams::new("Test");
        let root_key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
        let root_cert = CaCertificate::root(root_key.as_ref(), &params, now).unwrap();
        let root = Issuer::new("root", root_cert.der, root_key).unwrap();
        let key = Arc::new(KeyAlgorithm::P384.generate().unwrap());
        let cert =
            CaCertificate::issuing(&root, CaRole::Operational, key.as_ref(), &params, now).unwrap();
        let operational = Issuer::new("operational", cert.der, key).unwrap();
        CertificateAuthority::new([operational], Arc::new(store), Arc::new(SystemClock))
    }

    #[tokio::test]
    async fn issued_certificates_are_in_the_inventory_when_returned() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let ca = ca(store.clone());
        let device_key = KeyAlgorithm::Ed25519.generate().unwrap();
        let issued = ca
            .issue(
                &CertificateProfile::default_operational(),
                IssuanceOrder {
                    device_serial: "SN-1".into(),
                    spki_der: device_key.public_key_der(),
                },
                None,
            )
            .await
            .unwrap();
        let record = store
            .certificate(&issued.serial.to_hex())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.der, issued.der);
        assert_eq!(record.kind, CertificateKind::Operational);
        let info = fleetca_pki::CertificateInfo::from_der(&issued.der).unwrap();
        assert_eq!(info.device_serial(), Some("SN-1"));
        assert!(!info.is_ca);
    }

    #[tokio::test]
    async fn a_profile_for_a_missing_ca_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let ca = ca(store);
        let key = KeyAlgorithm::P256.generate().unwrap();
        let err = ca
            .issue(
                &CertificateProfile::default_birth(),
                IssuanceOrder {
                    device_serial: "SN-1".into(),
                    spki_der: key.public_key_der(),
                },
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CaError::UnknownIssuer { .. }), "{err}");
    }
}
