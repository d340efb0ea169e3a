//! The SCEP registration authority certificate (RFC 8894 section 2.2): the key SCEP
//! clients encrypt their requests to (RSA key transport: the envelope needs an RSA
//! recipient even when the CAs are EC) and that signs fleetca's SCEP replies. Issued by
//! the operational CA, short-lived and renewed by fleetca with a new key.

use rcgen::KeyUsagePurpose;
use time::{Duration, OffsetDateTime};

use crate::hierarchy::{cmc_ra, service_certificate, ServiceProfile};
use crate::{Issuer, PkiError};

/// The SCEP RA certificate of `issuer` for the RSA key `spki_der`: subject
/// `<issuer's subject without CN>, CN=<issuer CN> SCEP RA`, keyUsage digitalSignature and
/// keyEncipherment, extendedKeyUsage id-kp-cmcRA, no CA.
pub fn scep_ra_certificate(
    issuer: &Issuer,
    spki_der: &[u8],
    validity: Duration,
    now: OffsetDateTime,
) -> Result<Vec<u8>, PkiError> {
    service_certificate(
        issuer,
        spki_der,
        validity,
        now,
        ServiceProfile {
            what: "SCEP RA",
            cn_suffix: "SCEP RA",
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            extended_key_usages: vec![cmc_ra()],
            custom_extensions: Vec::new(),
        },
    )
}
