//! Trust anchors: the fleet root the agent verifies the server with, its bootstrap from
//! `/cacerts` pinned by a SHA-256 fingerprint, and CA roll-over.
//!
//! Roll-over: when `/cacerts` (fetched over TLS verified with the current anchors) carries a
//! self-signed CA certificate the agent does not trust yet, it is added only if the same
//! response also carries a link certificate for it: a certificate with the new root's
//! subject and public key, issued and signed by a current anchor, valid now (the
//! "NewWithOld" certificate of RFC 4210 §4.4). The old anchors stay until they expire, so
//! servers that still present the old chain keep working.

use std::path::Path;

use fleetca_pki::pem_certificate;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::identity::write_atomically;
use crate::AgentError;

/// A SHA-256 fingerprint of a DER certificate.
pub type Fingerprint = [u8; 32];

/// SHA-256 of `der`.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Renders a fingerprint as `sha256:AB:CD:...`, as `openssl x509 -fingerprint -sha256`
/// prints it (after the `sha256:` prefix).
pub fn format_fingerprint(fp: &Fingerprint) -> String {
    let hex: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", hex.join(":"))
}

/// Parses a SHA-256 fingerprint: 64 hex digits, with or without colons, with or without a
/// `sha256:` or `SHA256 Fingerprint=` prefix.
pub fn parse_fingerprint(text: &str) -> Result<Fingerprint, String> {
    let t = text.trim();
    let t = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .or_else(|| t.strip_prefix("sha256 Fingerprint="))
        .or_else(|| t.strip_prefix("SHA256 Fingerprint="))
        .unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "'{text}' is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).unwrap_or("00");
        *byte = u8::from_str_radix(pair, 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Reads the anchors file (one or more PEM certificates). `Ok(None)` if it does not exist.
pub fn load_anchors(path: &Path) -> Result<Option<Vec<Vec<u8>>>, AgentError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::io(path, e)),
    };
    let anchors: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&bytes)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| AgentError::Trust(format!("{}: not PEM: {e}", path.display())))?;
    if anchors.is_empty() {
        return Err(AgentError::Trust(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(Some(anchors))
}

/// Writes the anchors file atomically (mode 0644).
pub fn save_anchors(path: &Path, anchors: &[Vec<u8>]) -> Result<(), AgentError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
    }
    let pem: String = anchors.iter().map(|der| pem_certificate(der)).collect();
    write_atomically(path, pem.as_bytes(), 0o644)
}

/// The certificate among `cacerts` whose fingerprint is `pin`.
pub fn pinned(cacerts: &[Vec<u8>], pin: &Fingerprint) -> Option<Vec<u8>> {
    cacerts.iter().find(|c| fingerprint(c) == *pin).cloned()
}

fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    X509Certificate::from_der(der)
        .ok()
        .filter(|(rest, _)| rest.is_empty())
        .map(|(_, c)| c)
}

fn valid_at(cert: &X509Certificate<'_>, now: OffsetDateTime) -> bool {
    let v = cert.validity();
    v.not_before.to_datetime() <= now && now < v.not_after.to_datetime()
}

fn is_self_signed_ca(cert: &X509Certificate<'_>) -> bool {
    cert.is_ca()
        && cert.subject().as_raw() == cert.issuer().as_raw()
        && cert.verify_signature(None).is_ok()
}

/// New anchors proven by `cacerts`: self-signed CA certificates not among `current`, each
/// with a link certificate in `cacerts` signed by a current anchor (see the module docs).
pub fn rollover(current: &[Vec<u8>], cacerts: &[Vec<u8>], now: OffsetDateTime) -> Vec<Vec<u8>> {
    let anchors: Vec<X509Certificate<'_>> = current
        .iter()
        .filter_map(|d| parse(d))
        .filter(|a| valid_at(a, now))
        .collect();
    let offered: Vec<(&Vec<u8>, X509Certificate<'_>)> = cacerts
        .iter()
        .filter_map(|d| parse(d).map(|c| (d, c)))
        .collect();
    let mut accepted = Vec::new();
    for (der, root) in &offered {
        if current.contains(der) || !is_self_signed_ca(root) || !valid_at(root, now) {
            continue;
        }
        let linked = offered.iter().any(|(_, link)| {
            link.subject().as_raw() == root.subject().as_raw()
                && link.public_key().raw == root.public_key().raw
                && valid_at(link, now)
                && anchors.iter().any(|a| {
                    link.issuer().as_raw() == a.subject().as_raw()
                        && link.verify_signature(Some(a.public_key())).is_ok()
                })
        });
        if linked && !accepted.contains(*der) {
            accepted.push((*der).clone());
        }
    }
    accepted
}

/// `current` plus `added`, without the anchors that expired.
pub fn merged(current: &[Vec<u8>], added: &[Vec<u8>], now: OffsetDateTime) -> Vec<Vec<u8>> {
    current
        .iter()
        .chain(added)
        .filter(|d| parse(d).is_some_and(|c| valid_at(&c, now)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use fleetca_pki::{rcgen, KeyAlgorithm, SoftwareKey};

    use super::*;

    fn ca_params(cn: &str) -> rcgen::CertificateParams {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        p.not_after = OffsetDateTime::now_utc() + time::Duration::days(365);
        p
    }

    struct Root {
        key: SoftwareKey,
        cert: rcgen::Certificate,
        params: rcgen::CertificateParams,
    }

    fn root(cn: &str) -> Root {
        let key = KeyAlgorithm::P256.generate().unwrap();
        let params = ca_params(cn);
        let cert = params.self_signed(&key).unwrap();
        Root { key, cert, params }
    }

    /// The new root's name and key, signed by the old root.
    fn link(new: &Root, old: &Root) -> Vec<u8> {
        let issuer = rcgen::Issuer::from_params(&old.params, &old.key);
        new.params
            .signed_by(&new.key, &issuer)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn a_new_root_with_a_link_from_the_current_anchor_is_accepted() {
        let (old, new) = (root("Fleet Root G1"), root("Fleet Root G2"));
        let current = vec![old.cert.der().to_vec()];
        let now = OffsetDateTime::now_utc();
        let cacerts = vec![
            new.cert.der().to_vec(),
            link(&new, &old),
            old.cert.der().to_vec(),
        ];
        let added = rollover(&current, &cacerts, now);
        assert_eq!(added, vec![new.cert.der().to_vec()]);
        let all = merged(&current, &added, now);
        assert_eq!(all.len(), 2);
        // Nothing new the second time.
        assert!(rollover(&all, &cacerts, now).is_empty());
    }

    #[test]
    fn a_new_root_without_a_valid_link_is_refused() {
        let (old, new, rogue) = (root("G1"), root("G2"), root("Rogue"));
        let current = vec![old.cert.der().to_vec()];
        let now = OffsetDateTime::now_utc();
        // No link at all.
        assert!(rollover(&current, &[new.cert.der().to_vec()], now).is_empty());
        // A "link" signed by someone else.
        let forged = link(&new, &rogue);
        assert!(rollover(&current, &[new.cert.der().to_vec(), forged], now).is_empty());
        // A link for another key under the same name.
        let other = root("G2");
        let wrong_key = link(&other, &old);
        assert!(rollover(&current, &[new.cert.der().to_vec(), wrong_key], now).is_empty());
    }

    #[test]
    fn fingerprints_parse_in_the_usual_spellings() {
        let der = root("x").cert.der().to_vec();
        let fp = fingerprint(&der);
        let shown = format_fingerprint(&fp);
        assert_eq!(parse_fingerprint(&shown).unwrap(), fp);
        let openssl = shown.replace("sha256:", "sha256 Fingerprint=");
        assert_eq!(parse_fingerprint(&openssl).unwrap(), fp);
        let bare: String = shown
            .trim_start_matches("sha256:")
            .replace(':', "")
            .to_lowercase();
        assert_eq!(parse_fingerprint(&bare).unwrap(), fp);
        assert!(parse_fingerprint("sha256:AB:CD").is_err());
        assert_eq!(pinned(std::slice::from_ref(&der), &fp), Some(der));
        assert_eq!(pinned(&[], &fp), None);
    }

    #[test]
    fn anchors_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust/anchors.pem");
        assert!(load_anchors(&path).unwrap().is_none());
        let a = vec![root("a").cert.der().to_vec(), root("b").cert.der().to_vec()];
        save_anchors(&path, &a).unwrap();
        assert_eq!(load_anchors(&path).unwrap().unwrap(), a);
        std::fs::write(&path, "nothing").unwrap();
        assert!(load_anchors(&path).is_err());
    }
}
