#![no_main]
// OCSP requests as the responder receives them (POST body or decoded GET path).
use std::sync::{Arc, OnceLock};

use fleetca_pki::*;

fn responders() -> &'static [Arc<OcspResponder>] {
    static R: OnceLock<Vec<Arc<OcspResponder>>> = OnceLock::new();
    R.get_or_init(|| {
        let now = time::OffsetDateTime::now_utc();
        let key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
        let root = CaCertificate::root(key.as_ref(), &HierarchyParams::new("Fuzz"), now).unwrap();
        let ca = Issuer::new("root", root.der.clone(), key).unwrap();
        let rkey = Arc::new(KeyAlgorithm::P256.generate().unwrap());
        let rcert =
            ocsp_responder_certificate(&ca, &rkey.public_key_der(), time::Duration::days(30), now)
                .unwrap();
        vec![Arc::new(
            OcspResponder::new("root", ca.certificate_der(), &rcert, rkey).unwrap(),
        )]
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = parse_ocsp_request(data, responders());
});
