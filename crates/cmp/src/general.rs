//! `genm` → `genp` (RFC 9483 section 4.3): CA certificates, root CA update, certificate
//! request template, CRL update retrieval. The sender must be authenticated (a certificate
//! fleetca trusts, or a valid shared secret, which a genm does not consume).

use cmpv2::body::PkiBody;
use cmpv2::gen::InfoTypeAndValue;
use der::asn1::ObjectIdentifier;
use der::Decode;
use fleetca_est::FrontEndContext;
use time::OffsetDateTime;

use crate::authenticate::Verified;
use crate::message::{self, Reply};
use crate::{CmpError, CmpFrontEnd};

/// id-it-caCerts (RFC 9483 section 4.3.1).
const CA_CERTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.17");
/// id-it-rootCaCert (RFC 9483 section 4.3.2); answered with id-it-rootCaKeyUpdate.
const ROOT_CA_CERT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.20");
const ROOT_CA_KEY_UPDATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.18");
/// id-it-crlStatusList (RFC 9483 section 4.3.4); answered with id-it-crls.
const CRL_STATUS_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.22");
const CRLS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.23");
/// id-it-certReqTemplate (RFC 9483 section 4.3.3).
const CERT_REQ_TEMPLATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.19");

/// Answers a genm.
pub(crate) async fn answer(
    front: &CmpFrontEnd,
    infos: &[InfoTypeAndValue],
    context: &FrontEndContext,
    label: Option<&str>,
    reply: &Reply,
    verified: &Verified,
    now: OffsetDateTime,
) -> Result<Vec<u8>, CmpError> {
    let [info] = infos else {
        return Err(CmpError::BadRequest(
            "a genm asks for one InfoType (RFC 9483 section 4.3)".into(),
        ));
    };
    let answer = match info.oid {
        CA_CERTS => {
            let certificates = crate::authenticate::ca_certificates(context, label)?
                .iter()
                .map(|c| message::certificate_of(&c.der))
                .collect::<Result<Vec<_>, _>>()?;
            InfoTypeAndValue {
                oid: CA_CERTS,
                value: Some(der::Any::encode_from(&certificates).map_err(CmpError::internal)?),
            }
        }
        // No root CA update is announced over CMP (fleetca's rollover publishes link
        // certificates through EST cacerts): the absent value says "no update".
        ROOT_CA_CERT => InfoTypeAndValue {
            oid: ROOT_CA_KEY_UPDATE,
            value: None,
        },
        // The current CRLs of the issuing CAs (operational, manufacturing) as published;
        // the client's CRLStatus (source, thisUpdate) is not compared: it gets the newest.
        // No value when publication is off.
        CRL_STATUS_LIST => {
            let mut crls = Vec::new();
            for name in ["operational", "manufacturing"] {
                let Some(issuer) = front.ca.issuer(name) else {
                    continue;
                };
                if let Some(stored) = front
                    .store
                    .revocation
                    .stored_crl(&issuer.generation_name(), 0)
                    .await?
                {
                    crls.push(
                        x509_cert::crl::CertificateList::from_der(&stored.der)
                            .map_err(CmpError::internal)?,
                    );
                }
            }
            InfoTypeAndValue {
                oid: CRLS,
                value: (!crls.is_empty())
                    .then(|| der::Any::encode_from(&crls))
                    .transpose()
                    .map_err(CmpError::internal)?,
            }
        }
        // The profile decides every field: no template to fill (absent value).
        CERT_REQ_TEMPLATE => InfoTypeAndValue {
            oid: CERT_REQ_TEMPLATE,
            value: None,
        },
        other => {
            return Err(CmpError::BadRequest(format!(
                "InfoType {other} is not served (caCerts, rootCaCert, certReqTemplate, crlStatusList are)"
            )))
        }
    };
    let _ = verified;
    front.protect(
        reply,
        message::any_body(&PkiBody::GenP(vec![answer]))?,
        Some(verified),
        Vec::new(),
        now,
    )
}
