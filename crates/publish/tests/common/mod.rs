//! What the publisher's tests share: a root, an operational CA under it and the CA's
//! OCSP responder, all P-256, made at `now`.
#![allow(clippy::unwrap_used, dead_code)] // test code

use std::sync::Arc;

use fleetca_pki::{
    ocsp_responder_certificate, CaCertificate, CaRole, HierarchyParams, Issuer, KeyAlgorithm,
    OcspResponder,
};
use fleetca_publish::PublishedCa;
use time::OffsetDateTime;

/// The operational CA, as the publisher serves it.
pub fn operational_ca(now: OffsetDateTime) -> PublishedCa {
    let params = HierarchyParams::new("Scale");
    let root_key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let root_der = CaCertificate::root(root_key.as_ref(), &params, now)
        .unwrap()
        .der;
    let root = Issuer::new("root", root_der, root_key).unwrap();
    let op_key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let op_der = CaCertificate::issuing(&root, CaRole::Operational, op_key.as_ref(), &params, now)
        .unwrap()
        .der;
    let operational = Arc::new(Issuer::new("operational", op_der, op_key).unwrap());
    let responder_key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let responder_der = ocsp_responder_certificate(
        &operational,
        &responder_key.public_key_der(),
        time::Duration::days(30),
        now,
    )
    .unwrap();
    let responder = OcspResponder::new(
        operational.name(),
        operational.certificate_der(),
        &responder_der,
        responder_key,
    )
    .unwrap();
    PublishedCa {
        issuer: operational,
        responder: Arc::new(responder),
        active: true,
    }
}
