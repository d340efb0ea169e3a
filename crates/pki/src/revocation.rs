//! Revocation reasons (RFC 5280 §5.3.1) and CRL building.

use std::fmt;
use std::str::FromStr;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

use crate::{CertificateSerial, Issuer, PkiError};

/// Why a certificate was revoked. `removeFromCRL` is a delta-CRL mechanism and not offered.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// unspecified (0)
    Unspecified,
    /// keyCompromise (1)
    KeyCompromise,
    /// cACompromise (2)
    CaCompromise,
    /// affiliationChanged (3)
    AffiliationChanged,
    /// superseded (4)
    Superseded,
    /// cessationOfOperation (5)
    CessationOfOperation,
    /// certificateHold (6): the reversible block of `fleetca device suspend`.
    CertificateHold,
    /// privilegeWithdrawn (9)
    PrivilegeWithdrawn,
    /// aACompromise (10)
    AaCompromise,
}

impl RevocationReason {
    const NAMES: [(Self, &'static str, u8); 9] = [
        (Self::Unspecified, "unspecified", 0),
        (Self::KeyCompromise, "keyCompromise", 1),
        (Self::CaCompromise, "cACompromise", 2),
        (Self::AffiliationChanged, "affiliationChanged", 3),
        (Self::Superseded, "superseded", 4),
        (Self::CessationOfOperation, "cessationOfOperation", 5),
        (Self::CertificateHold, "certificateHold", 6),
        (Self::PrivilegeWithdrawn, "privilegeWithdrawn", 9),
        (Self::AaCompromise, "aACompromise", 10),
    ];

    /// The RFC 5280 name (`keyCompromise`).
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(r, _, _)| *r == self)
            .map(|(_, n, _)| *n)
            .unwrap_or("unspecified")
    }

    /// The CRLReason code.
    pub fn code(self) -> u8 {
        Self::NAMES
            .iter()
            .find(|(r, _, _)| *r == self)
            .map(|(_, _, c)| *c)
            .unwrap_or(0)
    }

    fn to_rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            Self::Unspecified => R::Unspecified,
            Self::KeyCompromise => R::KeyCompromise,
            Self::CaCompromise => R::CaCompromise,
            Self::AffiliationChanged => R::AffiliationChanged,
            Self::Superseded => R::Superseded,
            Self::CessationOfOperation => R::CessationOfOperation,
            Self::CertificateHold => R::CertificateHold,
            Self::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
            Self::AaCompromise => R::AaCompromise,
        }
    }

    pub(crate) fn to_x509(self) -> x509_cert::ext::pkix::crl::CrlReason {
        use x509_cert::ext::pkix::crl::CrlReason as R;
        match self {
            Self::Unspecified => R::Unspecified,
            Self::KeyCompromise => R::KeyCompromise,
            Self::CaCompromise => R::CaCompromise,
            Self::AffiliationChanged => R::AffiliationChanged,
            Self::Superseded => R::Superseded,
            Self::CessationOfOperation => R::CessationOfOperation,
            Self::CertificateHold => R::CertificateHold,
            Self::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
            Self::AaCompromise => R::AaCompromise,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for RevocationReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::NAMES
            .iter()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(s))
            .map(|(r, _, _)| *r)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|(_, n, _)| *n).collect();
                format!(
                    "unknown revocation reason '{s}' (RFC 5280: {})",
                    names.join(", ")
                )
            })
    }
}

/// One CRL entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial of the revoked certificate.
    pub serial: CertificateSerial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// The entries of a CRL being built, converted to their encoder's form as they are added,
/// so that a caller reading a million rows keeps one list, not two.
#[derive(Debug, Default)]
pub struct CrlEntries {
    certs: Vec<RevokedCertParams>,
}

impl CrlEntries {
    /// An empty list with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            certs: Vec::with_capacity(capacity),
        }
    }

    /// Adds one revoked certificate. Entries are listed in the order added.
    pub fn push(
        &mut self,
        serial: &CertificateSerial,
        revoked_at: OffsetDateTime,
        reason: RevocationReason,
    ) {
        self.certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(serial.significant_bytes()),
            revocation_time: revoked_at,
            reason_code: Some(reason.to_rcgen()),
            invalidity_date: None,
        });
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// A signed CRL (DER), held as the encoder produced it (no copy of a large CRL).
#[derive(Debug)]
pub struct SignedCrl(rustls_pki_types::CertificateRevocationListDer<'static>);

impl AsRef<[u8]> for SignedCrl {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl Issuer {
    /// A CRL (v2, DER) of `entries`, signed by this CA, with CRL number, authority key
    /// identifier, thisUpdate and nextUpdate.
    pub fn crl(
        &self,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        entries: &[RevokedEntry],
    ) -> Result<Vec<u8>, PkiError> {
        let mut list = CrlEntries::with_capacity(entries.len());
        for e in entries {
            list.push(&e.serial, e.revoked_at, e.reason);
        }
        Ok(self
            .sign_crl(number, this_update, next_update, list)?
            .as_ref()
            .to_vec())
    }

    /// The same CRL as [`Issuer::crl`], of entries collected in a [`CrlEntries`]: the
    /// list is consumed by the encoder and the DER is not copied.
    pub fn sign_crl(
        &self,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        entries: CrlEntries,
    ) -> Result<SignedCrl, PkiError> {
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: entries.certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.key_id().to_vec()),
        };
        let issuer = self.rcgen_issuer()?;
        Ok(SignedCrl(params.signed_by(&issuer)?.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use std::sync::Arc;
    use x509_parser::prelude::FromDer;

    #[test]
    fn reasons_parse_by_rfc_name_and_keep_their_codes() {
        assert_eq!("keyCompromise".parse(), Ok(RevocationReason::KeyCompromise));
        assert_eq!(
            "CESSATIONOFOPERATION".parse(),
            Ok(RevocationReason::CessationOfOperation)
        );
        assert_eq!(RevocationReason::PrivilegeWithdrawn.code(), 9);
        let err = "lost".parse::<RevocationReason>().unwrap_err();
        assert!(err.contains("keyCompromise"), "{err}");
    }

    #[test]
    fn a_crl_lists_entries_with_reasons_and_verifies_with_the_ca_key() {
        let now = OffsetDateTime::now_utc();
        let key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
        let root = CaCertificate::root(key.as_ref(), &HierarchyParams::new("T"), now).unwrap();
        let issuer = Issuer::new("root", root.der.clone(), key).unwrap();
        let entries: Vec<RevokedEntry> = (0..3)
            .map(|_| RevokedEntry {
                serial: CertificateSerial::generate(),
                revoked_at: now,
                reason: RevocationReason::KeyCompromise,
            })
            .collect();
        let der = issuer
            .crl(7, now, now + time::Duration::days(1), &entries)
            .unwrap();
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
        assert_eq!(
            crl.crl_number().map(|n| n.to_string()),
            Some("7".to_string())
        );
        assert_eq!(crl.iter_revoked_certificates().count(), 3);
        let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&root.der).unwrap();
        crl.verify_signature(ca.public_key()).unwrap();
        let first = crl.iter_revoked_certificates().next().unwrap();
        assert_eq!(
            CertificateSerial::from_slice(first.raw_serial()),
            Some(entries[0].serial.clone())
        );
    }
}
