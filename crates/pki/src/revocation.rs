//! Revocation reasons (RFC 5280 §5.3.1) and CRL building.

use std::fmt;
use std::str::FromStr;

use der::asn1::{
    AnyRef, BitStringRef, GeneralizedTime, ObjectIdentifier, OctetString, UintRef, UtcTime,
};
use der::{DateTime, Decode, Encode, Sequence, Tag};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, SerialNumber};
use time::OffsetDateTime;
use x509_cert::ext::Extension;
use x509_cert::time::Time;

use crate::linted::CertificateParts;
use crate::{CertificateSerial, Issuer, PkiError};

/// id-ce-cRLReasons (RFC 5280 §5.3.1).
const ID_CE_CRL_REASONS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.21");

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

/// The entries of a CRL being built, each encoded (DER, one `revokedCertificates`
/// element) as it is added. A caller reading a million rows encodes each batch while the
/// store reads the next; signing then only frames and hashes the encoded list.
#[derive(Debug, Default)]
pub struct CrlEntries {
    /// The elements of `revokedCertificates`, concatenated.
    der: Vec<u8>,
    count: usize,
    /// The `crlEntryExtensions` of each reason met so far, encoded once (none for
    /// `unspecified`, whose reason code RFC 5280 §5.3.1 says should be absent).
    extensions: Vec<(RevocationReason, Vec<u8>)>,
}

/// RFC 5280 §5.1's `revokedCertificates` element, its extensions encoded beforehand.
#[derive(Sequence)]
struct RevokedCertificate<'a> {
    user_certificate: UintRef<'a>,
    revocation_date: Time,
    #[asn1(optional = "true")]
    crl_entry_extensions: Option<AnyRef<'a>>,
}

impl CrlEntries {
    /// An empty list with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            // A serial of 20 bytes, a UTCTime and a reason code: 45 bytes an entry.
            der: Vec::with_capacity(capacity.saturating_mul(45)),
            ..Self::default()
        }
    }

    /// Adds one revoked certificate. Entries are listed in the order added.
    pub fn push(
        &mut self,
        serial: &CertificateSerial,
        revoked_at: OffsetDateTime,
        reason: RevocationReason,
    ) -> Result<(), PkiError> {
        if reason != RevocationReason::Unspecified
            && !self.extensions.iter().any(|(r, _)| *r == reason)
        {
            self.extensions.push((reason, reason_extensions(reason)?));
        }
        let crl_entry_extensions = match self.extensions.iter().find(|(r, _)| *r == reason) {
            Some((_, der)) => Some(AnyRef::try_from(der.as_slice()).map_err(crl_encoding)?),
            None => None,
        };
        RevokedCertificate {
            user_certificate: UintRef::new(serial.significant_bytes()).map_err(crl_encoding)?,
            revocation_date: crl_time(revoked_at)?,
            crl_entry_extensions,
        }
        .encode_to_vec(&mut self.der)
        .map_err(crl_encoding)?;
        self.count += 1;
        Ok(())
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// `crlEntryExtensions` holding `reason`'s reasonCode (non-critical), DER.
fn reason_extensions(reason: RevocationReason) -> Result<Vec<u8>, PkiError> {
    let extension = Extension {
        extn_id: ID_CE_CRL_REASONS,
        critical: false,
        extn_value: OctetString::new(reason.to_x509().to_der().map_err(crl_encoding)?)
            .map_err(crl_encoding)?,
    };
    vec![extension].to_der().map_err(crl_encoding)
}

/// A CRL time as RFC 5280 §5.1.2.4 and rcgen write it: UTCTime from 1950 to 2049,
/// GeneralizedTime otherwise, whole seconds.
fn crl_time(at: OffsetDateTime) -> Result<Time, PkiError> {
    let seconds = u64::try_from(at.unix_timestamp())
        .map_err(|_| PkiError::Encoding(format!("CRL: time {at} is before 1970")))?;
    let at = DateTime::from_unix_duration(std::time::Duration::from_secs(seconds))
        .map_err(crl_encoding)?;
    Ok(if (1950..2050).contains(&at.year()) {
        Time::UtcTime(UtcTime::from_date_time(at).map_err(crl_encoding)?)
    } else {
        Time::GeneralTime(GeneralizedTime::from_date_time(at))
    })
}

fn crl_encoding(e: der::Error) -> PkiError {
    PkiError::Encoding(format!("CRL: {e}"))
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
            list.push(&e.serial, e.revoked_at, e.reason)?;
        }
        Ok(self
            .sign_crl(number, this_update, next_update, list)?
            .as_ref()
            .to_vec())
    }

    /// The same CRL as [`Issuer::crl`], of entries collected (and encoded) in a
    /// [`CrlEntries`].
    ///
    /// rcgen frames the CRL (version, signature algorithm, issuer name, thisUpdate,
    /// nextUpdate, the authority key identifier and the CRL number) around no entries,
    /// "signed" with the lint's placeholder (no signature is made); the entries go in
    /// their place (absent when there are none, RFC 5280 §5.1.2.6), and the CA signs that
    /// tbsCertList.
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
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::PreSpecified(self.key_id().to_vec()),
        };
        let framed = params.signed_by(self.lint_issuer())?;
        let frame = CertificateParts::from_der(framed.der()).map_err(crl_encoding)?;
        // RFC 5280 §5.1's tbsCertList, its fields kept as encoded: version, signature,
        // issuer, thisUpdate, nextUpdate, [revokedCertificates,] crlExtensions.
        let mut fields: Vec<AnyRef<'_>> =
            frame.tbs_certificate.decode_as().map_err(crl_encoding)?;
        if fields.len() != 6 {
            return Err(PkiError::Encoding(format!(
                "CRL: rcgen's frame has {} fields, not the 6 of a tbsCertList without entries",
                fields.len()
            )));
        }
        if !entries.is_empty() {
            let list = AnyRef::new(Tag::Sequence, &entries.der).map_err(crl_encoding)?;
            fields.insert(5, list);
        }
        let tbs = fields.to_der().map_err(crl_encoding)?;
        drop(entries);
        let signature = self.signer().sign(&tbs)?;
        let der = CertificateParts {
            tbs_certificate: AnyRef::from_der(&tbs).map_err(crl_encoding)?,
            signature_algorithm: frame.signature_algorithm,
            signature_value: BitStringRef::from_bytes(&signature).map_err(crl_encoding)?,
        }
        .to_der()
        .map_err(crl_encoding)?;
        Ok(SignedCrl(der.into()))
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

    /// The entries encoded as they are added and spliced into rcgen's frame give the
    /// tbsCertList rcgen itself builds from the same entries, byte for byte: serials with
    /// and without their high bit set, every reason (unspecified without an extension),
    /// UTCTime and GeneralizedTime dates, and no entries at all.
    #[test]
    fn a_crl_encodes_as_rcgen_does() {
        use der::asn1::AnyRef;
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber,
        };
        let now = OffsetDateTime::from_unix_timestamp(1_796_000_000).unwrap();
        let key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
        let root = CaCertificate::root(key.as_ref(), &HierarchyParams::new("T"), now).unwrap();
        let issuer = Issuer::new("root", root.der.clone(), key.clone()).unwrap();
        let reasons: Vec<RevocationReason> =
            RevocationReason::NAMES.iter().map(|(r, _, _)| *r).collect();
        let serials = [
            "01",
            "7f",
            "80",
            "00ff",
            "019a3b2c4d5e6f708192a3b4c5d6e7f801020304",
            "ffffffffffffffffffffffffffffffffffffffff",
        ];
        let times = [
            OffsetDateTime::from_unix_timestamp(0).unwrap(),
            now,
            OffsetDateTime::from_unix_timestamp(2_524_608_000).unwrap(), // 2050-01-01
            OffsetDateTime::from_unix_timestamp(2_524_607_999).unwrap(),
        ];
        let mut entries = Vec::new();
        for (i, serial) in serials.iter().enumerate() {
            for (j, at) in times.iter().enumerate() {
                entries.push(RevokedEntry {
                    serial: CertificateSerial::from_hex(serial).unwrap(),
                    revoked_at: *at,
                    reason: reasons[(i + j) % reasons.len()],
                });
            }
        }
        for entries in [&entries[..], &[]] {
            let ours = issuer
                .crl(9, now, now + time::Duration::days(7), entries)
                .unwrap();
            let theirs = CertificateRevocationListParams {
                this_update: now,
                next_update: now + time::Duration::days(7),
                crl_number: SerialNumber::from_slice(&9u64.to_be_bytes()),
                issuing_distribution_point: None,
                revoked_certs: entries
                    .iter()
                    .map(|e| RevokedCertParams {
                        serial_number: SerialNumber::from_slice(e.serial.significant_bytes()),
                        revocation_time: e.revoked_at,
                        reason_code: Some(match e.reason {
                            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
                            RevocationReason::KeyCompromise => {
                                rcgen::RevocationReason::KeyCompromise
                            }
                            RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
                            RevocationReason::AffiliationChanged => {
                                rcgen::RevocationReason::AffiliationChanged
                            }
                            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
                            RevocationReason::CessationOfOperation => {
                                rcgen::RevocationReason::CessationOfOperation
                            }
                            RevocationReason::CertificateHold => {
                                rcgen::RevocationReason::CertificateHold
                            }
                            RevocationReason::PrivilegeWithdrawn => {
                                rcgen::RevocationReason::PrivilegeWithdrawn
                            }
                            RevocationReason::AaCompromise => rcgen::RevocationReason::AaCompromise,
                        }),
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: KeyIdMethod::PreSpecified(issuer.key_id().to_vec()),
            }
            .signed_by(
                &rcgen::Issuer::from_ca_cert_der(&root.der.as_slice().into(), key.as_ref())
                    .unwrap(),
            )
            .unwrap();
            let tbs = |der: &[u8]| {
                let parts = crate::linted::CertificateParts::from_der(der).unwrap();
                (
                    parts.tbs_certificate.to_der().unwrap(),
                    AnyRef::to_der(&parts.signature_algorithm).unwrap(),
                )
            };
            assert_eq!(tbs(&ours), tbs(theirs.der()), "{} entries", entries.len());
            let (_, crl) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(&ours).unwrap();
            let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&root.der).unwrap();
            crl.verify_signature(ca.public_key()).unwrap();
            assert_eq!(crl.iter_revoked_certificates().count(), entries.len());
        }
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
