//! Files of the data directory: PEM certificates, PKCS#8 keys (mode 0600), written
//! atomically (temporary file, fsync, rename) so a crash never leaves half a file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Writes `contents` to `path` atomically with `mode`. With `exclusive`, refuses to replace
/// an existing file.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    exclusive: bool,
) -> anyhow::Result<()> {
    if exclusive && path.exists() {
        bail!(
            "{} already exists; refusing to overwrite it",
            path.display()
        );
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes a private key (PKCS#8 PEM), readable by the owner only.
pub fn write_key(path: &Path, pem: &str, exclusive: bool) -> anyhow::Result<()> {
    write_atomic(path, pem.as_bytes(), 0o600, exclusive)
}

/// Reads every certificate of a PEM file, in order.
pub fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("{} contains no certificate", path.display());
    }
    Ok(certs)
}

/// Reads the first certificate of a PEM file as DER.
pub fn read_certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut certs = read_certificates(path)?;
    Ok(certs.swap_remove(0).to_vec())
}

/// Reads a private key file, refusing keys that others can read.
pub fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read key {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "key {} is readable by group or others (mode {:o}); run: chmod 600 {}",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read key {}", path.display()))
}

/// Refuses a trust anchor file or directory (CA certificates, `pki/manufacturers/`, the
/// configuration) that group or others may write: whoever can write there can make
/// fleetca trust their CA or change its policy.
pub fn refuse_writable_by_others(path: &Path, what: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        bail!(
            "{what} {} is writable by group or others (mode {:o}); whoever can write it decides what fleetca trusts. Run: chmod go-w {}",
            path.display(),
            mode,
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_private_and_exclusive_writes_do_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_key(&path, "secret", true).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(write_key(&path, "other", true).is_err());
        assert_eq!(read_key(&path).unwrap(), b"secret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn trust_files_writable_by_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        refuse_writable_by_others(&path, "CA certificate").unwrap();
        for mode in [0o664, 0o646, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = refuse_writable_by_others(&path, "CA certificate")
                .unwrap_err()
                .to_string();
            assert!(err.contains("chmod go-w"), "{err}");
        }
    }

    #[test]
    fn a_non_pem_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, "nothing here").unwrap();
        assert!(read_certificates(&path).is_err());
    }
}
