//! `fleetca ca rollover root`: a new root key and certificate, the two link certificates
//! between the old and the new root (RFC 4210 section 4.4), and the issuing CAs
//! re-certified under the new root as their next generation, all activating together.
//!
//! Devices that trust only the old root learn the new one from `/cacerts`, which carries
//! the new root with its "NewWithOld" link certificate (signed by the old root) from the
//! moment the rollover is recorded (RFC 7030 section 4.1.3); `fleetca-agent` adds a new
//! root only with such a link.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use fleetca_admin::Actor;
use fleetca_ca::active_generation;
use fleetca_pki::{
    link_certificate, pem_certificate, CaCertificate, CaRole, CertificateInfo, HierarchyParams,
    Issuer,
};
use fleetca_store::{CaGeneration, LinkCertificates};
use time::OffsetDateTime;

use crate::admin::{load, runtime};
use crate::ca_cmd::{
    activation_time, all_generations, configured, key_of, key_setting, new_generation_key, rfc3339,
    root_issuer, Made, RolloverRequest, CAS,
};
use crate::files::write_atomic;
use crate::keys::KeySource;

/// `fleetca ca rollover root`.
pub fn rollover_root(data_dir: &Path, request: &RolloverRequest<'_>) -> anyhow::Result<()> {
    let (config, store) = load(data_dir)?;
    let now = OffsetDateTime::now_utc();
    let activate_at = activation_time(request.activate_at, now)?;
    let rt = runtime()?;
    let recorded = rt.block_on(store.ca_generations())?;
    let all = rt.block_on(all_generations(&config, store.as_ref()))?;
    // The root and every issuing CA move together: none of them may have a pending
    // generation.
    if let Some(pending) = all.iter().find(|g| g.activate_at > now) {
        bail!(
            "{} CA generation {} is pending (it activates at {}): a root rollover re-certifies every CA, so wait for it to activate (`fleetca ca list`); nothing was created",
            pending.ca,
            pending.generation,
            rfc3339(pending.activate_at)
        );
    }
    let keys = KeySource::new(&config)?;
    let old_root_generation = active_generation(&all, "root", now)
        .context("no valid root CA generation: nothing was created")?;
    let old_root = root_issuer(&config, &keys, old_root_generation, "root")?;
    let next_root = old_root_generation.generation.saturating_add(1);
    let pki_dir = configured(&config, CaRole::Root)
        .0
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.base_dir.clone());
    let mut params = HierarchyParams::new(&config.organization);
    if let Some(validity) = request.validity {
        params.root_validity = validity.to_time();
    }

    let mut made = Made::default();
    let result = (|| -> anyhow::Result<Vec<CaGeneration>> {
        let algorithm = old_root.signer().key_algorithm();
        let (root_key, root_key_ref) = new_generation_key(
            &keys,
            &key_of(old_root_generation, &config),
            "root",
            next_root,
            &pki_dir,
            algorithm,
            &mut made,
        )?;
        let root_cert = CaCertificate::root_generation(root_key.as_ref(), &params, now, next_root)
            .context("cannot make the new root certificate")?;
        let new_root = Issuer::new("root", root_cert.der.clone(), root_key)
            .context("the new root certificate")?;
        let links = LinkCertificates {
            new_with_old: link_certificate(&old_root, &root_cert.der, now)
                .context("cannot make the NewWithOld link certificate")?,
            old_with_new: link_certificate(&new_root, old_root.certificate_der(), now)
                .context("cannot make the OldWithNew link certificate")?,
        };
        let mut written = Vec::new();
        write_new(
            &pki_dir,
            format!("root-ca-g{next_root}.pem"),
            root_cert.pem(),
            &mut made,
            &mut written,
        )?;
        write_new(
            &pki_dir,
            format!("root-ca-g{next_root}-link.pem"),
            format!(
                "{}{}",
                pem_certificate(&links.new_with_old),
                pem_certificate(&links.old_with_new)
            ),
            &mut made,
            &mut written,
        )?;
        let root_info = CertificateInfo::from_der(&root_cert.der)?;
        let mut generations = Vec::new();
        let mut record = |g: CaGeneration| {
            // Generation 1 of a CA is recorded with its first rollover.
            if g.generation == 2 && !recorded.iter().any(|r| r.ca == g.ca) {
                if let Some(first) = all.iter().find(|a| a.ca == g.ca && a.generation == 1) {
                    generations.push(first.clone());
                }
            }
            generations.push(g);
        };
        record(CaGeneration {
            ca: "root".into(),
            generation: next_root,
            certificate_der: root_cert.der.clone(),
            key: key_setting(&root_key_ref, &config.base_dir),
            not_before: root_info.not_before,
            not_after: root_info.not_after,
            activate_at,
            created_at: now,
            root_generation: None,
            links: Some(links),
        });
        // Each issuing CA: its next generation, with a new key, under the new root.
        for role in CAS.into_iter().filter(|r| *r != CaRole::Root) {
            let ca = role.name();
            let Some(current) = all
                .iter()
                .filter(|g| g.ca == ca)
                .max_by_key(|g| g.generation)
            else {
                continue; // no registration CA in this data directory yet
            };
            let next = current.generation.saturating_add(1);
            let current_key = key_of(current, &config);
            let algorithm = keys
                .signer(
                    &format!("CA '{ca}' generation {}", current.generation),
                    &current_key,
                )?
                .key_algorithm();
            let (key, key_ref) = new_generation_key(
                &keys,
                &current_key,
                ca,
                next,
                &pki_dir,
                algorithm,
                &mut made,
            )?;
            let cert = CaCertificate::issuing_generation(
                &new_root,
                role,
                key.as_ref(),
                &params,
                now,
                next,
            )
            .with_context(|| format!("cannot certify {ca} CA generation {next}"))?;
            write_new(
                &pki_dir,
                format!("{ca}-ca-g{next}.pem"),
                cert.pem(),
                &mut made,
                &mut written,
            )?;
            let info = CertificateInfo::from_der(&cert.der)?;
            record(CaGeneration {
                ca: ca.to_string(),
                generation: next,
                certificate_der: cert.der,
                key: key_setting(&key_ref, &config.base_dir),
                not_before: info.not_before,
                not_after: info.not_after,
                activate_at,
                created_at: now,
                root_generation: Some(next_root),
                links: None,
            });
        }
        rt.block_on(fleetca_admin::record_ca_rollover(
            store.as_ref(),
            &Actor::cli(),
            generations.clone(),
            request.comment,
        ))
        .context("cannot record the new generations")?;
        for path in &written {
            eprintln!("fleetca: wrote {}", path.display());
        }
        Ok(generations)
    })();
    let generations = match result {
        Ok(g) => g,
        Err(e) => {
            made.undo();
            return Err(e.context("nothing was created"));
        }
    };
    for g in generations.iter().filter(|g| g.created_at == now) {
        eprintln!(
            "fleetca: {} CA generation {} created (key {}), valid until {}",
            g.ca,
            g.generation,
            g.key,
            rfc3339(g.not_after)
        );
    }
    eprintln!(
        "fleetca: from {} on the new generations issue; until then, and from now on, /cacerts carries the new root and its link certificates so devices learn it",
        rfc3339(activate_at)
    );
    eprintln!(
        "fleetca: the old root key ({}) signed the link certificate and is not needed any more: move it offline again (the new root key too)",
        old_root_generation.key
    );
    Ok(())
}

/// Writes a new file (never over an existing one) and notes it for clean-up.
fn write_new(
    dir: &Path,
    name: String,
    pem: String,
    made: &mut Made<'_>,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let path = dir.join(name);
    write_atomic(&path, pem.as_bytes(), 0o644, true)?;
    made.files.push(path.clone());
    written.push(path);
    Ok(())
}
