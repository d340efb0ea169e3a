//! The body of every fuzz target of fleetca, as plain functions over bytes.
//!
//! `fuzz/fuzz_targets/<name>.rs` (nightly, cargo-fuzz, libFuzzer) is one line calling
//! [`run`]`(name, data)`; the stable test `tests/replay.rs` runs the same function on
//! every seed of [`Target::seeds`] and on every past finding kept in
//! `fuzz/regressions/<name>/`, so CI keeps them fixed without a nightly toolchain.
//!
//! The targets reach past the first check of each parser: CSRs are built from the
//! fuzzer's bytes and signed with a fixed key (so the signature verifies and the subject,
//! attributes and extension request reach the RA and the CA's lint), OCSP requests can
//! name fixed CAs (deterministic keys, see [`fixed`]) so they reach `respond()`. A target
//! panics only where fleetca's own invariants break (an answer it signed that does not
//! parse back, a credential name with a colon): a crash is a finding.
//!
//! See `docs/fuzzing.md` for how to run them and what they do not cover.

pub mod agent_response;
pub mod basic_auth;
pub mod cmp;
pub mod config;
pub mod connectors;
pub mod csr;
mod der_writer;
pub mod fixed;
pub mod ocsp;
pub mod parsers;
pub mod scep;
pub mod serverkeygen;

/// A fuzz target: its name (the binary under `fuzz/`), its body, its seed corpus.
pub struct Target {
    /// The cargo-fuzz target name.
    pub name: &'static str,
    /// The body: never fails, panics only on a broken invariant (a finding).
    pub run: fn(&[u8]),
    /// Seed inputs, generated (never committed as binary blobs).
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every fuzz target, in the order `fuzz/run.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "certificate",
        run: parsers::certificate,
        seeds: parsers::certificate_seeds,
    },
    Target {
        name: "certs_only",
        run: parsers::certs_only,
        seeds: parsers::certs_only_seeds,
    },
    Target {
        name: "est_body",
        run: parsers::est_body,
        seeds: parsers::est_body_seeds,
    },
    Target {
        name: "csr",
        run: csr::run,
        seeds: csr::seeds,
    },
    Target {
        name: "ocsp_request",
        run: ocsp::request,
        seeds: ocsp::request_seeds,
    },
    Target {
        name: "ocsp_get",
        run: ocsp::get,
        seeds: ocsp::get_seeds,
    },
    Target {
        name: "agent_response",
        run: agent_response::run,
        seeds: agent_response::seeds,
    },
    Target {
        name: "serverkeygen",
        run: serverkeygen::run,
        seeds: serverkeygen::seeds,
    },
    Target {
        name: "connectors",
        run: connectors::run,
        seeds: connectors::seeds,
    },
    Target {
        name: "config",
        run: config::run,
        seeds: config::seeds,
    },
    Target {
        name: "basic_auth",
        run: basic_auth::run,
        seeds: basic_auth::seeds,
    },
    Target {
        name: "cmp_message",
        run: cmp::run,
        seeds: cmp::seeds,
    },
    Target {
        name: "scep_message",
        run: scep::run,
        seeds: scep::seeds,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Runs the target called `name` on `data`: what `fuzz/fuzz_targets/<name>.rs` calls.
pub fn run(name: &str, data: &[u8]) {
    match target(name) {
        Some(t) => (t.run)(data),
        None => unreachable!("no fuzz target named {name}"),
    }
}

/// `data` as (first byte, rest): the selector of targets that cover several parsers.
pub(crate) fn selector(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(s, rest)| (*s, rest))
}

/// `selector` then `rest`, as a seed.
pub(crate) fn with_selector(selector: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(rest.len() + 1);
    v.push(selector);
    v.extend_from_slice(rest);
    v
}
