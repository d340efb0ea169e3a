//! The SCEP RA credential in the data directory: `scep-ra.pem` and `scep-ra.key` next to
//! the operational CA certificate. An RSA-2048 key in a PKCS#8 file (also with a PKCS#11
//! token: the envelope's key transport decrypts with it, which the token `Signer` does
//! not offer), and a certificate from the operational CA, renewed with a new key once two
//! thirds of its lifetime have passed (as the OCSP responder certificates are).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use fleetca_pki::{Clock, Issuer, KeyAlgorithm, SoftwareKey};
use time::OffsetDateTime;

use crate::config::Config;
use crate::config_scep::ScepConfig;
use crate::files::{read_certificate, read_key, write_atomic, write_key};

/// The RA certificate and key files.
pub fn scep_ra_files(config: &Config) -> (PathBuf, PathBuf) {
    let dir = config
        .operational_certificate
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    (dir.join("scep-ra.pem"), dir.join("scep-ra.key"))
}

/// Issues the RA certificate when it is missing, or renews it (new key) once two thirds
/// of its lifetime have passed. Returns whether it issued one.
pub fn ensure_scep_ra(
    config: &Config,
    scep: &ScepConfig,
    operational: &Issuer,
    now: OffsetDateTime,
) -> anyhow::Result<bool> {
    let (cert_path, key_path) = scep_ra_files(config);
    if cert_path.exists() && key_path.exists() {
        let der = read_certificate(&cert_path)?;
        let info = fleetca_pki::CertificateInfo::from_der(&der)?;
        let lifetime = info.not_after - info.not_before;
        if info.not_after - now > lifetime / 3 {
            return Ok(false);
        }
    }
    let key = KeyAlgorithm::Rsa2048.generate()?;
    let der = fleetca_pki::scep_ra_certificate(
        operational,
        &key.public_key_der(),
        scep.ra_validity,
        now,
    )?;
    write_key(&key_path, &key.to_pkcs8_pem(), false)?;
    write_atomic(
        &cert_path,
        fleetca_pki::pem_certificate(&der).as_bytes(),
        0o644,
        false,
    )?;
    tracing::info!(path = %cert_path.display(), "SCEP RA certificate issued");
    Ok(true)
}

/// Loads the RA credential.
pub fn load_scep_ra(config: &Config) -> anyhow::Result<fleetca_scep::RaCredential> {
    let (cert_path, key_path) = scep_ra_files(config);
    let der = read_certificate(&cert_path)?;
    let key = SoftwareKey::from_key_file(&read_key(&key_path)?)
        .with_context(|| format!("SCEP RA key {}", key_path.display()))?;
    fleetca_scep::RaCredential::new(&der, &key.pkcs8_der())
        .with_context(|| format!("SCEP RA credential {}", cert_path.display()))
}

/// Renews the RA certificate of a long-running server (hourly check) and installs it.
pub async fn renew_scep_ra(
    config: Config,
    front_end: Arc<fleetca_scep::ScepFrontEnd>,
    ca: Arc<fleetca_ca::CertificateAuthority>,
    clock: Arc<dyn Clock>,
    stop: impl std::future::Future<Output = ()>,
) {
    let Some(scep) = config.scep.clone() else {
        return;
    };
    tokio::pin!(stop);
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(3600));
    interval.tick().await; // start-up already ensured it
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = interval.tick() => {
                let Some(operational) = ca.issuer("operational") else {
                    continue;
                };
                let renewed = ensure_scep_ra(&config, &scep, &operational, clock.now())
                    .and_then(|issued| issued.then(|| load_scep_ra(&config)).transpose());
                match renewed {
                    Ok(Some(credential)) => {
                        front_end.replace_credential(credential);
                        tracing::info!("SCEP RA certificate renewed");
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "SCEP RA renewal failed; retrying in an hour"),
                }
            }
        }
    }
}
