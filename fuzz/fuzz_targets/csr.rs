#![no_main]
// PKCS#10 parsing and proof-of-possession verification of an EST request body.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fleetca_pki::CertificateRequest::from_der(data);
});
