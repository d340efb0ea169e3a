//! Building an enrollment request (new key, CSR) and checking what came back: shared by the
//! agent and the fleet simulator.

use fleetca_pki::{rcgen, CertificateInfo, KeyAlgorithm, SoftwareKey};

use crate::machine::{Operation, Validity};
use crate::AgentError;

/// A new key and the DER CSR it signed.
pub struct NewRequest {
    /// The new key. Secret: it is written only to the 0600 key file.
    pub key: SoftwareKey,
    /// The DER PKCS#10 request.
    pub csr_der: Vec<u8>,
}

impl std::fmt::Debug for NewRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRequest").finish_non_exhaustive()
    }
}

/// A new key of `algorithm` and its CSR. `simpleenroll` names only the device serial (the
/// server's profile decides the rest); `simplereenroll` repeats the current certificate's
/// subject and subjectAltName exactly (RFC 7030 §4.2.2).
pub fn new_request(
    algorithm: KeyAlgorithm,
    operation: Operation,
    birth: &CertificateInfo,
    current: Option<&CertificateInfo>,
) -> Result<NewRequest, AgentError> {
    let key = algorithm.generate()?;
    let mut subject = rcgen::DistinguishedName::new();
    let mut sans = Vec::new();
    match (operation, current) {
        (Operation::Reenroll, Some(current)) => {
            for attr in &current.subject {
                let arcs = attr
                    .oid
                    .split('.')
                    .map(str::parse::<u64>)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        AgentError::Identity(format!("subject attribute OID '{}'", attr.oid))
                    })?;
                subject.push(rcgen::DnType::from_oid(&arcs), attr.value.as_str());
            }
            for name in &current.subject_alt_names {
                sans.push(san(name)?);
            }
        }
        _ => {
            let serial = birth.device_serial().ok_or_else(|| {
                AgentError::Identity(format!(
                    "the birth certificate ({}) has no serialNumber attribute",
                    birth.subject_display()
                ))
            })?;
            subject.push(rcgen::DnType::from_oid(&[2, 5, 4, 5]), serial);
        }
    }
    let csr_der = key.certificate_request(subject, sans, &[])?;
    Ok(NewRequest { key, csr_der })
}

fn san(rendered: &str) -> Result<rcgen::SanType, AgentError> {
    let bad = || AgentError::Identity(format!("cannot repeat subjectAltName {rendered}"));
    let (kind, value) = rendered.split_once(':').ok_or_else(bad)?;
    Ok(match kind {
        "DNS" => rcgen::SanType::DnsName(value.try_into().map_err(|_| bad())?),
        "URI" => rcgen::SanType::URI(value.try_into().map_err(|_| bad())?),
        "email" => rcgen::SanType::Rfc822Name(value.try_into().map_err(|_| bad())?),
        "IP" => rcgen::SanType::IpAddress(value.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    })
}

/// The issued certificate among `certificates`: the one for `key`, carrying `serial` as
/// its device serial, currently valid. Returns it first, followed by the other
/// certificates of the response.
pub fn accept_issued(
    certificates: Vec<Vec<u8>>,
    key: &SoftwareKey,
    serial: &str,
) -> Result<(CertificateInfo, Vec<Vec<u8>>), AgentError> {
    let spki = key.public_key_der();
    let mut found = None;
    let mut others = Vec::new();
    for der in certificates {
        match CertificateInfo::from_der(&der) {
            Ok(info) if found.is_none() && info.spki_der == spki => found = Some((info, der)),
            _ => others.push(der),
        }
    }
    let (info, der) = found.ok_or_else(|| {
        AgentError::Protocol("the response holds no certificate for the new key".into())
    })?;
    if info.device_serial() != Some(serial) {
        return Err(AgentError::Protocol(format!(
            "the issued certificate names {}, not device {serial}",
            info.subject_display()
        )));
    }
    let mut chain = vec![der];
    chain.extend(others);
    Ok((info, chain))
}

/// The validity of a parsed certificate.
pub fn validity(info: &CertificateInfo) -> Validity {
    Validity {
        not_before: info.not_before,
        not_after: info.not_after,
    }
}

/// The PEM of a chain.
pub fn chain_pem(chain: &[Vec<u8>]) -> String {
    chain
        .iter()
        .map(|d| fleetca_pki::pem_certificate(d))
        .collect()
}

/// A request the server answered with `202 Accepted`, kept on disk (mode 0600: it holds the
/// new key) so that a restarted agent, or the next `once` from cron, polls with the same
/// request as RFC 7030 section 4.2.3 asks, instead of opening a new one with a new key.
pub(crate) mod pending {
    use std::path::{Path, PathBuf};

    use base64::Engine;
    use fleetca_pki::SoftwareKey;

    use super::NewRequest;
    use crate::machine::Operation;
    use crate::AgentError;

    const HEADER: &str = "fleetca-agent pending request v1";

    /// Where the pending request of the key at `key` is kept.
    pub(crate) fn path(key: &Path) -> PathBuf {
        let mut name = key.as_os_str().to_owned();
        name.push(".pending");
        PathBuf::from(name)
    }

    pub(crate) fn save(
        path: &Path,
        operation: Operation,
        request: &NewRequest,
    ) -> Result<(), AgentError> {
        let text = format!(
            "{HEADER}\noperation {}\ncsr {}\n{}",
            operation.path(),
            base64::engine::general_purpose::STANDARD.encode(&request.csr_der),
            request.key.to_pkcs8_pem()
        );
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
        }
        crate::identity::write_atomically(path, text.as_bytes(), 0o600)
    }

    /// The saved request, if there is a readable one. An unreadable file is reported and
    /// ignored: the agent then makes a new request.
    pub(crate) fn load(path: &Path) -> Result<Option<(Operation, NewRequest)>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let bad = |what: &str| format!("{}: {what}", path.display());
        let mut lines = text.splitn(4, '\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("not a pending request file"));
        }
        let operation = match lines.next().and_then(|l| l.strip_prefix("operation ")) {
            Some("simpleenroll") => Operation::Enroll,
            Some("simplereenroll") => Operation::Reenroll,
            _ => return Err(bad("unknown operation")),
        };
        let csr_der = lines
            .next()
            .and_then(|l| l.strip_prefix("csr "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or_else(|| bad("unreadable CSR"))?;
        let key = SoftwareKey::from_pkcs8_pem(lines.next().unwrap_or_default())
            .map_err(|e| bad(&format!("unreadable key: {e}")))?;
        Ok(Some((operation, NewRequest { key, csr_der })))
    }

    pub(crate) fn remove(path: &Path) -> Result<(), AgentError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AgentError::io(path, e)),
        }
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used, clippy::indexing_slicing)]
    mod tests {
        use super::*;
        use fleetca_pki::KeyAlgorithm;

        #[test]
        fn a_saved_request_reads_back_and_garbage_is_refused() {
            let dir = tempfile::tempdir().unwrap();
            let file = path(&dir.path().join("state/device.key"));
            assert!(load(&file).unwrap().is_none(), "no file, no request");

            let key = KeyAlgorithm::P256.generate().unwrap();
            let request = NewRequest {
                csr_der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
                key,
            };
            save(&file, Operation::Reenroll, &request).unwrap();
            let (op, back) = load(&file).unwrap().unwrap();
            assert_eq!(op, Operation::Reenroll);
            assert_eq!(back.csr_der, request.csr_der);
            assert_eq!(back.key.to_pkcs8_pem(), request.key.to_pkcs8_pem());

            let text = std::fs::read_to_string(&file).unwrap();
            for (garbage, why) in [
                ("hello".to_string(), "not a pending request file"),
                (
                    text.replace("simplereenroll", "fullcmc"),
                    "unknown operation",
                ),
                (text.replace("csr ", "csr !!"), "unreadable CSR"),
                (
                    text.replace("-----BEGIN PRIVATE KEY-----", "-----BEGIN NOTHING-----"),
                    "unreadable key",
                ),
            ] {
                std::fs::write(&file, garbage).unwrap();
                let err = load(&file).unwrap_err();
                assert!(err.contains(why), "{why}: {err}");
            }
            remove(&file).unwrap();
            remove(&file).unwrap();
            assert!(load(&file).unwrap().is_none());
        }
    }
}
