//! `fleetca ca rollover` and `fleetca ca list`: the generations of the CAs.
//!
//! Generation 1 of each CA is the one `fleetca init` wrote (the files named in
//! `[ca]`); the store records it together with generation 2 on the first rollover. A
//! rollover makes the key (a file next to the current one, or a key in the token when the
//! current key is there), has the root sign the certificate, writes both under new names
//! and records the generation last: if anything fails, what was made is removed again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use fleetca_admin::Actor;
use fleetca_ca::{active_generation, state_of};
use fleetca_pki::{
    CaCertificate, CaRole, CertificateInfo, HierarchyParams, HumanDuration, Issuer, Signer,
};
use fleetca_store::{CaGeneration, Store};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::admin::{load, runtime};
use crate::config::Config;
use crate::files::{read_certificate, write_atomic, write_key};
use crate::keys::{KeyRef, KeySource, PKCS11_PREFIX};
use crate::output::{Format, Listing};

/// The CAs of a data directory, in listing order.
pub(crate) const CAS: [CaRole; 4] = [
    CaRole::Root,
    CaRole::Registration,
    CaRole::Manufacturing,
    CaRole::Operational,
];

fn role_named(name: &str) -> Option<CaRole> {
    CAS.into_iter().find(|r| r.name() == name)
}

/// The certificate file and key setting `[ca]` names for a CA (its generation 1).
pub(crate) fn configured(config: &Config, role: CaRole) -> (&Path, &KeyRef) {
    match role {
        CaRole::Root => (&config.root_certificate, &config.root_key),
        CaRole::Manufacturing => (&config.manufacturing_certificate, &config.manufacturing_key),
        CaRole::Operational => (&config.operational_certificate, &config.operational_key),
        CaRole::Registration => (&config.registration_certificate, &config.registration_key),
    }
}

/// A key as a configuration setting: `pkcs11:<label>`, or a path, relative to the data
/// directory when it is inside it (so that nodes sharing the database and a copy of the
/// data directory find it).
pub(crate) fn key_setting(key: &KeyRef, base: &Path) -> String {
    match key {
        KeyRef::Pkcs11 { label } => format!("{PKCS11_PREFIX}{label}"),
        KeyRef::File(path) => path
            .strip_prefix(base)
            .unwrap_or(path)
            .display()
            .to_string(),
    }
}

/// A recorded key setting, back as a [`KeyRef`].
pub(crate) fn key_of(generation: &CaGeneration, config: &Config) -> KeyRef {
    KeyRef::parse(Path::new(&generation.key), &config.base_dir)
}

/// Generation 1 of a CA from the files `[ca]` names (not yet recorded in the store).
pub(crate) fn first_generation(
    config: &Config,
    role: CaRole,
) -> anyhow::Result<Option<CaGeneration>> {
    let (cert, key) = configured(config, role);
    if !cert.exists() {
        // The registration CA of a data directory made before it existed.
        return Ok(None);
    }
    let der = read_certificate(cert)?;
    let info = CertificateInfo::from_der(&der).with_context(|| cert.display().to_string())?;
    Ok(Some(CaGeneration {
        ca: role.name().to_string(),
        generation: 1,
        certificate_der: der,
        key: key_setting(key, &config.base_dir),
        not_before: info.not_before,
        not_after: info.not_after,
        activate_at: info.not_before,
        created_at: info.not_before,
        root_generation: (role != CaRole::Root).then_some(1),
        links: None,
    }))
}

/// Every generation of every CA: those recorded, and generation 1 of each CA that has no
/// record yet (no rollover so far).
pub(crate) async fn all_generations(
    config: &Config,
    store: &dyn Store,
) -> anyhow::Result<Vec<CaGeneration>> {
    let recorded = store.ca_generations().await?;
    let mut all = Vec::new();
    for role in CAS {
        let mut mine: Vec<CaGeneration> = recorded
            .iter()
            .filter(|g| g.ca == role.name())
            .cloned()
            .collect();
        if mine.is_empty() {
            mine.extend(first_generation(config, role)?);
        }
        all.extend(mine);
    }
    Ok(all)
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// `fleetca ca list`.
pub fn list(data_dir: &Path, format: Format) -> anyhow::Result<()> {
    let (config, store) = load(data_dir)?;
    let all = runtime()?.block_on(all_generations(&config, store.as_ref()))?;
    let now = OffsetDateTime::now_utc();
    let mut listing = Listing::new(&[
        "ca",
        "generation",
        "state",
        "activate_at",
        "not_before",
        "not_after",
        "subject",
        "key",
    ]);
    for g in &all {
        let subject = CertificateInfo::from_der(&g.certificate_der)
            .map(|i| i.subject_display())
            .unwrap_or_else(|e| format!("(unreadable certificate: {e})"));
        listing.push(vec![
            g.ca.clone().into(),
            g.generation.into(),
            state_of(g, &all, now).as_str().into(),
            rfc3339(g.activate_at).into(),
            rfc3339(g.not_before).into(),
            rfc3339(g.not_after).into(),
            subject.into(),
            g.key.clone().into(),
        ]);
    }
    listing.print(format)
}

/// When the new generation starts issuing: `now` (the default), an RFC 3339 time, or a
/// duration from now (`10m`, `2d`). A time in the past is refused.
pub(crate) fn activation_time(
    given: Option<&str>,
    now: OffsetDateTime,
) -> anyhow::Result<OffsetDateTime> {
    let Some(given) = given.map(str::trim) else {
        return Ok(now);
    };
    if given == "now" {
        return Ok(now);
    }
    let at = match OffsetDateTime::parse(given, &Rfc3339) {
        Ok(at) => at,
        Err(_) => match given.parse::<HumanDuration>() {
            Ok(d) => now + d.to_time(),
            Err(_) => bail!(
                "--activate-at '{given}' is neither an RFC 3339 time (2030-01-31T12:00:00Z) nor a duration from now (10m, 2d), nor 'now'; nothing was created"
            ),
        },
    };
    // Whole seconds, as listed.
    let at = at.replace_nanosecond(0).unwrap_or(at);
    if at < now.replace_nanosecond(0).unwrap_or(now) {
        bail!(
            "--activate-at {} is in the past (it is {} now): give a future time, or leave --activate-at out to activate the new generation at once; nothing was created",
            rfc3339(at),
            rfc3339(now)
        );
    }
    Ok(at)
}

/// What a rollover made before it was recorded; removed again if the rollover fails.
#[derive(Default)]
pub(crate) struct Made<'a> {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) token_keys: Vec<(&'a fleetca_hsm::Token, String)>,
}

impl Made<'_> {
    pub(crate) fn undo(self) {
        for file in self.files {
            if let Err(e) = std::fs::remove_file(&file) {
                eprintln!("fleetca: could not remove {}: {e}", file.display());
            }
        }
        for (token, label) in self.token_keys {
            if let Err(e) = fleetca_hsm::Pkcs11Key::destroy(token, &label) {
                eprintln!("fleetca: could not remove the token key '{label}': {e}");
            }
        }
    }
}

/// The key of generation `next` of `ca`, where `current` (the current generation's key)
/// is: in the token (label `<ca>-ca-g<next>`), or a file `<ca>-ca-g<next>.key` in `dir`.
pub(crate) fn new_generation_key<'a>(
    keys: &'a KeySource,
    current: &KeyRef,
    ca: &str,
    next: u32,
    dir: &Path,
    algorithm: fleetca_pki::KeyAlgorithm,
    made: &mut Made<'a>,
) -> anyhow::Result<(Arc<dyn Signer>, KeyRef)> {
    Ok(match current {
        KeyRef::Pkcs11 { .. } => {
            let token = keys
                .token()
                .context("the current key is in a PKCS#11 token, but [pkcs11] is not configured")?;
            let label = format!("{}-g{next}", crate::keys::ca_key_label(ca));
            let key = fleetca_hsm::Pkcs11Key::generate(token, &label, algorithm)
                .with_context(|| format!("cannot create the key of {ca} CA generation {next}"))?;
            made.token_keys.push((token, label.clone()));
            (Arc::new(key), KeyRef::Pkcs11 { label })
        }
        KeyRef::File(_) => {
            let path = dir.join(format!("{ca}-ca-g{next}.key"));
            let key = algorithm.generate()?;
            write_key(&path, &key.to_pkcs8_pem(), true)?;
            made.files.push(path.clone());
            (Arc::new(key), KeyRef::File(path))
        }
    })
}

/// What `fleetca ca rollover` is asked to do.
pub struct RolloverRequest<'a> {
    pub ca: &'a str,
    pub activate_at: Option<&'a str>,
    pub validity: Option<HumanDuration>,
    pub comment: Option<&'a str>,
}

/// `fleetca ca rollover <ca>`.
pub fn rollover(data_dir: &Path, request: &RolloverRequest<'_>) -> anyhow::Result<()> {
    let (config, store) = load(data_dir)?;
    let ca = request.ca;
    let role = match role_named(ca) {
        Some(CaRole::Root) => return crate::ca_root_rollover::rollover_root(data_dir, request),
        Some(role) => role,
        None => bail!(
            "unknown CA '{ca}': the CAs that can be rolled over are operational, manufacturing, registration and root (`fleetca ca list` shows them); nothing was created"
        ),
    };
    let now = OffsetDateTime::now_utc();
    let activate_at = activation_time(request.activate_at, now)?;
    let rt = runtime()?;
    let recorded = rt.block_on(store.ca_generations())?;
    let all = rt.block_on(all_generations(&config, store.as_ref()))?;
    let mine: Vec<&CaGeneration> = all.iter().filter(|g| g.ca == ca).collect();
    let Some(current) = mine.iter().max_by_key(|g| g.generation).copied() else {
        bail!(
            "the {ca} CA has no certificate in this data directory ({} does not exist); nothing was created",
            configured(&config, role).0.display()
        );
    };
    if let Some(pending) = mine.iter().find(|g| g.activate_at > now) {
        bail!(
            "{ca} CA generation {} is pending (it activates at {}): one rollover at a time; wait for it to activate (`fleetca ca list`); nothing was created",
            pending.generation,
            rfc3339(pending.activate_at)
        );
    }
    let next = current.generation.saturating_add(1);

    // The root signs the new certificate: its key is needed for this step only.
    let keys = KeySource::new(&config)?;
    let root_generation = active_generation(&all, "root", now)
        .context("no valid root CA generation: a new CA certificate cannot be signed")?;
    let root = root_issuer(&config, &keys, root_generation, ca)?;

    // The new key where the current one is: the token, or a file next to the current
    // generation's certificate.
    let current_key = key_of(current, &config);
    let algorithm = keys
        .signer(
            &format!("CA '{ca}' generation {}", current.generation),
            &current_key,
        )?
        .key_algorithm();
    let dir = configured(&config, role)
        .0
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.base_dir.clone());
    let cert_path = dir.join(format!("{ca}-ca-g{next}.pem"));
    let mut made = Made::default();
    let result = (|| -> anyhow::Result<(CaGeneration, String)> {
        let (key, key_ref) =
            new_generation_key(&keys, &current_key, ca, next, &dir, algorithm, &mut made)?;
        let mut params = HierarchyParams::new(&config.organization);
        if let Some(validity) = request.validity {
            params.issuing_validity = validity.to_time();
        }
        let cert = CaCertificate::issuing_generation(&root, role, key.as_ref(), &params, now, next)
            .with_context(|| format!("cannot certify {ca} CA generation {next}"))?;
        let info = CertificateInfo::from_der(&cert.der)?;
        if activate_at >= info.not_after {
            bail!(
                "--activate-at {} is after the new certificate's end of validity ({})",
                rfc3339(activate_at),
                rfc3339(info.not_after)
            );
        }
        write_atomic(&cert_path, cert.pem().as_bytes(), 0o644, true)?;
        made.files.push(cert_path.clone());
        let generation = CaGeneration {
            ca: ca.to_string(),
            generation: next,
            certificate_der: cert.der,
            key: key_setting(&key_ref, &config.base_dir),
            not_before: info.not_before,
            not_after: info.not_after,
            activate_at,
            created_at: now,
            root_generation: Some(root_generation.generation),
            links: None,
        };
        // Generation 1 is recorded with the first rollover.
        let mut generations: Vec<CaGeneration> = Vec::new();
        if !recorded.iter().any(|g| g.ca == ca) {
            generations.push(current.clone());
        }
        generations.push(generation.clone());
        rt.block_on(fleetca_admin::record_ca_rollover(
            store.as_ref(),
            &Actor::cli(),
            generations,
            request.comment,
        ))
        .context("cannot record the new generation")?;
        Ok((generation, info.subject_display()))
    })();
    let (generation, subject) = match result {
        Ok(done) => done,
        Err(e) => {
            made.undo();
            return Err(e.context("nothing was created"));
        }
    };
    eprintln!(
        "fleetca: {ca} CA generation {next} created: {} ({subject}), key {}, valid until {}",
        cert_path.display(),
        generation.key,
        rfc3339(generation.not_after)
    );
    eprintln!(
        "fleetca: it issues from {} on; until then generation {} does",
        rfc3339(activate_at),
        current.generation
    );
    eprintln!(
        "fleetca: the root key ({}) signed its certificate and is not needed any more: move it offline again",
        root_generation.key
    );
    Ok(())
}

/// The root generation that signs, with its key: the one place a rollover needs the
/// root key, so its absence is explained rather than reported as a missing file.
pub(crate) fn root_issuer(
    config: &Config,
    keys: &KeySource,
    root: &CaGeneration,
    ca: &str,
) -> anyhow::Result<Issuer> {
    let key = key_of(root, config);
    let missing = match &key {
        KeyRef::File(path) => !path.exists(),
        KeyRef::Pkcs11 { label } => match keys.token() {
            Some(token) => !fleetca_hsm::Pkcs11Key::exists(token, label)?,
            None => true,
        },
    };
    if missing {
        bail!(
            "rolling over the {ca} CA needs the root CA key (root generation {}) to sign the new CA certificate, for this step only: {} is not available. Bring the root key back from offline storage (or name it with root_key in [ca]), run the rollover, then move it offline again; nothing was created",
            root.generation,
            key
        );
    }
    let signer = keys.signer("root CA", &key)?;
    Issuer::new("root", root.certificate_der.clone(), signer)
        .context("the root CA certificate and key do not belong together")
}

/// The generation of `ca` that issues now, with its key: what the CLI's own issuance
/// (`device birth`, `factory add-station`) signs with, as the server does.
pub(crate) fn issuing_issuer(
    config: &Config,
    keys: &KeySource,
    store: &dyn Store,
    ca: &str,
) -> anyhow::Result<Issuer> {
    runtime()?.block_on(issuing_issuer_now(config, keys, store, ca))
}

/// [`issuing_issuer`] inside a runtime.
pub(crate) async fn issuing_issuer_now(
    config: &Config,
    keys: &KeySource,
    store: &dyn Store,
    ca: &str,
) -> anyhow::Result<Issuer> {
    let all = all_generations(config, store).await?;
    let g = active_generation(&all, ca, OffsetDateTime::now_utc()).with_context(|| {
        format!("the {ca} CA has no valid generation now (`fleetca ca list` shows them)")
    })?;
    let what = format!("CA '{ca}' generation {}", g.generation);
    let signer = keys.signer(&what, &key_of(g, config))?;
    Ok(Issuer::new(ca, g.certificate_der.clone(), signer)
        .with_context(|| what.clone())?
        .with_generation(g.generation))
}
