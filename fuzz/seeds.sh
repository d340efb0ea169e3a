#!/usr/bin/env bash
# Generates the seed corpus of every fuzz target (or of those named) into
# fuzz/corpus/<target>/seed-NNN. The seeds come from crates/fuzzing (fixed keys and CAs,
# CSRs, OCSP requests, certs-only bodies, configuration files...): nothing binary is
# committed. Stable toolchain; honours CARGO_TARGET_DIR.
#   fuzz/seeds.sh                 all targets
#   fuzz/seeds.sh csr ocsp_get    those two
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p fleetca-fuzzing --example seeds -- fuzz/corpus "$@"
