#!/usr/bin/env bash
# Runs fuzz targets one after another, each for SECONDS of wall time, and prints per target
# the executions, the final coverage (libFuzzer's cov and ft) and the findings (crash,
# timeout, out-of-memory inputs written to fuzz/artifacts/<target>/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      default: 60 seconds, every target
#
# Needs the nightly toolchain and cargo-fuzz (docs/fuzzing.md). The seed corpus is
# (re)generated first with fuzz/seeds.sh; the corpus grows in fuzz/corpus/<target>/, logs go
# to fuzz/logs/<target>.log. Fuzzers run under `nice -n ${FUZZ_NICE:-19}` so that they only
# take idle CPU. Exit status 1 if any target found something.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^fleetca-fuzz$')
fi
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
# The fuzz build keeps its own target directory (fuzz/target), whatever the stable one is.
env -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET nice -n "${FUZZ_NICE:-19}" cargo +nightly fuzz build
for t in "${targets[@]}"; do
  [ -d "corpus/$t" ] || ./seeds.sh "$t" >/dev/null
done
mkdir -p logs
summary="logs/summary-$(date -u +%Y%m%dT%H%M%SZ).txt"
printf '%-16s %8s %12s %8s %8s %s\n' target seconds executions cov ft findings | tee "$summary"
status=0
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t"
  before="$(find "artifacts/$t" -type f | wc -l)"
  start="$(date +%s)"
  set +e
  nice -n "${FUZZ_NICE:-19}" "target/$triple/release/$t" "corpus/$t" \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1
  rc=$?
  set -e
  elapsed=$(( $(date +%s) - start ))
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)"
  last="$(grep -E '^#[0-9]+.*cov: ' "logs/$t.log" | tail -1 || true)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
  found=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
  findings="none"
  if [ "$rc" -ne 0 ] || [ "$found" -gt 0 ]; then
    findings="$found new in fuzz/artifacts/$t (exit $rc; see fuzz/logs/$t.log)"
    status=1
  fi
  printf '%-16s %8s %12s %8s %8s %s\n' "$t" "$elapsed" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$findings" | tee -a "$summary"
done
echo "summary: fuzz/$summary"
exit "$status"
