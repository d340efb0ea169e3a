//! `fleetca factory`: factory stations (registration authorities) on the data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use fleetca_pki::{CaCertificate, CaRole, HierarchyParams, Issuer, KeyAlgorithm, SoftwareKey};
use fleetca_store::{StationStatus, Store};
use time::OffsetDateTime;

use crate::admin::{load, runtime};
use crate::config::Config;
use crate::files::{write_atomic, write_key};
use crate::keys::{KeyRef, KeySource};
use crate::pki_setup::load_issuer;

/// What `factory add-station` is asked for.
pub struct StationOptions {
    pub name: String,
    pub serial_pattern: String,
    pub serial_range: Option<String>,
    pub quota: Option<u64>,
    pub valid_days: u32,
    pub allow_reissue: bool,
    pub out: PathBuf,
    /// Also write NAME.p12, encrypted with the passphrase in this file (first line).
    pub p12_passphrase_file: Option<PathBuf>,
    /// The operator's comment for the audit trail.
    pub comment: Option<String>,
}

/// The registration CA, created under the root on first use (data directories made before
/// factory stations existed); creating it needs the root key.
pub fn registration_issuer(config: &Config, store: &dyn Store) -> anyhow::Result<Issuer> {
    let (cert_path, key_ref) = (&config.registration_certificate, &config.registration_key);
    let keys = KeySource::new(config)?;
    if !cert_path.exists() {
        let root = load_issuer(&keys, "root", &config.root_certificate, &config.root_key)
            .with_context(|| {
                format!(
                    "the registration CA ({}) does not exist yet and creating it needs the root key",
                    cert_path.display()
                )
            })?;
        let algorithm = fleetca_pki::Signer::key_algorithm(root.signer().as_ref());
        let key: Arc<dyn fleetca_pki::Signer> = match (key_ref, keys.token()) {
            (KeyRef::Pkcs11 { label }, Some(token)) => Arc::new(
                fleetca_hsm::Pkcs11Key::generate(token, label, algorithm)
                    .context("cannot create the registration CA key")?,
            ),
            (KeyRef::File(path), _) => {
                let key = algorithm.generate()?;
                write_key(path, &key.to_pkcs8_pem(), true)?;
                Arc::new(key)
            }
            (KeyRef::Pkcs11 { .. }, None) => {
                bail!("ca.registration_key names a PKCS#11 key, but [pkcs11] is not configured")
            }
        };
        let cert = CaCertificate::issuing(
            &root,
            CaRole::Registration,
            key.as_ref(),
            &HierarchyParams::new(&config.organization),
            OffsetDateTime::now_utc(),
        )?;
        write_atomic(cert_path, cert.pem().as_bytes(), 0o644, true)?;
        eprintln!(
            "fleetca: created the registration CA {}",
            cert_path.display()
        );
    }
    crate::ca_cmd::issuing_issuer(config, &keys, store, "registration")
}

/// `fleetca factory add-station`: registers the station and writes its credential.
pub fn add_station(data_dir: &Path, opts: StationOptions) -> anyhow::Result<()> {
    let request = fleetca_admin::StationRequest {
        name: opts.name.clone(),
        serial_pattern: opts.serial_pattern.clone(),
        serial_range: opts.serial_range.clone(),
        quota: opts.quota,
        valid_days: opts.valid_days,
        allow_reissue: opts.allow_reissue,
    };
    // A bad request is refused before the registration CA is loaded, or created.
    request.validate()?;
    let (config, store) = load(data_dir)?;
    let registration = registration_issuer(&config, store.as_ref())?;
    let key = KeyAlgorithm::P256.generate()?;
    let credential = runtime()?.block_on(fleetca_admin::add_station(
        store.as_ref(),
        &fleetca_admin::Actor::cli(),
        &registration,
        &config.organization,
        request,
        &key.public_key_der(),
        opts.comment.as_deref(),
    ))?;
    let der = credential.certificate_der;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let key_path = opts.out.join(format!("{}.key", opts.name));
    let cert_path = opts.out.join(format!("{}.pem", opts.name));
    write_key(&key_path, &key.to_pkcs8_pem(), true)?;
    write_atomic(&cert_path, credential.chain_pem.as_bytes(), 0o644, true)?;
    if let Some(file) = &opts.p12_passphrase_file {
        let p12_path = opts.out.join(format!("{}.p12", opts.name));
        let bundle = pkcs12(
            &opts.name,
            &key,
            &[der.clone(), registration.certificate_der().to_vec()],
            file,
        )?;
        write_atomic(&p12_path, &bundle, 0o600, true)?;
        eprintln!("fleetca: PKCS#12 bundle {}", p12_path.display());
    }
    eprintln!(
        "fleetca: station '{}' added; credential {} (key {}), valid until {}",
        opts.name,
        cert_path.display(),
        key_path.display(),
        credential.not_after.date()
    );
    Ok(())
}

/// `fleetca factory list`.
pub fn list(data_dir: &Path) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let stations = runtime()?.block_on(store.stations())?;
    outln!(
        "{:<20}  {:<9}  {:>8}  {:>8}  {:>9}  {:<20}  RANGE",
        "STATION",
        "STATUS",
        "ISSUED",
        "QUOTA",
        "REMAINING",
        "PATTERN"
    );
    for s in &stations {
        let quota = s.quota.map_or("-".to_string(), |q| q.to_string());
        let remaining = s
            .quota
            .map_or("-".to_string(), |q| q.saturating_sub(s.issued).to_string());
        let range = match (&s.range_from, &s.range_to) {
            (Some(f), Some(t)) => format!("{f}..{t}"),
            _ => "-".into(),
        };
        outln!(
            "{:<20}  {:<9}  {:>8}  {:>8}  {:>9}  {:<20}  {range}",
            s.name,
            s.status,
            s.issued,
            quota,
            remaining,
            s.serial_pattern
        );
    }
    eprintln!("{} station(s)", stations.len());
    Ok(())
}

/// `fleetca factory suspend|resume|remove`: effective on the station's next request.
pub fn set_status(
    data_dir: &Path,
    name: &str,
    status: StationStatus,
    comment: Option<&str>,
    yes: bool,
) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    if status == StationStatus::Removed {
        crate::admin::confirm(
            &format!("removing station '{name}' (its name is never used again)"),
            yes,
        )?;
    }
    runtime()?.block_on(fleetca_admin::set_station_status(
        store.as_ref(),
        &fleetca_admin::Actor::cli(),
        name,
        status,
        comment,
    ))?;
    eprintln!("fleetca: station '{name}' is now {status}");
    Ok(())
}

/// `fleetca factory set-quota NAME N|none`: effective on the station's next request.
pub fn set_quota(
    data_dir: &Path,
    name: &str,
    quota: Option<u64>,
    comment: Option<&str>,
) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    runtime()?.block_on(fleetca_admin::set_station_quota(
        store.as_ref(),
        &fleetca_admin::Actor::cli(),
        name,
        quota,
        comment,
    ))?;
    match quota {
        Some(q) => {
            eprintln!("fleetca: station '{name}' may now obtain {q} birth certificate(s) in all")
        }
        None => eprintln!("fleetca: station '{name}' has no quota now"),
    }
    Ok(())
}

/// A PKCS#12 bundle of the station key and chain (PBES2 with AES-256, HMAC-SHA256).
fn pkcs12(
    name: &str,
    key: &SoftwareKey,
    chain: &[Vec<u8>],
    passphrase_file: &Path,
) -> anyhow::Result<Vec<u8>> {
    let passphrase = std::fs::read_to_string(passphrase_file)
        .with_context(|| format!("cannot read {}", passphrase_file.display()))?;
    let passphrase = passphrase.lines().next().unwrap_or("").to_string();
    if passphrase.len() < 8 {
        bail!(
            "the PKCS#12 passphrase in {} must be at least 8 characters",
            passphrase_file.display()
        );
    }
    let certs = chain
        .iter()
        .map(|der| p12_keystore::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("PKCS#12 certificate: {e}"))?;
    let private = p12_keystore::PrivateKey::from_der(&key.pkcs8_der())
        .map_err(|e| anyhow::anyhow!("PKCS#12 key: {e}"))?;
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        name,
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            name, private, certs,
        )),
    );
    store
        .writer(&passphrase)
        .write()
        .map_err(|e| anyhow::anyhow!("cannot write the PKCS#12 bundle: {e}"))
}
