//! X.509 building blocks for fleetca, with no I/O.
//!
//! Everything here is a pure function over bytes and an injected [`Clock`]: parsing and
//! verifying certificate signing requests, certificate profiles, the two-step issuance
//! (`prepare` builds and lints, `issue` signs), CMS certs-only encoding and the EST
//! `csrattrs` encoding. Network, files and databases stay in the other crates.

mod clock;
mod cms;
mod crmf;
mod csr;
mod csrattrs;
mod duration;
mod error;
mod hierarchy;
mod issuance;
mod key;
mod key_file;
mod key_usage;
mod lint;
mod linted;
mod name;
mod ocsp;
mod profile;
mod revocation;
mod san_syntax;
mod scep_ra;
mod serial;
mod untrusted;

#[cfg(test)]
mod robustness;

pub use clock::{Clock, ManualClock, SystemClock};
pub use cms::{base64_lines, certs_only, parse_certs_only, pem_certificate};
pub use crmf::{verify_signature, CrmfRequest};
pub use csr::{CertificateRequest, RequestedExtensions};
pub use csrattrs::csr_attributes;
pub use duration::HumanDuration;
pub use error::{CsrError, LintError, PkiError};
pub use hierarchy::{
    cmp_protection_certificate, link_certificate, ocsp_responder_certificate, server_certificate,
    station_certificate, CaCertificate, CaRole, HierarchyParams,
};
pub use issuance::{
    spki_sha256, IssuanceOrder, IssuedCertificate, Issuer, PreparedCertificate, Publication,
};
pub use key::{KeyAlgorithm, PublicKeyKind, Signer, SoftwareKey};
pub use key_file::{private_key_der, KEY_FORMATS};
pub use key_usage::key_usage_fits_key;
pub use lint::{lint_certificate, LintExpectations};
pub use name::{CertificateInfo, NameAttribute, SERIAL_NUMBER_OID};
pub use ocsp::signature_algorithm as signature_algorithm_identifier;
pub use ocsp::{
    build_request as build_ocsp_request, ocsp_error_response, ocsp_internal_error, ocsp_try_later,
    parse_request as parse_ocsp_request, response_status_unverified as ocsp_response_status,
    OcspQuery, OcspRequestError, OcspResponder, OcspStatus,
};
pub use profile::{
    validate_device_serial, BirthReenrollment, CertificateProfile, CustomRule, ExtendedKeyUsage,
    KeyUsage, ProfileRules, RateLimit, SubjectAttribute,
};
pub use revocation::{CrlEntries, RevocationReason, RevokedEntry, SignedCrl};
pub use san_syntax::validate_subject_alt_name;
pub use scep_ra::scep_ra_certificate;
pub use serial::{CertificateSerial, SERIAL_RANDOM_BYTES};
pub use untrusted::{escape_controls, first_control};

/// rcgen, re-exported for tools and tests that build CSRs with [`SoftwareKey::certificate_request`].
pub use rcgen;
/// Re-exported so that callers can name DER certificates without another dependency.
pub use rcgen::SanType;
