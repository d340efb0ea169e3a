//! Fixed keys and CAs, the same in every run: the fuzzer's inputs (and the generated seeds)
//! can name them, which random keys per start would make impossible (issue 22: OCSP
//! requests never named the responder's CA, so `respond()` never ran).
//!
//! Each key is derived from a committed seed phrase: P-256 private scalar = SHA-256 of the
//! phrase. These keys protect nothing; they exist only for the fuzz targets and their
//! replay test.

use std::sync::{Arc, OnceLock};

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use fleetca_pki::{
    ocsp_responder_certificate, CaCertificate, CaRole, CertificateInfo, HierarchyParams,
    IssuanceOrder, Issuer, OcspResponder, SoftwareKey,
};
use time::OffsetDateTime;

/// The device serial number of the fixed device identity.
pub const DEVICE_SERIAL: &str = "FUZZ-0001";

/// A P-256 key from `phrase` (see the module docs). `None` only if the digest were not a
/// valid scalar, which the committed phrases are not.
pub fn p256_key(phrase: &str) -> Option<SoftwareKey> {
    let scalar = digest(&SHA256, phrase.as_bytes());
    // RFC 5915 ECPrivateKey { version 1, privateKey OCTET STRING }; the curve is given by
    // the algorithm and the public key is computed.
    let mut sec1 = vec![0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20];
    sec1.extend_from_slice(scalar.as_ref());
    let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &sec1).ok()?;
    let pkcs8 = pair.to_pkcs8v1().ok()?;
    SoftwareKey::from_pkcs8_der(pkcs8.as_ref()).ok()
}

/// The fixed PKI: two roots (the second one the roll-over target of the first), an
/// operational CA under the first, the device key and a certificate for it, and an OCSP
/// responder for each root.
pub struct Pki {
    /// Root "Fuzz" (its key from the phrase `fleetca fuzz root`).
    pub root: Arc<Issuer>,
    /// The second root, "Fuzz Next" (`fleetca fuzz next root`), for roll-over.
    pub next_root: Arc<Issuer>,
    /// The operational CA under `root`.
    pub operational: Arc<Issuer>,
    /// The manufacturing CA under `root`.
    pub manufacturing: Arc<Issuer>,
    /// The device key (`fleetca fuzz device`).
    pub device_key: SoftwareKey,
    /// An operational certificate for `device_key`, device [`DEVICE_SERIAL`].
    pub device_certificate: Vec<u8>,
    /// Parsed `device_certificate`.
    pub device_info: CertificateInfo,
    /// OCSP responders for `root` and `next_root`, in that order.
    pub responders: Vec<Arc<OcspResponder>>,
    /// When the PKI was made; certificates are valid from five minutes before.
    pub made: OffsetDateTime,
}

fn key(phrase: &str) -> Result<Arc<SoftwareKey>, String> {
    p256_key(phrase)
        .map(Arc::new)
        .ok_or_else(|| format!("the phrase '{phrase}' gives no P-256 key"))
}

fn build() -> Result<Pki, String> {
    let now = OffsetDateTime::now_utc();
    let e = |e: fleetca_pki::PkiError| e.to_string();
    let root_key = key("fleetca fuzz root")?;
    let root_der = CaCertificate::root(root_key.as_ref(), &HierarchyParams::new("Fuzz"), now)
        .map_err(e)?
        .der;
    let root = Arc::new(Issuer::new("root", root_der, root_key).map_err(e)?);
    let next_key = key("fleetca fuzz next root")?;
    let next_der = CaCertificate::root(next_key.as_ref(), &HierarchyParams::new("Fuzz Next"), now)
        .map_err(e)?
        .der;
    let next_root = Arc::new(Issuer::new("next", next_der, next_key).map_err(e)?);
    let op_key = key("fleetca fuzz operational")?;
    let op_der = CaCertificate::issuing(
        &root,
        CaRole::Operational,
        op_key.as_ref(),
        &HierarchyParams::new("Fuzz"),
        now,
    )
    .map_err(e)?
    .der;
    let operational = Arc::new(Issuer::new("operational", op_der, op_key).map_err(e)?);
    let mfg_key = key("fleetca fuzz manufacturing")?;
    let mfg_der = CaCertificate::issuing(
        &root,
        CaRole::Manufacturing,
        mfg_key.as_ref(),
        &HierarchyParams::new("Fuzz"),
        now,
    )
    .map_err(e)?
    .der;
    let manufacturing = Arc::new(Issuer::new("manufacturing", mfg_der, mfg_key).map_err(e)?);
    let device_key = p256_key("fleetca fuzz device").ok_or("no device key")?;
    let profile = fleetca_pki::CertificateProfile::default_operational();
    let order = IssuanceOrder {
        device_serial: DEVICE_SERIAL.into(),
        spki_der: device_key.public_key_der(),
    };
    let prepared = operational.prepare(&profile, &order, now).map_err(e)?;
    let device_certificate = operational.issue(prepared).map_err(e)?.der;
    let device_info = CertificateInfo::from_der(&device_certificate).map_err(e)?;
    let mut responders = Vec::new();
    for (ca, phrase) in [
        (&root, "fleetca fuzz root ocsp"),
        (&next_root, "fleetca fuzz next ocsp"),
    ] {
        let rkey = key(phrase)?;
        let rcert =
            ocsp_responder_certificate(ca, &rkey.public_key_der(), time::Duration::days(30), now)
                .map_err(e)?;
        responders.push(Arc::new(
            OcspResponder::new(ca.name(), ca.certificate_der(), &rcert, rkey).map_err(e)?,
        ));
    }
    Ok(Pki {
        root,
        next_root,
        operational,
        manufacturing,
        device_key,
        device_certificate,
        device_info,
        responders,
        made: now,
    })
}

/// The fixed PKI, made once per process. `None` if it cannot be made (then every target
/// that needs it returns at once, and the replay test fails on [`pki_or_reason`]).
pub fn pki() -> Option<&'static Pki> {
    pki_or_reason().ok()
}

/// The fixed PKI, or why it could not be made.
pub fn pki_or_reason() -> Result<&'static Pki, &'static str> {
    static PKI: OnceLock<Result<Pki, String>> = OnceLock::new();
    PKI.get_or_init(build).as_ref().map_err(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_phrases_are_the_same_in_every_run() {
        let a = p256_key("fleetca fuzz root").map(|k| k.public_key_der());
        let b = p256_key("fleetca fuzz root").map(|k| k.public_key_der());
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(
            a,
            p256_key("fleetca fuzz device").map(|k| k.public_key_der())
        );
    }
}
