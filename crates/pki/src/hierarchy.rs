//! The certificates of a new fleetca PKI: a self-signed root, the manufacturing and
//! operational issuing CAs under it, and the EST server's TLS certificate. All of them go
//! through the same lint as device certificates before the real key signs them.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyIdMethod, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::issuance::{distinguished_name, key_identifier, san};
use crate::lint::{lint_certificate, LintExpectations};
use crate::linted::{LintKey, Linted};
use crate::name::NameAttribute;
use crate::{CertificateSerial, Issuer, PkiError, PublicKeyKind, Signer};

/// The CAs of a fleetca PKI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaRole {
    /// The trust anchor. Signs only the issuing CAs.
    Root,
    /// Issues birth certificates (IDevID).
    Manufacturing,
    /// Issues operational certificates (LDevID) and the server's TLS certificate.
    Operational,
    /// Issues factory station credentials (registration authorities).
    Registration,
}

impl CaRole {
    /// File and configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Manufacturing => "manufacturing",
            Self::Operational => "operational",
            Self::Registration => "registration",
        }
    }

    fn common_name(self) -> &'static str {
        match self {
            Self::Root => "Root CA",
            Self::Manufacturing => "Manufacturing CA",
            Self::Operational => "Operational CA",
            Self::Registration => "Registration CA",
        }
    }
}

/// Names and lifetimes of a new hierarchy.
#[derive(Debug, Clone)]
pub struct HierarchyParams {
    /// Organization (O) in every CA subject, and the prefix of their common names.
    pub organization: String,
    /// Root validity (default 25 years).
    pub root_validity: Duration,
    /// Issuing CA validity (default 20 years + 1 month, so that 20-year birth certificates
    /// issued in the first month still fit).
    pub issuing_validity: Duration,
    /// Server TLS certificate validity (default 397 days).
    pub server_validity: Duration,
}

impl HierarchyParams {
    /// Default lifetimes for `organization`.
    pub fn new(organization: &str) -> Self {
        Self {
            organization: organization.to_string(),
            root_validity: Duration::days(25 * 365 + 6),
            issuing_validity: Duration::days(20 * 365 + 5 + 31),
            server_validity: Duration::days(397),
        }
    }

    fn ca_subject(&self, role: CaRole) -> Vec<NameAttribute> {
        self.generation_subject(role, 1)
    }

    /// The subject of a CA generation: generation 1 is `<O> Operational CA`, later ones
    /// `<O> Operational CA G2`, ... A distinct name per generation keeps path building
    /// unambiguous while generations overlap (and tells an operator which one a
    /// certificate chains to).
    pub fn generation_subject(&self, role: CaRole, generation: u32) -> Vec<NameAttribute> {
        let suffix = if generation > 1 {
            format!(" G{generation}")
        } else {
            String::new()
        };
        vec![
            NameAttribute {
                oid: "2.5.4.10".into(),
                value: self.organization.clone(),
            },
            NameAttribute {
                oid: "2.5.4.3".into(),
                value: format!("{} {}{suffix}", self.organization, role.common_name()),
            },
        ]
    }
}

/// A CA certificate as written to disk.
#[derive(Debug, Clone)]
pub struct CaCertificate {
    /// Which CA.
    pub role: CaRole,
    /// DER.
    pub der: Vec<u8>,
}

impl CaCertificate {
    /// PEM encoding.
    pub fn pem(&self) -> String {
        crate::cms::pem_certificate(&self.der)
    }

    /// The self-signed root.
    pub fn root(
        key: &dyn Signer,
        params: &HierarchyParams,
        now: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        Self::root_generation(key, params, now, 1)
    }

    /// Generation `generation` of the self-signed root (a root rollover).
    pub fn root_generation(
        key: &dyn Signer,
        params: &HierarchyParams,
        now: OffsetDateTime,
        generation: u32,
    ) -> Result<Self, PkiError> {
        let spki = rcgen::PublicKeyData::subject_public_key_info(key);
        // pathLenConstraint 2: root -> issuing CA -> device, and room for the link
        // certificate of a later root rollover (old root -> NewWithOld -> issuing CA ->
        // device), which relying parties that enforce the anchor's constraint (OpenSSL)
        // would otherwise refuse.
        let mut cert = ca_params(params, CaRole::Root, now, params.root_validity, 2)?;
        cert.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(&spki));
        let subject = params.generation_subject(CaRole::Root, generation);
        cert.distinguished_name = distinguished_name(&subject)?;
        let expect = LintExpectations {
            end_entity: false,
            issuer_subject: subject,
            issuer_key_id: key_identifier(&spki),
            issuer_not_after: None,
        };
        // Lint first, then sign the linted bytes, as for every other certificate.
        let lint_issuer = rcgen::Issuer::from_params(&cert, LintKey::of(key));
        let lint_der = cert.signed_by(&key, &lint_issuer)?.der().to_vec();
        lint_certificate(&lint_der, &expect)?;
        let der = Linted::new(lint_der).sign(key)?;
        Ok(Self {
            role: CaRole::Root,
            der,
        })
    }

    /// An issuing CA signed by `root`.
    pub fn issuing(
        root: &Issuer,
        role: CaRole,
        subject_key: &dyn Signer,
        params: &HierarchyParams,
        now: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        Self::issuing_generation(root, role, subject_key, params, now, 1)
    }

    /// Generation `generation` of an issuing CA, signed by `root` (a rollover). Its
    /// validity is `params.issuing_validity`, cut to end a day before the root's.
    pub fn issuing_generation(
        root: &Issuer,
        role: CaRole,
        subject_key: &dyn Signer,
        params: &HierarchyParams,
        now: OffsetDateTime,
        generation: u32,
    ) -> Result<Self, PkiError> {
        let spki = rcgen::PublicKeyData::subject_public_key_info(subject_key);
        let validity = params
            .issuing_validity
            .min(root.info().not_after - now - Duration::days(1));
        if validity <= Duration::ZERO {
            return Err(PkiError::IssuerValidity(format!(
                "the root CA expires at {}: it cannot certify a new CA",
                root.info().not_after
            )));
        }
        let mut cert = ca_params(params, role, now, validity, 0)?;
        cert.distinguished_name = distinguished_name(&params.generation_subject(role, generation))?;
        cert.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(&spki));
        let der = root.sign_linted(&cert, &subject_key, false)?;
        Ok(Self { role, der })
    }
}

/// A link certificate of a root rollover (RFC 4210 section 4.4): the root in
/// `root_der` (its name and key) certified by `signer`, the other root. With the new root
/// as subject and the old one as signer it is "NewWithOld": a relying party that trusts
/// only the old root reaches the new one through it; the other way round "OldWithNew".
/// Valid until the earlier of both roots' ends.
pub fn link_certificate(
    signer: &Issuer,
    root_der: &[u8],
    now: OffsetDateTime,
) -> Result<Vec<u8>, PkiError> {
    let root = crate::CertificateInfo::from_der(root_der)?;
    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(&root.spki_der)
        .map_err(|e| PkiError::Key(format!("root key: {e}")))?;
    let mut cert = CertificateParams::default();
    let serial = CertificateSerial::generate();
    cert.serial_number = Some(rcgen::SerialNumber::from_slice(serial.as_bytes()));
    cert.distinguished_name = distinguished_name(&root.subject)?;
    cert.not_before = now - Duration::minutes(5);
    cert.not_after = root.not_after.min(signer.info().not_after);
    cert.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    cert.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    cert.use_authority_key_identifier_extension = true;
    cert.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(&root.spki_der));
    signer.sign_linted(&cert, &subject_key, false)
}

fn ca_params(
    params: &HierarchyParams,
    role: CaRole,
    now: OffsetDateTime,
    validity: Duration,
    path_len: u8,
) -> Result<CertificateParams, PkiError> {
    let mut cert = CertificateParams::default();
    let serial = CertificateSerial::generate();
    cert.serial_number = Some(rcgen::SerialNumber::from_slice(serial.as_bytes()));
    cert.distinguished_name = distinguished_name(&params.ca_subject(role))?;
    cert.not_before = now - Duration::minutes(5);
    cert.not_after = now + validity;
    cert.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    cert.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    cert.use_authority_key_identifier_extension = true;
    Ok(cert)
}

/// The EST server's TLS certificate, issued by `issuer` (the operational CA) for `names`
/// (DNS names and IP addresses).
pub fn server_certificate(
    issuer: &Issuer,
    spki_der: &[u8],
    organization: &str,
    names: &[String],
    validity: Duration,
    now: OffsetDateTime,
) -> Result<Vec<u8>, PkiError> {
    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| PkiError::Key(format!("server key: {e}")))?;
    let mut cert = CertificateParams::default();
    let serial = CertificateSerial::generate();
    cert.serial_number = Some(rcgen::SerialNumber::from_slice(serial.as_bytes()));
    let cn = names.first().cloned().unwrap_or_else(|| "localhost".into());
    cert.distinguished_name = distinguished_name(&[
        NameAttribute {
            oid: "2.5.4.10".into(),
            value: organization.to_string(),
        },
        NameAttribute {
            oid: "2.5.4.3".into(),
            value: cn,
        },
    ])?;
    cert.subject_alt_names = names
        .iter()
        .map(|n| {
            if n.parse::<std::net::IpAddr>().is_ok() {
                san(&format!("IP:{n}"))
            } else {
                san(&format!("DNS:{n}"))
            }
        })
        .collect::<Result<_, _>>()?;
    cert.not_before = now - Duration::minutes(5);
    cert.not_after = (now + validity).min(issuer.info().not_after);
    cert.is_ca = IsCa::ExplicitNoCa;
    // keyEncipherment (TLS 1.2 RSA key transport) only for an RSA key: RFC 8813 section 3
    // forbids it for EC keys, RFC 8410 section 5 for Ed25519.
    cert.key_usages = match PublicKeyKind::of_spki(spki_der).map_err(PkiError::Key)? {
        PublicKeyKind::Rsa { .. } => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        _ => vec![KeyUsagePurpose::DigitalSignature],
    };
    cert.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    cert.use_authority_key_identifier_extension = true;
    cert.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(spki_der));
    issuer.sign_linted(&cert, &subject_key, true)
}

/// What a certificate fleetca issues to one of its own services (OCSP responder, CMP
/// protection, SCEP RA) has of its own; the rest is common (see [`service_certificate`]).
pub(crate) struct ServiceProfile<'a> {
    /// The service, for error messages ("OCSP responder").
    pub(crate) what: &'a str,
    /// Appended to the CA's common name to make the service's ("OCSP Responder").
    pub(crate) cn_suffix: &'a str,
    pub(crate) key_usages: Vec<KeyUsagePurpose>,
    pub(crate) extended_key_usages: Vec<rcgen::ExtendedKeyUsagePurpose>,
    pub(crate) custom_extensions: Vec<rcgen::CustomExtension>,
}

/// id-kp-cmcRA (RFC 6402): a registration authority's certificate and messages.
pub(crate) fn cmc_ra() -> rcgen::ExtendedKeyUsagePurpose {
    rcgen::ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 28])
}

/// A certificate of `issuer` for one of fleetca's own services, to the key `spki_der`:
/// subject `<issuer's subject without CN>, CN=<issuer CN> <suffix>`, not a CA, valid from
/// five minutes ago for `validity` (never beyond the issuer), linted before signing.
pub(crate) fn service_certificate(
    issuer: &Issuer,
    spki_der: &[u8],
    validity: Duration,
    now: OffsetDateTime,
    profile: ServiceProfile<'_>,
) -> Result<Vec<u8>, PkiError> {
    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| PkiError::Key(format!("{} key: {e}", profile.what)))?;
    let mut cert = CertificateParams::default();
    let serial = CertificateSerial::generate();
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
        value: format!("{ca_cn} {}", profile.cn_suffix),
    });
    cert.distinguished_name = distinguished_name(&subject)?;
    cert.not_before = now - Duration::minutes(5);
    cert.not_after = (now + validity).min(issuer.info().not_after);
    cert.is_ca = IsCa::ExplicitNoCa;
    cert.key_usages = profile.key_usages;
    cert.extended_key_usages = profile.extended_key_usages;
    cert.use_authority_key_identifier_extension = true;
    cert.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(spki_der));
    cert.custom_extensions = profile.custom_extensions;
    issuer.sign_linted(&cert, &subject_key, true)
}

/// A delegated OCSP signing certificate for `issuer` (RFC 6960 §4.2.2.2): EKU
/// id-kp-OCSPSigning and `id-pkix-ocsp-nocheck`, so relying parties need not check its own
/// status; short-lived and renewed by fleetca.
pub fn ocsp_responder_certificate(
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
            what: "OCSP responder",
            cn_suffix: "OCSP Responder",
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            extended_key_usages: vec![rcgen::ExtendedKeyUsagePurpose::OcspSigning],
            // id-pkix-ocsp-nocheck ::= NULL
            custom_extensions: vec![rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5],
                vec![0x05, 0x00],
            )],
        },
    )
}

/// The certificate fleetca signs its CMP messages with (RFC 9483 section 3.2), issued by
/// the operational CA to a key of fleetca's own: subject `<CA subject without CN>,
/// CN=<CA CN> CMP`, digitalSignature, extended key usage id-kp-cmcRA.
pub fn cmp_protection_certificate(
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
            what: "CMP protection",
            cn_suffix: "CMP",
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            extended_key_usages: vec![cmc_ra()],
            custom_extensions: Vec::new(),
        },
    )
}

/// A factory station's TLS client credential, issued by the registration CA: subject
/// `O=<organization>, OU=Factory station, CN=<name>`, clientAuth.
pub fn station_certificate(
    issuer: &Issuer,
    spki_der: &[u8],
    organization: &str,
    name: &str,
    validity: Duration,
    now: OffsetDateTime,
) -> Result<Vec<u8>, PkiError> {
    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| PkiError::Key(format!("station key: {e}")))?;
    let mut cert = CertificateParams::default();
    let serial = CertificateSerial::generate();
    cert.serial_number = Some(rcgen::SerialNumber::from_slice(serial.as_bytes()));
    cert.distinguished_name = distinguished_name(&[
        NameAttribute {
            oid: "2.5.4.10".into(),
            value: organization.to_string(),
        },
        NameAttribute {
            oid: "2.5.4.11".into(),
            value: "Factory station".into(),
        },
        NameAttribute {
            oid: "2.5.4.3".into(),
            value: name.to_string(),
        },
    ])?;
    cert.not_before = now - Duration::minutes(5);
    cert.not_after = (now + validity).min(issuer.info().not_after);
    cert.is_ca = IsCa::ExplicitNoCa;
    cert.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    cert.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    cert.use_authority_key_identifier_extension = true;
    cert.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(spki_der));
    issuer.sign_linted(&cert, &subject_key, true)
}
