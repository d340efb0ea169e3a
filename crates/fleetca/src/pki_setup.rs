//! Creating a new PKI in a data directory (`fleetca init`) and loading it back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use fleetca_pki::{
    pem_certificate, server_certificate, CaCertificate, CaRole, CertificateInfo, HierarchyParams,
    Issuer, KeyAlgorithm, SoftwareKey,
};
use time::OffsetDateTime;

use crate::config::{default_config_text, pkcs11_config_text, Config};
use crate::files::{
    read_certificate, read_certificates, read_key, refuse_writable_by_others, write_atomic,
    write_key,
};
use crate::keys::{ca_key_label, KeySource, Pkcs11Settings};

/// What `fleetca init` is asked to create.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub key_algorithm: KeyAlgorithm,
    pub organization: String,
    pub server_names: Vec<String>,
    pub listen: String,
    pub status_listen: String,
    /// Generate the CA and OCSP keys in this PKCS#11 token instead of files.
    pub pkcs11: Option<Pkcs11Settings>,
}

/// The configuration file of a data directory.
pub fn config_path(data_dir: &Path) -> PathBuf {
    data_dir.join("fleetca.toml")
}

/// Names the server certificate always covers.
fn server_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

/// The server's TLS key algorithm: the CA algorithm, except Ed25519, which many TLS
/// clients still lack for server authentication (P-256 then).
fn server_key_algorithm(ca: KeyAlgorithm) -> KeyAlgorithm {
    match ca {
        KeyAlgorithm::Ed25519 => KeyAlgorithm::P256,
        other => other,
    }
}

/// How `serve` was asked to treat a data directory without a CA.
#[derive(Debug, Clone, Copy)]
pub struct ServeInit {
    /// `--init` was given.
    pub flag: bool,
    /// The directory was named with `--data-dir` or `FLEETCA_DATA_DIR`.
    pub explicit: bool,
    /// `--check-config`: never create anything.
    pub check_config: bool,
}

/// The error for a data directory that holds no CA. It never suggests creating one
/// as the fix: a mistyped path is the usual cause, and a second CA is not what the
/// operator wanted (devices trust only the first one).
pub fn missing_data_dir(data_dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} holds no fleetca CA ({} does not exist). If your CA is elsewhere, give its data directory with --data-dir or FLEETCA_DATA_DIR (check the path for a typo). To create a new, separate CA on purpose: `fleetca init --data-dir DIR`, or `fleetca serve --init --data-dir DIR`",
        data_dir.display(),
        config_path(data_dir).display()
    )
}

/// Whether `serve` should create a new CA in `data_dir` before serving: only when it has
/// none yet and either `--init` was given, or the directory exists, is empty and was named
/// explicitly. A missing directory without `--init`, or a non-empty one without a
/// configuration, is refused with [`missing_data_dir`].
pub fn serve_may_initialise(data_dir: &Path, how: ServeInit) -> anyhow::Result<bool> {
    if config_path(data_dir).exists() {
        return Ok(false);
    }
    if how.check_config {
        return Err(missing_data_dir(data_dir));
    }
    let empty = match std::fs::read_dir(data_dir) {
        Ok(mut entries) => Some(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("cannot read {}: {e}", data_dir.display()),
    };
    match empty {
        // Missing, or empty: `--init` creates the CA.
        None | Some(true) if how.flag => Ok(true),
        // An empty directory the operator made and named: that is the intent.
        Some(true) if how.explicit => Ok(true),
        Some(false) => bail!(
            "{} is not empty but has no fleetca.toml: it is not a fleetca data directory (or its configuration was removed); refusing to create a CA in it",
            data_dir.display()
        ),
        _ => Err(missing_data_dir(data_dir)),
    }
}

/// Creates the PKI, configuration and database. Refuses to touch an existing CA.
pub fn init(data_dir: &Path, opts: &InitOptions) -> anyhow::Result<()> {
    let config_file = config_path(data_dir);
    let pki = data_dir.join("pki");
    for existing in [
        &config_file,
        &pki.join("root-ca.pem"),
        &pki.join("root-ca.key"),
    ] {
        if existing.exists() {
            bail!(
                "{} already exists: {} already holds a fleetca CA, and init never overwrites one",
                existing.display(),
                data_dir.display()
            );
        }
    }
    if opts.organization.trim().is_empty() {
        bail!("--organization must not be empty");
    }
    for name in &opts.server_names {
        let ok = name.parse::<std::net::IpAddr>().is_ok()
            || rustls_pki_types::DnsName::try_from(name.as_str()).is_ok();
        if !ok {
            bail!("--server-name '{name}' is neither a DNS name nor an IP address");
        }
    }
    // Open (and log into) the token before anything is written: a bad module, token or
    // PIN leaves no half-made data directory behind.
    let token = match &opts.pkcs11 {
        Some(p) => Some(
            p.open()
                .context("cannot use the PKCS#11 token for the CA keys")?,
        ),
        None => None,
    };
    if let Some(token) = &token {
        for role in ["root", "registration", "manufacturing", "operational"] {
            let label = ca_key_label(role);
            if fleetca_hsm::Pkcs11Key::exists(token, &label)? {
                bail!(
                    "{}: the token already holds a key labelled '{label}' (another PKI?); use another token, nothing was created",
                    token.reference()
                );
            }
        }
    }
    create_private_dir(data_dir)?;
    create_private_dir(&pki)?;
    // Explicit modes, whatever the umask: trust anchors are never group-writable.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
        .create(pki.join("manufacturers"))
        .with_context(|| format!("cannot create {}", pki.join("manufacturers").display()))?;

    let now = OffsetDateTime::now_utc();
    let params = HierarchyParams::new(&opts.organization);
    let alg = opts.key_algorithm;

    // A CA key: generated inside the token (non-extractable), or a PKCS#8 file.
    let new_key = |role: CaRole| -> anyhow::Result<(Arc<dyn fleetca_pki::Signer>, String)> {
        let base = format!("{}-ca", role.name());
        match &token {
            Some(token) => {
                let label = ca_key_label(role.name());
                let key = fleetca_hsm::Pkcs11Key::generate(token, &label, alg)
                    .with_context(|| format!("cannot create the {} CA key", role.name()))?;
                Ok((
                    Arc::new(key),
                    format!("  pki/{base}.pem, key '{label}' in the token"),
                ))
            }
            None => {
                let key = alg.generate()?;
                write_key(&pki.join(format!("{base}.key")), &key.to_pkcs8_pem(), true)?;
                Ok((Arc::new(key), format!("  pki/{base}.pem (+ .key)")))
            }
        }
    };
    let mut written = Vec::new();
    let write_cert = |role: CaRole, cert: &CaCertificate| -> anyhow::Result<()> {
        let base = format!("{}-ca", role.name());
        write_atomic(
            &pki.join(format!("{base}.pem")),
            cert.pem().as_bytes(),
            0o644,
            true,
        )
    };
    let (root_key, line) = new_key(CaRole::Root)?;
    let root_cert = CaCertificate::root(root_key.as_ref(), &params, now)?;
    let root = Issuer::new("root", root_cert.der.clone(), root_key)?;
    write_cert(CaRole::Root, &root_cert)?;
    written.push(line);
    let mut issuers = Vec::new();
    for role in [
        CaRole::Registration,
        CaRole::Manufacturing,
        CaRole::Operational,
    ] {
        let (key, line) = new_key(role)?;
        let cert = CaCertificate::issuing(&root, role, key.as_ref(), &params, now)?;
        write_cert(role, &cert)?;
        written.push(line);
        issuers.push(Issuer::new(role.name(), cert.der, key)?);
    }
    let operational = issuers
        .pop()
        .context("internal: operational issuer missing")?;
    let files = ServerFiles {
        certificate: pki.join("server.pem"),
        key: pki.join("server.key"),
    };
    write_server_certificate(
        &files,
        &operational,
        &opts.organization,
        &opts.server_names,
        server_key_algorithm(alg),
        now,
        true,
    )?;

    let mut config_text = default_config_text(
        &opts.organization,
        &opts.server_names,
        &opts.listen,
        &opts.status_listen,
    );
    if let Some(p) = &opts.pkcs11 {
        config_text = pkcs11_config_text(&config_text, p);
    }
    // 0600: it names key files, the database and the policy; nobody else needs to read it.
    write_atomic(&config_file, config_text.as_bytes(), 0o600, true)?;
    let config = Config::load(&config_file)?;
    fleetca_store::open(&config.database)?;
    let cas = load_cas_with(&config, KeySource::with_token(token))?;
    ensure_ocsp_responders(&config, &cas, now)?;

    outln!(
        "fleetca: created a new PKI in {} ({alg} keys):",
        data_dir.display()
    );
    for line in written {
        outln!("{line}");
    }
    outln!(
        "  pki/server.pem (+ .key) for {}",
        server_names(&opts.server_names).join(", ")
    );
    outln!(
        "  pki/ocsp-manufacturing.pem, pki/ocsp-operational.pem (+ .key): delegated OCSP signers"
    );
    outln!("  fleetca.toml, fleetca.db");
    outln!(
        "Trust anchor for devices and clients: {}",
        pki.join("root-ca.pem").display()
    );
    if opts.pkcs11.is_some() {
        outln!(
            "The CA keys are in the PKCS#11 token; the root key ('{}') is not needed to serve.",
            ca_key_label("root")
        );
    } else {
        outln!("The root key (pki/root-ca.key) is not needed to serve: move it offline.");
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

struct ServerFiles {
    certificate: PathBuf,
    key: PathBuf,
}

fn write_server_certificate(
    files: &ServerFiles,
    operational: &Issuer,
    organization: &str,
    extra_names: &[String],
    alg: KeyAlgorithm,
    now: OffsetDateTime,
    exclusive: bool,
) -> anyhow::Result<()> {
    let key = alg.generate()?;
    let der = server_certificate(
        operational,
        &key.public_key_der(),
        organization,
        &server_names(extra_names),
        fleetca_pki::HierarchyParams::new(organization).server_validity,
        now,
    )?;
    write_key(&files.key, &key.to_pkcs8_pem(), exclusive)?;
    let chain = format!(
        "{}{}",
        pem_certificate(&der),
        pem_certificate(operational.certificate_der())
    );
    write_atomic(&files.certificate, chain.as_bytes(), 0o644, exclusive)
}

/// The CAs of a data directory, loaded.
pub struct LoadedCas {
    pub root_der: Vec<u8>,
    pub manufacturing: Issuer,
    pub operational: Issuer,
    /// Where the keys came from (and where new OCSP signing keys go).
    pub keys: KeySource,
}

/// An issuer from its certificate file and key setting.
pub fn load_issuer(
    keys: &KeySource,
    name: &str,
    cert: &Path,
    key: &crate::keys::KeyRef,
) -> anyhow::Result<Issuer> {
    let der = read_certificate(cert)?;
    let signer = keys.signer(&format!("CA '{name}'"), key)?;
    Issuer::new(name, der, signer).with_context(|| format!("CA '{name}' ({})", cert.display()))
}

/// Loads the issuing CAs named in the configuration (opening the PKCS#11 token of
/// `[pkcs11]`, if any: a bad module, token, PIN or key label stops here).
pub fn load_cas(config: &Config) -> anyhow::Result<LoadedCas> {
    load_cas_with(config, KeySource::new(config)?)
}

/// Refuses trust anchors (CA certificates, the TLS chain, their directories) that group
/// or others may write.
pub fn check_trust_permissions(config: &Config) -> anyhow::Result<()> {
    for (what, path) in [
        ("root CA certificate", &config.root_certificate),
        (
            "manufacturing CA certificate",
            &config.manufacturing_certificate,
        ),
        (
            "operational CA certificate",
            &config.operational_certificate,
        ),
        (
            "registration CA certificate",
            &config.registration_certificate,
        ),
        ("server certificate", &config.tls_certificate),
    ] {
        if let Some(dir) = path.parent() {
            refuse_writable_by_others(dir, "directory")?;
        }
        refuse_writable_by_others(path, what)?;
    }
    Ok(())
}

fn load_cas_with(config: &Config, keys: KeySource) -> anyhow::Result<LoadedCas> {
    Ok(LoadedCas {
        root_der: read_certificate(&config.root_certificate)?,
        manufacturing: load_issuer(
            &keys,
            "manufacturing",
            &config.manufacturing_certificate,
            &config.manufacturing_key,
        )?,
        operational: load_issuer(
            &keys,
            "operational",
            &config.operational_certificate,
            &config.operational_key,
        )?,
        keys,
    })
}

/// Imported manufacturer CAs: every `*.pem` in the configured directory, named after the
/// file.
pub fn load_manufacturer_cas(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    refuse_writable_by_others(dir, "the manufacturer CA directory")?;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        refuse_writable_by_others(&path, "manufacturer CA certificate")?;
        let der = read_certificate(&path)?;
        let info = CertificateInfo::from_der(&der).with_context(|| path.display().to_string())?;
        if !info.is_ca {
            bail!("{} is not a CA certificate", path.display());
        }
        out.push((name, der));
    }
    Ok(out)
}

/// Reissues the server certificate when it expires within the configured window, or when
/// its key usage does not fit its key (keyEncipherment on an EC key, as versions before
/// 0.1 wrote it: RFC 8813 section 3).
pub fn renew_server_certificate_if_due(
    config: &Config,
    operational: &Issuer,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let chain = read_certificates(&config.tls_certificate)?;
    let leaf = chain.first().context("server certificate file is empty")?;
    let info = CertificateInfo::from_der(leaf)?;
    let misfit = fleetca_pki::key_usage_fits_key(leaf).err();
    if misfit.is_none() && info.not_after - now > config.renew_tls_certificate_before {
        return Ok(());
    }
    let key = SoftwareKey::from_key_file(&read_key(&config.tls_key)?)?;
    let alg = fleetca_pki::Signer::key_algorithm(&key);
    let files = ServerFiles {
        certificate: config.tls_certificate.clone(),
        key: config.tls_key.clone(),
    };
    // New key too: a renewal never reuses the old one.
    write_server_certificate(
        &files,
        operational,
        &config.organization,
        &config.server_names,
        alg,
        now,
        false,
    )?;
    match misfit {
        Some(reason) => {
            tracing::info!(%reason, "server TLS certificate re-issued: its key usage did not fit its key")
        }
        None => tracing::info!(old_not_after = %info.not_after, "server TLS certificate renewed"),
    }
    Ok(())
}

/// Files of a CA's delegated OCSP responder, next to the CA certificate.
pub fn ocsp_responder_files(config: &Config, ca: &str) -> (PathBuf, PathBuf) {
    let dir = config
        .operational_certificate
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    (
        dir.join(format!("ocsp-{ca}.pem")),
        dir.join(format!("ocsp-{ca}.key")),
    )
}

/// Issues (or renews, once two thirds of its lifetime have passed) the delegated OCSP
/// signing certificate of each issuing CA. Each renewal uses a new key.
pub fn ensure_ocsp_responders(
    config: &Config,
    cas: &LoadedCas,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    ensure_ocsp_responders_for(
        config,
        &cas.keys,
        &[&cas.manufacturing, &cas.operational],
        now,
    )
    .map(|_| ())
}

/// [`ensure_ocsp_responders`] for these issuers; returns whether any certificate was issued.
pub fn ensure_ocsp_responders_for(
    config: &Config,
    keys: &KeySource,
    issuers: &[impl std::ops::Deref<Target = Issuer>],
    now: OffsetDateTime,
) -> anyhow::Result<bool> {
    let mut changed = false;
    let validity = config
        .publication
        .as_ref()
        .map_or(time::Duration::days(30), |p| p.ocsp_responder_validity);
    for issuer in issuers {
        let issuer: &Issuer = issuer;
        let (cert_path, key_path) = ocsp_responder_files(config, &issuer.generation_name());
        if cert_path.exists() {
            let der = read_certificate(&cert_path)?;
            let info = CertificateInfo::from_der(&der)?;
            let lifetime = info.not_after - info.not_before;
            if info.not_after - now > lifetime / 3 {
                continue;
            }
        }
        // A new key each time: a file, or a token key whose label the .key file names.
        let key = keys.generate_replaceable(
            &format!("ocsp-{}", issuer.generation_name()),
            issuer.signer().key_algorithm(),
            &key_path,
        )?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(key.as_ref());
        let der = fleetca_pki::ocsp_responder_certificate(issuer, &spki, validity, now)?;
        write_atomic(&cert_path, pem_certificate(&der).as_bytes(), 0o644, false)?;
        tracing::info!(ca = issuer.name(), "OCSP responder certificate issued");
        changed = true;
    }
    Ok(changed)
}

/// Loads a CA's OCSP responder.
pub fn load_ocsp_responder(
    config: &Config,
    keys: &KeySource,
    issuer: &Issuer,
) -> anyhow::Result<fleetca_pki::OcspResponder> {
    let (cert_path, key_path) = ocsp_responder_files(config, &issuer.generation_name());
    let der = read_certificate(&cert_path)?;
    let key = keys.replaceable(&format!("OCSP responder '{}'", issuer.name()), &key_path)?;
    Ok(fleetca_pki::OcspResponder::new(
        issuer.name(),
        issuer.certificate_der(),
        &der,
        key,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocsp_responders_are_renewed_once_two_thirds_of_their_life_passed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        init(
            &data,
            &InitOptions {
                key_algorithm: KeyAlgorithm::P256,
                organization: "T".into(),
                server_names: vec![],
                listen: "127.0.0.1:8443".into(),
                status_listen: "127.0.0.1:8080".into(),
                pkcs11: None,
            },
        )
        .unwrap();
        let config = Config::load(&config_path(&data)).unwrap();
        let cas = load_cas(&config).unwrap();
        let (cert, _) = ocsp_responder_files(&config, "operational");
        let before = std::fs::read(&cert).unwrap();
        let now = OffsetDateTime::now_utc();
        // 30-day certificates: nothing to do after 10 days, renewal after 21.
        assert!(!ensure_ocsp_responders_for(
            &config,
            &cas.keys,
            &[&cas.operational],
            now + time::Duration::days(10)
        )
        .unwrap());
        assert_eq!(std::fs::read(&cert).unwrap(), before);
        assert!(ensure_ocsp_responders_for(
            &config,
            &cas.keys,
            &[&cas.operational],
            now + time::Duration::days(21)
        )
        .unwrap());
        assert_ne!(std::fs::read(&cert).unwrap(), before);
        load_ocsp_responder(&config, &cas.keys, &cas.operational).unwrap();
    }
}
