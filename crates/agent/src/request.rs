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
