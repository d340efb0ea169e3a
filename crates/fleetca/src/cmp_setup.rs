//! The CMP front end's files and background work: the protection certificate fleetca
//! issues itself from the operational CA (a P-256 key among the data directory's keys,
//! renewed once two thirds of its lifetime passed, like the OCSP responder certificates),
//! the secret key one-time shared secrets are derived under, and the revocation of
//! certificates that were never confirmed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use fleetca_ca::CertificateAuthority;
use fleetca_cmp::{CmpFrontEnd, CmpSettings, ProtectionCredential, SecretKey};
use fleetca_pki::{CertificateInfo, Clock, Issuer, KeyAlgorithm};
use fleetca_store::Store;
use time::OffsetDateTime;

use crate::config::Config;
use crate::files::{read_certificate, read_key, write_atomic};
use crate::keys::KeySource;

/// Where the CMP files live: next to the CA certificates, like the OCSP responder's.
struct CmpFiles {
    certificate: PathBuf,
    key: PathBuf,
    secret_key: PathBuf,
}

fn files(config: &Config) -> CmpFiles {
    let dir = config
        .operational_certificate
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    CmpFiles {
        certificate: dir.join("cmp-protection.pem"),
        key: dir.join("cmp-protection.key"),
        secret_key: dir.join("cmp-secret.key"),
    }
}

/// The key shared secrets are derived under; created (0600) on first use.
pub fn secret_key(config: &Config) -> anyhow::Result<SecretKey> {
    let path = files(config).secret_key;
    if !path.exists() {
        let key = SecretKey::generate()?;
        // Exclusive: of two processes creating it at once, one wins and both read it.
        if let Err(e) = write_atomic(&path, &key.to_bytes(), 0o600, true) {
            if !path.exists() {
                return Err(e);
            }
        }
    }
    let bytes = read_key(&path)?;
    SecretKey::from_bytes(&bytes).with_context(|| format!("CMP secret key {}", path.display()))
}

/// Issues (or renews once two thirds of its lifetime passed) the CMP protection
/// certificate; returns whether it did.
pub fn ensure_protection(
    config: &Config,
    keys: &KeySource,
    operational: &Issuer,
    now: OffsetDateTime,
) -> anyhow::Result<bool> {
    let f = files(config);
    if f.certificate.exists() {
        let der = read_certificate(&f.certificate)?;
        let info = CertificateInfo::from_der(&der)?;
        let lifetime = info.not_after - info.not_before;
        // Also renewed when the operational CA issuing now is not its issuer (rollover).
        if info.not_after - now > lifetime / 3 && info.issuer == operational.info().subject {
            return Ok(false);
        }
    }
    let key = keys.generate_replaceable("cmp-protection", KeyAlgorithm::P256, &f.key)?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(key.as_ref());
    let der = fleetca_pki::cmp_protection_certificate(
        operational,
        &spki,
        config.cmp.protection_validity,
        now,
    )?;
    write_atomic(
        &f.certificate,
        fleetca_pki::pem_certificate(&der).as_bytes(),
        0o644,
        false,
    )?;
    tracing::info!("CMP protection certificate issued");
    Ok(true)
}

/// Loads the protection credential (sent with the operational CA certificate).
pub fn load_protection(
    config: &Config,
    keys: &KeySource,
    operational: &Issuer,
) -> anyhow::Result<ProtectionCredential> {
    let f = files(config);
    let der = read_certificate(&f.certificate)?;
    let key = keys.replaceable("CMP protection", &f.key)?;
    Ok(ProtectionCredential::new(
        &der,
        &[operational.certificate_der().to_vec()],
        key,
    )?)
}

/// The parts of the store the CMP front end uses.
fn backend(store: &Arc<dyn Store>) -> fleetca_cmp::CmpBackend {
    fleetca_cmp::CmpBackend {
        cmp: Arc::clone(store) as Arc<dyn fleetca_store::CmpStore>,
        audit: Arc::clone(store) as Arc<dyn fleetca_store::AuditLog>,
        revocation: Arc::clone(store) as Arc<dyn fleetca_store::RevocationStore>,
    }
}

/// The CMP front end, when `[cmp] enabled`.
pub fn front_end(
    config: &Config,
    keys: &KeySource,
    operational: &Issuer,
    store: &Arc<dyn Store>,
    ca: &Arc<CertificateAuthority>,
    now: OffsetDateTime,
) -> anyhow::Result<Option<Arc<CmpFrontEnd>>> {
    if !config.cmp.enabled {
        return Ok(None);
    }
    ensure_protection(config, keys, operational, now)?;
    let credential = load_protection(config, keys, operational)?;
    Ok(Some(Arc::new(CmpFrontEnd::new(
        backend(store),
        Arc::clone(ca),
        secret_key(config)?,
        credential,
        CmpSettings {
            confirm_timeout: config.cmp.confirm_timeout,
            implicit_confirm: config.cmp.implicit_confirm,
        },
    ))))
}

/// Background work of a running server: every 15 s, revokes certificates whose
/// confirmation is overdue; hourly, renews the protection certificate when due.
pub async fn maintain(
    config: Config,
    keys: KeySource,
    ca: Arc<CertificateAuthority>,
    store: Arc<dyn Store>,
    front_end: Arc<CmpFrontEnd>,
    clock: Arc<dyn Clock>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut sweep = tokio::time::interval(std::time::Duration::from_secs(15));
    let mut renew = tokio::time::interval(std::time::Duration::from_secs(3600));
    renew.tick().await; // start-up already ensured it
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = sweep.tick() => {
                match fleetca_cmp::revoke_overdue(&backend(&store), clock.now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(revoked = n, "CMP: unconfirmed certificates revoked"),
                    Err(e) => tracing::warn!(error = %e, "CMP: overdue confirmations not checked; retrying"),
                }
            }
            _ = renew.tick() => {
                let Some(operational) = ca.issuer("operational") else {
                    continue;
                };
                let renewed = ensure_protection(&config, &keys, &operational, clock.now())
                    .and_then(|changed| {
                        changed
                            .then(|| load_protection(&config, &keys, &operational))
                            .transpose()
                    });
                match renewed {
                    Ok(Some(credential)) => front_end.replace_credential(credential),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "CMP protection certificate renewal failed; retrying in an hour"),
                }
            }
        }
    }
}
