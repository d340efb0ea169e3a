#![no_main]
// The EST base64 body decoder, then the CSR parser on whatever it yields.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(der) = fleetca_est::decode_request_body(data) {
        let _ = fleetca_pki::CertificateRequest::from_der(&der);
    }
});
