#![no_main]
// The body is fleetca_fuzzing's `scep_message` target (crates/fuzzing), which the stable test
// crates/fuzzing/tests/replay.rs runs on the seeds and past findings.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fleetca_fuzzing::run("scep_message", data));
