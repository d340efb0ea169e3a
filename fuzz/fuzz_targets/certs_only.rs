#![no_main]
// CMS certs-only messages (EST responses as a client reads them).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fleetca_pki::parse_certs_only(data);
});
