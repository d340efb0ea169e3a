//! `fleetca backup` and `fleetca restore`: a snapshot of a data directory (the SQLite
//! inventory through SQLite's online backup API, `pki/`, `fleetca.toml`, `conf.d/`) as one tar
//! archive, and its restoration into a new directory after checking it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use fleetca_store::{AuditLog, Database};

use crate::config::Config;
use crate::keys::{KeyRef, KeySource};
use crate::pki_setup::{config_path, load_issuer};

const CONFIG: &str = "fleetca.toml";
const PKI: &str = "pki";

/// The SQLite file's place inside the data directory (the archive keeps that name).
fn database_name(config: &Config, data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    match &config.database {
        Database::Sqlite(path) => {
            let relative = path.strip_prefix(data_dir).map_err(|_| {
                anyhow::anyhow!(
                    "the database {} is outside the data directory {}; copy it with SQLite's own tools",
                    path.display(),
                    data_dir.display()
                )
            })?;
            Ok(Some(relative.to_path_buf()))
        }
        Database::Postgres(_) => Ok(None),
        #[allow(unreachable_patterns)]
        _ => bail!("this database kind cannot be backed up by fleetca"),
    }
}

/// `fleetca backup --out FILE`: safe while the server runs and writes.
pub fn backup(data_dir: &Path, out: &Path) -> anyhow::Result<()> {
    let config_file = config_path(data_dir);
    if !config_file.exists() {
        bail!(
            "{} does not exist: {} is not a fleetca data directory",
            config_file.display(),
            data_dir.display()
        );
    }
    let config = Config::load(&config_file)?;
    let database = database_name(&config, data_dir)?;
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".fleetca-backup-")
        .tempdir_in(&out_dir)
        .with_context(|| format!("cannot write in {}", out_dir.display()))?;
    let partial = staging.path().join("archive.tar");
    // The archive holds the CA keys: owner-only from its first byte.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut tar = tar::Builder::new(file);
    tar.follow_symlinks(false);
    tar.append_path_with_name(&config_file, CONFIG)
        .with_context(|| format!("cannot archive {}", config_file.display()))?;
    let pki = data_dir.join(PKI);
    if pki.is_dir() {
        tar.append_dir_all(PKI, &pki)
            .with_context(|| format!("cannot archive {}", pki.display()))?;
    }
    // The configuration fragments are part of the configuration: rules lost in a restore
    // would let devices through that the running server refuses.
    let fragments = data_dir.join(crate::config_fragments::DIR);
    if fragments.is_dir() {
        tar.append_dir_all(crate::config_fragments::DIR, &fragments)
            .with_context(|| format!("cannot archive {}", fragments.display()))?;
    }
    match &database {
        Some(name) => {
            let snapshot = staging.path().join("snapshot.db");
            let source = data_dir.join(name);
            fleetca_store::sqlite_snapshot(&source, &snapshot)
                .context("cannot snapshot the inventory")?;
            // The copy keeps the original's permissions.
            std::fs::set_permissions(&snapshot, std::fs::metadata(&source)?.permissions())?;
            tar.append_path_with_name(&snapshot, name)?;
        }
        None => eprintln!(
            "fleetca: the inventory is in PostgreSQL: this archive has pki/ and fleetca.toml only; back the database up with PostgreSQL's tools (pg_dump -Fc), at the same time"
        ),
    }
    let mut file = tar.into_inner()?;
    file.flush()?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, out).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "fleetca: backup of {} written to {} (mode 0600: it holds the CA keys){}",
        data_dir.display(),
        out.display(),
        if database.is_some() {
            ", with a consistent snapshot of the inventory"
        } else {
            ""
        }
    );
    Ok(())
}

/// `fleetca restore FILE --data-dir NEW`: unpacks into a staging directory beside NEW,
/// checks the CA keys against their certificates and the audit chain, then moves it to
/// NEW, which must not exist or be empty.
pub fn restore(archive: &Path, data_dir: &Path) -> anyhow::Result<()> {
    if data_dir.exists() {
        let mut entries = std::fs::read_dir(data_dir)
            .with_context(|| format!("cannot read {}", data_dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: restore into a new (or empty) directory, then point the server at it",
                data_dir.display()
            );
        }
    }
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".fleetca-restore-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let report = match unpack(archive, staging.path()).and_then(|()| check(staging.path())) {
        Ok(report) => report,
        Err(e) => {
            // Nothing of a refused snapshot stays behind; say so if it cannot be removed.
            let path = staging.path().to_path_buf();
            if let Err(rm) = staging.close() {
                eprintln!(
                    "fleetca: warning: cannot remove the staging directory {}: {rm}",
                    path.display()
                );
            }
            return Err(e);
        }
    };
    if data_dir.exists() {
        std::fs::remove_dir(data_dir)?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, data_dir)
        .with_context(|| format!("cannot move the restored files to {}", data_dir.display()))?;
    eprintln!(
        "fleetca: restored {} into {}: {report}",
        archive.display(),
        data_dir.display()
    );
    Ok(())
}

/// Unpacks the archive into `staging`, refusing any entry a fleetca backup does not hold
/// (links, devices, absolute or `..` paths, unknown files).
fn unpack(archive: &Path, staging: &Path) -> anyhow::Result<()> {
    let file = File::open(archive).with_context(|| format!("cannot read {}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    for entry in tar
        .entries()
        .with_context(|| format!("{} is not a fleetca backup (tar)", archive.display()))?
    {
        let mut entry = entry.with_context(|| format!("{} is damaged", archive.display()))?;
        let raw = entry.path()?.into_owned();
        let kind = entry.header().entry_type();
        // `./pki/...` (an archive repacked with tar) names `pki/...`.
        let plain = raw
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        let path: PathBuf = raw
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        if plain && kind.is_dir() && path.as_os_str().is_empty() {
            continue;
        }
        let known = path == Path::new(CONFIG)
            || path.starts_with(PKI)
            || path.starts_with(crate::config_fragments::DIR)
            || path.extension().is_some_and(|e| e == "db");
        if !(kind.is_file() || kind.is_dir()) || !plain || !known {
            bail!(
                "{} is not a fleetca backup: unexpected entry {} ({kind:?})",
                archive.display(),
                path.display()
            );
        }
        entry
            .unpack_in(staging)
            .with_context(|| format!("cannot unpack {}", path.display()))?;
    }
    Ok(())
}

/// Checks an unpacked snapshot: its configuration loads, each CA key that is present
/// belongs to its certificate, and the inventory's audit chain verifies.
fn check(dir: &Path) -> anyhow::Result<String> {
    let config_file = dir.join(CONFIG);
    if !config_file.exists() {
        bail!("not a fleetca backup: it has no {CONFIG}");
    }
    let config = Config::load(&config_file).context("the archived configuration")?;
    let keys = KeySource::new(&config).context("the archived configuration's keys")?;
    let mut checked = Vec::new();
    for (name, cert, key) in [
        (
            "manufacturing",
            &config.manufacturing_certificate,
            &config.manufacturing_key,
        ),
        (
            "operational",
            &config.operational_certificate,
            &config.operational_key,
        ),
        (
            "registration",
            &config.registration_certificate,
            &config.registration_key,
        ),
        ("root", &config.root_certificate, &config.root_key),
    ] {
        let required = matches!(name, "manufacturing" | "operational");
        let present = match key {
            KeyRef::File(path) => path.exists() && cert.exists(),
            KeyRef::Pkcs11 { .. } => cert.exists(),
        };
        if !present {
            if required {
                bail!("the backup lacks the {name} CA certificate or key");
            }
            continue;
        }
        load_issuer(&keys, name, cert, key)
            .with_context(|| format!("the {name} CA in the backup"))?;
        checked.push(name);
    }
    let inventory = match &config.database {
        Database::Sqlite(path) => {
            if !path.exists() {
                bail!("the backup lacks its inventory database {}", path.display());
            }
            let store = fleetca_store::SqliteStore::open(path).context("the archived inventory")?;
            let runtime = crate::admin::runtime()?;
            match runtime.block_on(store.verify_audit_chain())? {
                Ok(n) => format!("audit chain intact ({n} event(s))"),
                Err(id) => bail!(
                    "the audit chain in the backup is broken at event {id}: it was altered; not restored"
                ),
            }
        }
        Database::Postgres(_) => {
            "the inventory is in PostgreSQL: restore it with pg_restore".to_string()
        }
        #[allow(unreachable_patterns)]
        _ => String::new(),
    };
    Ok(format!(
        "CA keys match their certificates ({}), {inventory}",
        checked.join(", ")
    ))
}
