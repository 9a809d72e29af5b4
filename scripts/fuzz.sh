#!/usr/bin/env bash
# Builds the libFuzzer harnesses (test/Fuzz, clang-22, ASan+UBSan) into build-fuzz/ and runs each for SECONDS
# (default 60), then prints per harness: executions, coverage (libFuzzer's final cov/ft), crashes.
#
#   bash scripts/fuzz.sh [SECONDS] [HARNESS ...]     # e.g. bash scripts/fuzz.sh 300   (docs/reliability.md)
#
# Before fuzzing, each harness replays test/Fuzz/regressions/<harness>/ (inputs that once broke a parser, and
# hostile inputs too large for the fuzzer to build, e.g. JSON nested 100 000 deep) and its seeds (test/Fuzz/corpus/<harness>/). The growing corpus lives in build-fuzz/corpus/<harness>/; a crashing
# input is written to build-fuzz/crashes/<harness>/ (copy it into test/Fuzz/regressions/<harness>/ with the
# fix). Exit status: non-zero when any harness crashed, leaked, timed out or ran out of memory. Runs under
# `nice`: the machine has two cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${DSV3_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_EACH="${1:-60}"
shift || true
ALL=(safetensors config manifest tokenizer serve_request)
[ $# -gt 0 ] && HARNESSES=("$@") || HARNESSES=("${ALL[@]}")

LAUNCHER=()
command -v ccache >/dev/null 2>&1 && LAUNCHER=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
nice -n 10 cmake -G Ninja -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 "${LAUNCHER[@]}" -DDSV3_ENABLE_FUZZERS=ON >/dev/null
nice -n 10 cmake --build "$BUILD" -j "${DSV3_FUZZ_JOBS:-2}" --target $(printf 'fuzz_%s ' "${HARNESSES[@]}")

failed=0
summary=()
for h in "${HARNESSES[@]}"; do
  bin="$BUILD/fuzz/fuzz_$h"
  corpus="$BUILD/corpus/$h"
  crashes="$BUILD/crashes/$h"
  log="$BUILD/logs/fuzz_$h.log"
  mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
  before=$(find "$crashes" -type f | wc -l)
  status=ok
  # 1. Regressions: every input that once crashed this harness, run once each.
  reg="$ROOT/test/Fuzz/regressions/$h"
  if [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ]; then
    if ! nice -n 10 "$bin" -runs=1 "$reg"/* >"$log.regressions" 2>&1; then
      echo "fuzz: $h: a regression input fails again (see $log.regressions)" >&2
      status=REGRESSION
    fi
  fi
  # 2. Fuzz for SECONDS_EACH, starting from the seeds and the corpus of earlier runs.
  set +e
  nice -n 10 "$bin" "$corpus" "$ROOT/test/Fuzz/corpus/$h" \
    -max_total_time="$SECONDS_EACH" -dict="$ROOT/test/Fuzz/fuzz.dict" -artifact_prefix="$crashes/" \
    -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  final=$(grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)' "$log" | tail -n 1)
  [ -n "$final" ] || final=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$final")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$final")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$final")
  found=$(( $(find "$crashes" -type f | wc -l) - before ))
  if [ "$rc" -ne 0 ] || [ "$found" -gt 0 ]; then
    status=CRASH
    echo "fuzz: $h: exit $rc; the input and report: $crashes/, $log" >&2
    grep -E 'ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer|libFuzzer|LeakSanitizer)|runtime error:|dsv3 fuzz' "$log" | head -n 5 >&2 || true
  fi
  [ "$status" = ok ] || failed=1
  summary+=("$(printf '%-14s %10s execs  cov %6s  ft %7s  corpus %6s  new crashes %s  %s' \
    "$h" "${execs:-0}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$found" "$status")")
done
echo "fuzz: ${SECONDS_EACH} s per harness"
printf '%s\n' "${summary[@]}"
exit "$failed"
