//! The device identity on disk: a private key and its certificate, replaced atomically.
//!
//! Installing a new pair ([`IdentityStore::install`]):
//!
//! 1. `KEY.new` is written through `KEY.new.tmp` (mode 0600, fsync, rename);
//! 2. `CERT.new` likewise (mode 0644); the directories are fsynced;
//! 3. the current pair is kept as `KEY.prev` / `CERT.prev` (hard links, or copies where the
//!    file system has none, each through a `.tmp` and a rename);
//! 4. `KEY.new` is renamed over `KEY`;
//! 5. `CERT.new` is renamed over `CERT`; the directories are fsynced.
//!
//! A crash can stop this between any two steps. [`IdentityStore::repair`], run at every
//! start, finishes or undoes the swap: a complete `.new` pair is rolled forward; a key
//! already swapped gets its certificate; half-written files are removed; and if the active
//! key still does not match the active certificate (a crash outside the agent, a restore
//! from backup, a person), the `.prev` pair is restored or, without one, the active files
//! are moved aside as `.broken` so that the agent enrolls again with its birth certificate.
//! A key that does not match its certificate is never left active.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fleetca_pki::{CertificateInfo, SoftwareKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::AgentError;

/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate files.
const CERT_MODE: u32 = 0o644;

/// A key and the certificate that goes with it, as loaded from disk.
pub struct Identity {
    /// The private key, PKCS#8 PEM. Secret.
    pub key_pem: String,
    /// The certificate chain, DER, the device's certificate first.
    pub chain: Vec<Vec<u8>>,
    /// The device's certificate, parsed.
    pub info: CertificateInfo,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.info.subject_display())
            .field("serial", &self.info.serial)
            .field("not_after", &self.info.not_after)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Parses a key and a PEM certificate file and checks that they belong together.
    pub fn from_pem(key_pem: &str, cert_pem: &[u8]) -> Result<Self, String> {
        Self::from_files(key_pem.as_bytes(), cert_pem)
    }

    /// Parses a key file as factories write them (PKCS#8, SEC1 or PKCS#1; PEM or DER, see
    /// [`fleetca_pki::KEY_FORMATS`]) and a PEM certificate file, and checks that they
    /// belong together. The key is kept as PKCS#8 in memory; the file is not rewritten.
    pub fn from_files(key_file: &[u8], cert_pem: &[u8]) -> Result<Self, String> {
        let chain: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(cert_pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("certificate file is not PEM: {e}"))?;
        let first = chain
            .first()
            .ok_or("certificate file holds no certificate")?;
        let info = CertificateInfo::from_der(first).map_err(|e| e.to_string())?;
        let key = SoftwareKey::from_key_file(key_file).map_err(|e| e.to_string())?;
        if key.public_key_der() != info.spki_der {
            return Err("the private key does not match the certificate".into());
        }
        Ok(Self {
            key_pem: key.to_pkcs8_pem(),
            chain,
            info,
        })
    }

    /// Loads a key file and a certificate file. `Ok(None)` when either file is missing.
    pub fn load(key: &Path, cert: &Path) -> Result<Option<Self>, AgentError> {
        let (Some(key_file), Some(cert_pem)) = (read_optional(key)?, read_optional(cert)?) else {
            return Ok(None);
        };
        Self::from_files(&key_file, &cert_pem)
            .map(Some)
            .map_err(|e| {
                AgentError::Identity(format!("{} / {}: {e}", key.display(), cert.display()))
            })
    }
}

/// The steps of a swap, for tests that stop it half-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapStep {
    /// `KEY.new` is durable.
    KeyStaged,
    /// `CERT.new` is durable.
    CertStaged,
    /// The current pair is kept as `.prev`.
    PreviousKept,
    /// `KEY` is the new key; `CERT` is still the old certificate.
    KeySwapped,
}

impl SwapStep {
    /// Every step, in order.
    pub const ALL: [Self; 4] = [
        Self::KeyStaged,
        Self::CertStaged,
        Self::PreviousKept,
        Self::KeySwapped,
    ];
}

/// What [`IdentityStore::repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Nothing to do.
    Clean,
    /// Removed leftovers of a swap that had not staged a complete pair.
    DiscardedIncomplete,
    /// Completed an interrupted swap.
    RolledForward,
    /// The active pair did not match; the previous pair was restored.
    RestoredPrevious,
    /// The active pair did not match and no previous pair did: moved aside as `.broken`.
    MovedAside,
}

/// The operational key and certificate files, with their `.new`, `.prev` and `.tmp`
/// siblings.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    key: PathBuf,
    cert: PathBuf,
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, AgentError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::io(path, e)),
    }
}

fn remove_if_present(path: &Path) -> Result<(), AgentError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io(path, e)),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), AgentError> {
    fs::rename(from, to).map_err(|e| AgentError::io(to, e))
}

/// fsyncs the directory holding `path`, so that renames in it are durable.
fn sync_dir(path: &Path) -> Result<(), AgentError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        // Nothing was ever written there (a first start): nothing to make durable.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io(dir, e)),
    }
}

/// Writes `bytes` to `path` through `path.tmp` with `mode`: create, write, fsync, rename.
/// The caller fsyncs the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
    let tmp = sibling(path, ".tmp");
    remove_if_present(&tmp)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| AgentError::io(&tmp, e))?;
    // The umask may have narrowed `mode`; never widened. Set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all())
        .map_err(|e| AgentError::io(&tmp, e))?;
    drop(file);
    rename(&tmp, path)
}

/// Makes `to` a durable copy of `from` (a hard link where possible), atomically.
fn keep_copy(from: &Path, to: &Path, mode: u32) -> Result<(), AgentError> {
    let tmp = sibling(to, ".tmp");
    remove_if_present(&tmp)?;
    if fs::hard_link(from, &tmp).is_ok() {
        return rename(&tmp, to);
    }
    let bytes = fs::read(from).map_err(|e| AgentError::io(from, e))?;
    write_atomically(to, &bytes, mode)
}

impl IdentityStore {
    /// The store for the key file `key` and the certificate file `cert`.
    pub fn new(key: impl Into<PathBuf>, cert: impl Into<PathBuf>) -> Self {
        Self {
            key: key.into(),
            cert: cert.into(),
        }
    }

    /// The key file.
    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The active pair, if both files exist. A pair that does not match is an error (run
    /// [`repair`](Self::repair) first: it never leaves one active).
    pub fn load(&self) -> Result<Option<Identity>, AgentError> {
        Identity::load(&self.key, &self.cert)
    }

    /// The previous pair (`.prev`), if any.
    pub fn load_previous(&self) -> Result<Option<Identity>, AgentError> {
        Identity::load(&sibling(&self.key, ".prev"), &sibling(&self.cert, ".prev"))
    }

    /// Installs a new key and certificate chain (PEM) as the active pair, keeping the
    /// current one as `.prev`.
    pub fn install(&self, key_pem: &str, cert_pem: &str) -> Result<(), AgentError> {
        self.install_with(key_pem, cert_pem, |_| true)
    }

    /// [`install`](Self::install), calling `proceed` after each durable step; when it
    /// returns false the swap stops there, as if the process had been killed.
    pub fn install_with(
        &self,
        key_pem: &str,
        cert_pem: &str,
        mut proceed: impl FnMut(SwapStep) -> bool,
    ) -> Result<(), AgentError> {
        Identity::from_pem(key_pem, cert_pem.as_bytes()).map_err(AgentError::Identity)?;
        for dir in [&self.key, &self.cert] {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
            }
        }
        let (key_new, cert_new) = (sibling(&self.key, ".new"), sibling(&self.cert, ".new"));
        write_atomically(&key_new, key_pem.as_bytes(), KEY_MODE)?;
        self.sync_dirs()?;
        if !proceed(SwapStep::KeyStaged) {
            return Ok(());
        }
        write_atomically(&cert_new, cert_pem.as_bytes(), CERT_MODE)?;
        self.sync_dirs()?;
        if !proceed(SwapStep::CertStaged) {
            return Ok(());
        }
        self.finish_swap_with(&mut proceed)?;
        Ok(())
    }

    fn finish_swap_with(
        &self,
        mut proceed: impl FnMut(SwapStep) -> bool,
    ) -> Result<bool, AgentError> {
        let (key_new, cert_new) = (sibling(&self.key, ".new"), sibling(&self.cert, ".new"));
        if matches!(self.load(), Ok(Some(_))) {
            keep_copy(&self.key, &sibling(&self.key, ".prev"), KEY_MODE)?;
            keep_copy(&self.cert, &sibling(&self.cert, ".prev"), CERT_MODE)?;
            self.sync_dirs()?;
        }
        if !proceed(SwapStep::PreviousKept) {
            return Ok(false);
        }
        rename(&key_new, &self.key)?;
        self.sync_dirs()?;
        if !proceed(SwapStep::KeySwapped) {
            return Ok(false);
        }
        rename(&cert_new, &self.cert)?;
        self.sync_dirs()?;
        Ok(true)
    }

    fn finish_swap(&self) -> Result<(), AgentError> {
        self.finish_swap_with(|_| true).map(|_| ())
    }

    fn sync_dirs(&self) -> Result<(), AgentError> {
        sync_dir(&self.key)?;
        if self.key.parent() != self.cert.parent() {
            sync_dir(&self.cert)?;
        }
        Ok(())
    }

    /// Finishes or undoes an interrupted swap and makes sure the active pair matches.
    pub fn repair(&self) -> Result<Repair, AgentError> {
        for path in [&self.key, &self.cert] {
            for suffix in [".tmp", ".new.tmp", ".prev.tmp"] {
                remove_if_present(&sibling(path, suffix))?;
            }
        }
        let (key_new, cert_new) = (sibling(&self.key, ".new"), sibling(&self.cert, ".new"));
        let mut report = Repair::Clean;
        match (key_new.exists(), cert_new.exists()) {
            (true, true) => {
                if matches!(Identity::load(&key_new, &cert_new), Ok(Some(_))) {
                    self.finish_swap()?;
                    report = Repair::RolledForward;
                } else {
                    remove_if_present(&key_new)?;
                    remove_if_present(&cert_new)?;
                    report = Repair::DiscardedIncomplete;
                }
            }
            (false, true) => {
                // The key was swapped, the certificate not yet.
                if matches!(Identity::load(&self.key, &cert_new), Ok(Some(_))) {
                    rename(&cert_new, &self.cert)?;
                    report = Repair::RolledForward;
                } else {
                    remove_if_present(&cert_new)?;
                    report = Repair::DiscardedIncomplete;
                }
            }
            (true, false) => {
                remove_if_present(&key_new)?;
                report = Repair::DiscardedIncomplete;
            }
            (false, false) => {}
        }
        self.sync_dirs()?;
        let active_missing = !self.key.exists() && !self.cert.exists();
        if active_missing || matches!(self.load(), Ok(Some(_))) {
            self.tighten_key_mode()?;
            return Ok(report);
        }
        // The active pair is unusable: restore the previous one, or move it aside.
        let (key_prev, cert_prev) = (sibling(&self.key, ".prev"), sibling(&self.cert, ".prev"));
        if matches!(Identity::load(&key_prev, &cert_prev), Ok(Some(_))) {
            keep_copy(&key_prev, &self.key, KEY_MODE)?;
            keep_copy(&cert_prev, &self.cert, CERT_MODE)?;
            self.sync_dirs()?;
            self.tighten_key_mode()?;
            return Ok(Repair::RestoredPrevious);
        }
        for path in [&self.key, &self.cert] {
            if path.exists() {
                rename(path, &sibling(path, ".broken"))?;
            }
        }
        self.sync_dirs()?;
        Ok(Repair::MovedAside)
    }

    /// The key file is 0600 whatever created it.
    fn tighten_key_mode(&self) -> Result<(), AgentError> {
        if let Ok(meta) = fs::metadata(&self.key) {
            if meta.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(&self.key, fs::Permissions::from_mode(KEY_MODE))
                    .map_err(|e| AgentError::io(&self.key, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
