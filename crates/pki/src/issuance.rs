//! Two-step issuance, after Boulder's `issuance` package: [`Issuer::prepare`] builds the
//! certificate and lints it in its final form; [`Issuer::issue`] consumes the single-use
//! [`PreparedCertificate`] and signs it with the CA key. A certificate that fails lint is
//! never signed by the CA key.
//!
//! rcgen does not expose the to-be-signed bytes, so `prepare` signs the certificate with a
//! throwaway *lint key* of the same algorithm as the CA key and lints that. The issuer
//! name, key identifiers and signature algorithm come from the CA certificate, so the lint
//! certificate's TBS is byte-for-byte the one the CA will sign; `issue` re-checks this after
//! signing and refuses to return a certificate whose TBS differs.

use std::sync::Arc;

use rcgen::{CertificateParams, DnType, DnValue, IsCa, KeyIdMethod, SanType, SerialNumber};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::lint::{lint_certificate, LintExpectations};
use crate::linted::{LintKey, Linted};
use crate::name::{CertificateInfo, NameAttribute};
use crate::{CertificateProfile, CertificateSerial, PkiError, PublicKeyKind, Signer};

/// What to issue: a device serial number and a public key, under a profile.
#[derive(Debug, Clone)]
pub struct IssuanceOrder {
    /// The device serial number (the identity, already authenticated and authorised).
    pub device_serial: String,
    /// DER SubjectPublicKeyInfo from the verified CSR.
    pub spki_der: Vec<u8>,
}

/// A built and linted certificate, ready to be signed once. Not `Clone`: a token is used
/// at most once.
#[derive(Debug)]
pub struct PreparedCertificate {
    issuer: String,
    profile: String,
    device_serial: String,
    serial: CertificateSerial,
    spki_sha256: String,
    pub(crate) linted: Linted,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl PreparedCertificate {
    /// The serial number the certificate will carry.
    pub fn serial(&self) -> &CertificateSerial {
        &self.serial
    }

    /// notAfter of the certificate.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

/// A signed certificate.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// Serial number.
    pub serial: CertificateSerial,
    /// Name of the issuing CA.
    pub issuer: String,
    /// Name of the profile.
    pub profile: String,
    /// Device serial number.
    pub device_serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// Where relying parties learn a CA's certificates' status; written into every certificate
/// the CA issues (CRL distribution point, authority information access).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// URL of the CA's CRL (`http://host/crl/<ca>.crl`).
    pub crl_url: String,
    /// URL of the OCSP responder (`http://host/ocsp`).
    pub ocsp_url: String,
}

/// An issuing CA: its certificate, its key (behind [`Signer`]) and a lint key.
pub struct Issuer {
    name: String,
    certificate_der: Vec<u8>,
    info: CertificateInfo,
    key_id: Vec<u8>,
    signer: Arc<dyn Signer>,
    /// The CA as rcgen's issuer for the lint (its name, key identifier and usages read once
    /// from the certificate, not at every issuance), with the placeholder signature of
    /// [`LintKey`]: the CA key signs the linted bytes afterwards ([`Linted::sign`]).
    lint_issuer: rcgen::Issuer<'static, LintKey>,
    publication: Option<Publication>,
    generation: u32,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("name", &self.name)
            .field("subject", &self.info.subject_display())
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// An issuer from its CA certificate (DER) and signer. Checks that the certificate is a
    /// CA with a subject key identifier and that the signer holds its key.
    pub fn new(
        name: &str,
        certificate_der: Vec<u8>,
        signer: Arc<dyn Signer>,
    ) -> Result<Self, PkiError> {
        let (_, cert) = X509Certificate::from_der(&certificate_der)
            .map_err(|e| PkiError::MalformedCertificate(format!("CA '{name}': {e}")))?;
        let info = CertificateInfo::from_parsed(&cert)?;
        if !info.is_ca {
            return Err(PkiError::MalformedCertificate(format!(
                "CA '{name}': certificate is not a CA certificate"
            )));
        }
        let key_id = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            })
            .ok_or_else(|| {
                PkiError::MalformedCertificate(format!(
                    "CA '{name}': certificate has no subjectKeyIdentifier"
                ))
            })?;
        if rcgen::PublicKeyData::subject_public_key_info(signer.as_ref()) != info.spki_der {
            return Err(PkiError::Key(format!(
                "CA '{name}': the key does not belong to the certificate"
            )));
        }
        let ca = rustls_pki_types::CertificateDer::from(certificate_der.as_slice());
        let lint_issuer = rcgen::Issuer::from_ca_cert_der(&ca, LintKey::of(signer.as_ref()))?;
        Ok(Self {
            name: name.to_string(),
            certificate_der,
            info,
            key_id,
            signer,
            lint_issuer,
            publication: None,
            generation: 1,
        })
    }

    /// Writes these CRL and OCSP URLs into every certificate this CA issues from now on.
    pub fn with_publication(mut self, publication: Publication) -> Self {
        self.publication = Some(publication);
        self
    }

    /// Marks this issuer as generation `generation` of its CA (1 unless rolled over).
    pub fn with_generation(mut self, generation: u32) -> Self {
        self.generation = generation;
        self
    }

    /// Which generation of its CA this is.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The name of this generation for its own files, CRL and URLs: the CA's name for
    /// generation 1 (as before rollovers existed), `<name>-<generation>` after.
    pub fn generation_name(&self) -> String {
        if self.generation > 1 {
            format!("{}-{}", self.name, self.generation)
        } else {
            self.name.clone()
        }
    }

    /// The CA's subject key identifier.
    pub fn key_id(&self) -> &[u8] {
        &self.key_id
    }

    /// The CA's signer (for CRLs and OCSP responder certificates).
    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.signer
    }

    /// The CA as rcgen's issuer with the placeholder signature of [`LintKey`], for what
    /// rcgen frames and the CA key signs afterwards.
    pub(crate) fn lint_issuer(&self) -> &rcgen::Issuer<'static, LintKey> {
        &self.lint_issuer
    }

    /// The CA's name (`operational`, `manufacturing`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The CA certificate's parsed fields.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// Builds the certificate `profile` gives to `order` and lints it. `now` is the
    /// issuance time (from the injected clock).
    pub fn prepare(
        &self,
        profile: &CertificateProfile,
        order: &IssuanceOrder,
        now: OffsetDateTime,
    ) -> Result<PreparedCertificate, PkiError> {
        if profile.issuer != self.name {
            return Err(PkiError::Profile {
                profile: profile.name.clone(),
                reason: format!("is issued by '{}', not by '{}'", profile.issuer, self.name),
            });
        }
        let subject_key = rcgen::SubjectPublicKeyInfo::from_der(&order.spki_der)
            .map_err(|e| PkiError::Key(format!("subject public key: {e}")))?;
        let serial = CertificateSerial::generate();
        let not_before = now - profile.backdate;
        // A certificate never outlives its issuer (RFC 5280 path validation would reject it),
        // except the explicit no-expiry value of IEEE 802.1AR birth certificates.
        let not_after = if profile.no_expiry {
            no_expiry()
        } else {
            (now + profile.validity).min(self.info.not_after)
        };

        let mut params = CertificateParams::default();
        params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
        params.not_before = not_before;
        params.not_after = not_after;
        params.distinguished_name = distinguished_name(&profile.subject_for(&order.device_serial))?;
        params.subject_alt_names = profile
            .subject_alt_names_for(&order.device_serial)
            .iter()
            .map(|s| san(s))
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        let key_kind = PublicKeyKind::of_spki(&order.spki_der).map_err(PkiError::Key)?;
        params.key_usages = profile
            .key_usages_for(key_kind)
            .iter()
            .map(|k| k.to_rcgen())
            .collect();
        params.extended_key_usages = profile
            .extended_key_usages
            .iter()
            .map(|k| k.to_rcgen())
            .collect();
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(&order.spki_der));
        self.add_publication(&mut params)?;

        let linted = self.lint(&params, &subject_key, true, !profile.no_expiry)?;
        Ok(PreparedCertificate {
            issuer: self.name.clone(),
            profile: profile.name.clone(),
            device_serial: order.device_serial.clone(),
            serial,
            spki_sha256: spki_sha256(&rcgen::PublicKeyData::subject_public_key_info(&subject_key)),
            linted,
            not_before,
            not_after,
        })
    }

    /// Signs a prepared certificate with the CA key: exactly the tbsCertificate that was
    /// linted.
    pub fn issue(&self, prepared: PreparedCertificate) -> Result<IssuedCertificate, PkiError> {
        if prepared.issuer != self.name {
            return Err(PkiError::Profile {
                profile: prepared.profile,
                reason: format!("prepared by '{}', not by '{}'", prepared.issuer, self.name),
            });
        }
        let der = prepared.linted.sign(self.signer.as_ref())?;
        Ok(IssuedCertificate {
            serial: prepared.serial,
            issuer: prepared.issuer,
            profile: prepared.profile,
            device_serial: prepared.device_serial,
            not_before: prepared.not_before,
            not_after: prepared.not_after,
            spki_sha256: prepared.spki_sha256,
            der,
        })
    }

    /// Adds the CRL distribution point and the OCSP authority information access.
    pub(crate) fn add_publication(&self, params: &mut CertificateParams) -> Result<(), PkiError> {
        let Some(p) = &self.publication else {
            return Ok(());
        };
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec![p.crl_url.clone()],
        }];
        params
            .custom_extensions
            .push(authority_information_access(&p.ocsp_url)?);
        Ok(())
    }

    /// Signs a CA or server certificate for the hierarchy, after linting it the same way.
    pub(crate) fn sign_linted(
        &self,
        params: &CertificateParams,
        subject_key: &impl rcgen::PublicKeyData,
        end_entity: bool,
    ) -> Result<Vec<u8>, PkiError> {
        self.lint(params, subject_key, end_entity, true)?
            .sign(self.signer.as_ref())
    }

    fn lint(
        &self,
        params: &CertificateParams,
        subject_key: &impl rcgen::PublicKeyData,
        end_entity: bool,
        within_issuer: bool,
    ) -> Result<Linted, PkiError> {
        // The first encoding of these parameters. rcgen's DER writer (yasna) asserts on
        // values it cannot write instead of returning an error; `distinguished_name`
        // refuses the ones known, and this turns any other into a refusal of this one
        // request rather than a panic of the task serving it. Nothing is signed with a CA
        // key before this has passed, and the same parameters encode the same way then.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            params.signed_by(subject_key, &self.lint_issuer)
        }))
        .map_err(|_| {
            PkiError::Encoding(
                "the certificate's fields could not be DER-encoded; nothing was signed".into(),
            )
        })??;
        let lint_der = built.der().to_vec();
        lint_certificate(
            &lint_der,
            &LintExpectations {
                end_entity,
                issuer_subject: self.info.subject.clone(),
                issuer_key_id: self.key_id.clone(),
                issuer_not_after: within_issuer.then_some(self.info.not_after),
            },
        )?;
        Ok(Linted::new(lint_der))
    }
}

/// 99991231235959Z: RFC 5280 §4.1.2.5's "no well-defined expiration date".
pub(crate) fn no_expiry() -> OffsetDateTime {
    time::macros::datetime!(9999-12-31 23:59:59 UTC)
}

/// The authorityInfoAccess extension naming an OCSP responder.
fn authority_information_access(ocsp_url: &str) -> Result<rcgen::CustomExtension, PkiError> {
    use der::Encode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
    let enc = |e: der::Error| PkiError::Encoding(format!("authorityInfoAccess: {e}"));
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1"),
        access_location: GeneralName::UniformResourceIdentifier(
            der::asn1::Ia5String::new(ocsp_url).map_err(enc)?,
        ),
    }]);
    Ok(rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        aia.to_der().map_err(enc)?,
    ))
}

/// RFC 7093 method 1 key identifier: the first 160 bits of SHA-256 over the DER
/// SubjectPublicKeyInfo (the same value rcgen derives).
pub(crate) fn key_identifier(spki_der: &[u8]) -> Vec<u8> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    digest.as_ref().iter().take(20).copied().collect()
}

/// The SHA-256 of a DER SubjectPublicKeyInfo, lower-case hex (as the inventory records it).
pub fn spki_sha256(spki_der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        spki_der,
    ))
}

pub(crate) fn distinguished_name(
    attrs: &[NameAttribute],
) -> Result<rcgen::DistinguishedName, PkiError> {
    let mut dn = rcgen::DistinguishedName::new();
    for a in attrs {
        let components: Vec<u64> = a
            .oid
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| PkiError::Encoding(format!("bad attribute OID {}", a.oid)))?;
        let ty = DnType::from_oid(&components);
        // serialNumber and countryName are PrintableString by X.520; others UTF8String.
        let value = if matches!(a.oid.as_str(), "2.5.4.5" | "2.5.4.6") {
            if let Some(bad) = a
                .value
                .chars()
                .find(|c| !crate::profile::encodable_printable(*c))
            {
                return Err(PkiError::Encoding(format!(
                    "{} value '{}' contains {bad:?}, which fleetca cannot write in a PrintableString",
                    a.short_name(),
                    a.value
                )));
            }
            DnValue::PrintableString(a.value.as_str().try_into().map_err(|_| {
                PkiError::Encoding(format!(
                    "{} value '{}' is not a PrintableString",
                    a.short_name(),
                    a.value
                ))
            })?)
        } else {
            DnValue::Utf8String(a.value.clone())
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

pub(crate) fn san(text: &str) -> Result<SanType, PkiError> {
    let bad = |e: rcgen::Error| PkiError::Encoding(format!("subjectAltName '{text}': {e}"));
    if let Some(d) = text.strip_prefix("DNS:") {
        Ok(SanType::DnsName(d.try_into().map_err(bad)?))
    } else if let Some(u) = text.strip_prefix("URI:") {
        Ok(SanType::URI(u.try_into().map_err(bad)?))
    } else if let Some(ip) = text.strip_prefix("IP:") {
        Ok(SanType::IpAddress(ip.parse().map_err(|_| {
            PkiError::Encoding(format!("subjectAltName '{text}' is not an IP address"))
        })?))
    } else {
        Err(PkiError::Encoding(format!(
            "subjectAltName '{text}' must start with DNS:, URI: or IP:"
        )))
    }
}
