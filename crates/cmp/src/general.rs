//! `genm` → `genp` (RFC 9483 section 4.3): CA certificates, root CA update, certificate
//! request template, CRL update retrieval. The sender must be authenticated (a certificate
//! fleetca trusts, or a valid shared secret, which a genm does not consume).

use cmpv2::body::PkiBody;
use cmpv2::gen::InfoTypeAndValue;
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use fleetca_est::{FrontEndContext, ServedCa};
use time::OffsetDateTime;
use x509_cert::Certificate;

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
        // The root the client trusts, and whether a newer one is served with a link
        // certificate it can verify with it (a root rollover); absent value: no update.
        ROOT_CA_CERT => {
            let old: Certificate = info
                .value
                .as_ref()
                .ok_or_else(|| {
                    CmpError::BadRequest(
                        "rootCaCert carries the root certificate the client trusts".into(),
                    )
                })?
                .decode_as()
                .map_err(|e| CmpError::BadRequest(format!("rootCaCert: {e}")))?;
            let update = root_update(crate::authenticate::ca_certificates(context, label)?, &old)?;
            InfoTypeAndValue {
                oid: ROOT_CA_KEY_UPDATE,
                value: update
                    .map(|u| der::Any::encode_from(&u))
                    .transpose()
                    .map_err(CmpError::internal)?,
            }
        }
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

/// `RootCaKeyUpdateContent` (RFC 9483 section 4.3.2, RFC 4210 section 5.3.19.15; the CMP
/// module's tags are explicit).
#[derive(Clone, Debug, PartialEq, Eq, der::Sequence)]
pub struct RootCaKeyUpdateContent {
    /// The new root, self-signed.
    pub new_with_new: Certificate,
    /// The new root's name and key certified by the old root (the link a client that
    /// trusts the old root verifies).
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub new_with_old: Option<Certificate>,
    /// The old root's name and key certified by the new root.
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub old_with_new: Option<Certificate>,
}

/// The root update for a client that trusts `old`: the newest root served under the label
/// that is newer than `old` and that `old` vouches for through a served link certificate
/// (NewWithOld), with that link and the reverse one when served. None when there is no such
/// root: the client's root is the newest, or nothing it could verify links to a newer one.
/// "Newer" is a later notBefore: the served links go both ways, so the certificates' times
/// are what orders the roots (two roots made within the same second are not ordered, and
/// no update is announced rather than a wrong one).
fn root_update(
    served: &[ServedCa],
    old: &Certificate,
) -> Result<Option<RootCaKeyUpdateContent>, CmpError> {
    let certificates = served
        .iter()
        .map(|c| Certificate::from_der(&c.der).map_err(CmpError::internal))
        .collect::<Result<Vec<_>, _>>()?;
    let subject = |c: &Certificate| {
        c.tbs_certificate
            .subject
            .to_der()
            .map_err(CmpError::internal)
    };
    let issuer = |c: &Certificate| {
        c.tbs_certificate
            .issuer
            .to_der()
            .map_err(CmpError::internal)
    };
    let key = |c: &Certificate| {
        c.tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(CmpError::internal)
    };
    let start = |c: &Certificate| c.tbs_certificate.validity.not_before.to_unix_duration();
    let (old_subject, old_key) = (subject(old)?, key(old)?);

    let mut newest: Option<&Certificate> = None;
    for c in &certificates {
        let self_issued = subject(c)? == issuer(c)?;
        if self_issued
            && key(c)? != old_key
            && start(c) > start(old)
            && newest.is_none_or(|n| start(c) > start(n))
        {
            newest = Some(c);
        }
    }
    let Some(new) = newest else {
        return Ok(None);
    };
    let (new_subject, new_key) = (subject(new)?, key(new)?);
    let mut new_with_old = None;
    let mut old_with_new = None;
    for c in &certificates {
        let (s, i, k) = (subject(c)?, issuer(c)?, key(c)?);
        if s == new_subject && k == new_key && i == old_subject && s != i {
            new_with_old = Some(c.clone());
        }
        if s == old_subject && k == old_key && i == new_subject && s != i {
            old_with_new = Some(c.clone());
        }
    }
    if new_with_old.is_none() {
        return Ok(None);
    }
    Ok(Some(RootCaKeyUpdateContent {
        new_with_new: new.clone(),
        new_with_old,
        old_with_new,
    }))
}
