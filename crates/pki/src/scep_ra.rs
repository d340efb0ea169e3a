//! The SCEP registration authority certificate (RFC 8894 section 2.2): the key SCEP
//! clients encrypt their requests to (RSA key transport: the envelope needs an RSA
//! recipient even when the CAs are EC) and that signs fleetca's SCEP replies. Issued by
//! the operational CA, short-lived and renewed by fleetca with a new key.

use rcgen::{CertificateParams, IsCa, KeyIdMethod, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::issuance::{distinguished_name, key_identifier};
use crate::name::NameAttribute;
use crate::{CertificateSerial, Issuer, PkiError};

/// The SCEP RA certificate of `issuer` for the RSA key `spki_der`: subject
/// `<issuer's subject without CN>, CN=<issuer CN> SCEP RA`, keyUsage digitalSignature and
/// keyEncipherment, extendedKeyUsage id-kp-cmcRA, no CA.
pub fn scep_ra_certificate(
    issuer: &Issuer,
    spki_der: &[u8],
    validity: Duration,
    now: OffsetDateTime,
) -> Result<Vec<u8>, PkiError> {
    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| PkiError::Key(format!("SCEP RA key: {e}")))?;
    let mut cert = CertificateParams::default();
    let serial = CertificateSerial::random();
    cert.serial_number = Some(rcgen::SerialNumber::from_slice(serial.as_bytes()));
    let mut subject: Vec<NameAttribute> = issuer
        .info()
        .subject
        .iter()
        .filter(|a| a.oid != "2.5.4.3")
        .cloned()
        .collect();
    let ca_cn = issuer
        .info()
        .subject
        .iter()
        .find(|a| a.oid == "2.5.4.3")
        .map(|a| a.value.clone())
        .unwrap_or_else(|| issuer.name().to_string());
    subject.push(NameAttribute {
        oid: "2.5.4.3".into(),
        value: format!("{ca_cn} SCEP RA"),
    });
    cert.distinguished_name = distinguished_name(&subject)?;
    cert.not_before = now - Duration::minutes(5);
    cert.not_after = (now + validity).min(issuer.info().not_after);
    cert.is_ca = IsCa::ExplicitNoCa;
    cert.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // id-kp-cmcRA (RFC 6402): a registration authority's certificate.
    cert.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::Other(vec![
        1, 3, 6, 1, 5, 5, 7, 3, 28,
    ])];
    cert.use_authority_key_identifier_extension = true;
    cert.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(spki_der));
    issuer.sign_linted(&cert, &subject_key, true)
}
