#![no_main]
// Client certificates and stored certificates.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fleetca_pki::CertificateInfo::from_der(data);
});
