use std::fmt;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::{CertificateSerial, PkiError};

/// OID of the X.520 `serialNumber` attribute, which carries the device serial number
/// (IEEE 802.1AR).
pub const SERIAL_NUMBER_OID: &str = "2.5.4.5";

/// One attribute of a distinguished name, compared by type and string value (not by ASN.1
/// string type: a `PrintableString` and a `UTF8String` with the same text are equal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAttribute {
    /// Dotted OID of the attribute type.
    pub oid: String,
    /// The attribute's text.
    pub value: String,
}

impl NameAttribute {
    /// A short name for messages (`CN`, `serialNumber`, or the dotted OID).
    pub fn short_name(&self) -> &str {
        short_name(&self.oid)
    }
}

impl fmt::Display for NameAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.short_name(), self.value)
    }
}

pub(crate) fn short_name(oid: &str) -> &str {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        other => other,
    }
}

/// Flattens a name into its attributes in order. Values that are not strings are an error.
pub(crate) fn name_attributes(name: &X509Name<'_>) -> Result<Vec<NameAttribute>, String> {
    let mut out = Vec::new();
    for attr in name.iter_attributes() {
        let oid = attr.attr_type().to_id_string();
        let value = attr
            .as_str()
            .map_err(|_| format!("name attribute {} is not a string", short_name(&oid)))?
            .to_string();
        out.push(NameAttribute { oid, value });
    }
    Ok(out)
}

/// Renders attributes the way people read them: `CN=a, serialNumber=b`.
pub(crate) fn display_name(attrs: &[NameAttribute]) -> String {
    let parts: Vec<String> = attrs.iter().map(ToString::to_string).collect();
    parts.join(", ")
}

/// What fleetca needs to know about a certificate (a client's, or one from the inventory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Serial number.
    pub serial: CertificateSerial,
    /// Subject attributes, in order.
    pub subject: Vec<NameAttribute>,
    /// Issuer attributes, in order.
    pub issuer: Vec<NameAttribute>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// subjectAltName entries, rendered as `DNS:x`, `URI:y`, `IP:z`, ...
    pub subject_alt_names: Vec<String>,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// Whether basicConstraints says CA.
    pub is_ca: bool,
    /// The subject Name exactly as encoded (DER SEQUENCE), e.g. for TLS CA hints.
    pub subject_der: Vec<u8>,
}

impl CertificateInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::MalformedCertificate(
                "trailing data after the certificate".into(),
            ));
        }
        Self::from_parsed(&cert)
    }

    pub(crate) fn from_parsed(cert: &X509Certificate<'_>) -> Result<Self, PkiError> {
        let serial = CertificateSerial::from_slice(cert.raw_serial()).ok_or_else(|| {
            PkiError::MalformedCertificate("serial number is zero or longer than 20 bytes".into())
        })?;
        let subject = name_attributes(cert.subject()).map_err(PkiError::MalformedCertificate)?;
        let issuer = name_attributes(cert.issuer()).map_err(PkiError::MalformedCertificate)?;
        let mut subject_alt_names = Vec::new();
        let mut is_ca = false;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        subject_alt_names.push(render_general_name(name));
                    }
                }
                ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
                _ => {}
            }
        }
        Ok(Self {
            serial,
            subject,
            issuer,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            subject_alt_names,
            spki_der: cert.public_key().raw.to_vec(),
            is_ca,
            subject_der: cert.subject().as_raw().to_vec(),
        })
    }

    /// The device serial number: the subject's `serialNumber` attribute, if any.
    pub fn device_serial(&self) -> Option<&str> {
        self.subject
            .iter()
            .find(|a| a.oid == SERIAL_NUMBER_OID)
            .map(|a| a.value.as_str())
    }

    /// The subject as people read it.
    pub fn subject_display(&self) -> String {
        display_name(&self.subject)
    }

    /// The issuer as people read it.
    pub fn issuer_display(&self) -> String {
        display_name(&self.issuer)
    }
}

pub(crate) fn render_general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::IPAddress(ip) => match ip.len() {
            4 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(ip);
                format!("IP:{}", std::net::Ipv4Addr::from(b))
            }
            16 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(ip);
                format!("IP:{}", std::net::Ipv6Addr::from(b))
            }
            _ => format!("IP:{}", hex::encode(ip)),
        },
        other => format!("other:{other:?}"),
    }
}
