#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every test suite through
# ctest: lit (IR and tools), the C++ unit tests, and the Python tests.
# ctest's closing summary ("N% tests passed, M tests failed out of K") is the
# line CI reads; the exit code is non-zero on any failure.
#
#   bash scripts/test.sh --sanitize
# instead builds the parts without MLIR/LLVM (model readers, runtime,
# tokenizer, dsv3-run, the server's request parser, their unit tests) with
# ASan+UBSan into build-sanitize/
# and runs, clean of any sanitizer report: the C++ unit tests, the runtime's
# lit tests with the sanitized dsv3-run / libdsv3rt (artifacts compiled by
# the normal build's dsv3-compile), every golden model end to end, and the
# sanitized dsv3-serve under the node tests (docs/reliability.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "${1:-}" = "--sanitize" ]; then
  shift
  # The normal build provides dsv3-compile (the compiler is not sanitized:
  # LLVM's own code is outside this project's reach) and the lit tools.
  [ "${DSV3_SKIP_SETUP:-0}" = 1 ] || "$ROOT/scripts/setup.sh"
  NORMAL="${DSV3_BUILD_DIR:-$ROOT/build}"
  SAN="${DSV3_SANITIZE_BUILD_DIR:-$ROOT/build-sanitize}"
  start=$(date +%s)
  launcher=()
  command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  # -O1: ASan's usual level; fast to compile and still inlines enough to run.
  cmake -G Ninja -S "$ROOT" -B "$SAN" -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 "${launcher[@]}" \
    -DDSV3_RUNTIME_ONLY=ON -DDSV3_SANITIZE=address,undefined >/dev/null
  nice -n 10 cmake --build "$SAN" -j "$(nproc)" --target dsv3-model-tests dsv3-runtime-tests \
    dsv3-tokenizer-tests dsv3-serve-tests dsv3-run dsv3-serve dsv3rt dsv3-fake-model dsv3rt-c-host

  # Every report goes to a file; any file fails the run, whatever the exit
  # status of the process that wrote it (an error test expects exit 1).
  logs="$SAN/sanitizer-logs"
  rm -rf "$logs" && mkdir -p "$logs"
  export ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
  export UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=1"
  status=0

  echo "sanitize: C++ unit tests"
  (cd "$SAN" && ctest --output-on-failure -R '^(model-unit-tests|runtime-unit-tests|tokenizer|serve-unit-tests)$') || status=1

  echo "sanitize: runtime lit tests with the sanitized dsv3-run and libdsv3rt"
  mkdir -p "$SAN/test"
  for tool in dsv3-compile dsv3-opt; do ln -sf "$NORMAL/bin/$tool" "$SAN/bin/$tool"; done
  sed -e "s|\"$NORMAL\"|\"$SAN\"|" -e "s|\"$NORMAL/bin\"|\"$SAN/bin\"|" \
    "$NORMAL/test/lit.site.cfg.py" >"$SAN/test/lit.site.cfg.py"
  # Not c-api.test: its C host (test/Runtime/Inputs/c_host.c) does not free
  # its own buffers before exiting, which LeakSanitizer reports.
  /usr/lib/llvm-22/bin/lit -sv "$SAN/test" \
    --filter 'Runtime/(errors|generate|compiled-golden|adversarial)\.test' || status=1

  echo "sanitize: golden models end to end (dsv3-compile, sanitized dsv3-run, golden tokens and logits)"
  for case_dir in "$ROOT"/test/data/golden/*/; do
    case_name=$(basename "$case_dir")
    art="$SAN/e2e/$case_name"
    rm -rf "$art"
    # f32 cache: the official implementation's numerics, which the 1e-4 bound below is for.
    "$NORMAL/bin/dsv3-compile" "$case_dir" --max-batch 2 --max-seq-len 32 --kv-cache-dtype=f32 -o "$art" >/dev/null
    read -r tokens new expected < <(/usr/bin/python3 -c "
import json, sys
g = json.load(open(sys.argv[1]))
print(','.join(map(str, g['tokens'])), g['max_new_tokens'], ','.join(map(str, g['greedy_tokens'][:g['max_new_tokens']])))
" "$case_dir/golden.json")
    out=$("$SAN/bin/dsv3-run" "$art" --weights "$case_dir" --tokens "$tokens" --max-new-tokens "$new" \
      --logits-out "$art/logits.npy" --threads 2) || { echo "sanitize: $case_name: dsv3-run failed"; status=1; continue; }
    got=$(sed -n 's/^sequence 0: //p' <<<"$out")
    if [ "$got" != "$expected" ] || ! /usr/bin/python3 -c "
import numpy as np, sys
a, g = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == g.shape, (a.shape, g.shape)
err = np.abs(a - g).max() / np.abs(g).max()
assert err < 1e-4, err
" "$art/logits.npy" "$case_dir/logits.npy"; then
      echo "sanitize: $case_name: tokens $got, golden $expected (or the logits differ)"
      status=1
    else
      echo "sanitize: $case_name: golden tokens $got"
    fi
  done

  if command -v node >/dev/null 2>&1 && [ -d "$ROOT/test/node/node_modules" ]; then
    echo "sanitize: the sanitized dsv3-serve under the official openai client and 200 good and bad requests"
    # ASan's allocator keeps freed memory in quarantine: the robustness
    # test's RSS bound is the normal build's to check.
    (export DSV3_BUILD_DIR="$SAN" DSV3_SERVE_FIXTURE_DIR="$SAN/test/Serve/fixture" \
        DSV3_SERVE_RSS_TOLERANCE_KB=4000000
     node "$ROOT/test/node/serve-fixture.mjs" >/dev/null &&
       node --test "$ROOT/test/node/serve.test.mjs" "$ROOT/test/node/serve-robustness.test.mjs") || status=1
  else
    echo "sanitize: node or test/node/node_modules missing: dsv3-serve not run (scripts/setup.sh installs them)"
    status=1
  fi

  reports=$(find "$logs" -type f | wc -l)
  if [ "$reports" -gt 0 ]; then
    echo "sanitize: $reports sanitizer report(s):"
    for f in "$logs"/*; do echo "== $f"; head -n 40 "$f"; done
    status=1
  fi
  echo "sanitize: $(( $(date +%s) - start )) s; sanitizer reports: $reports"
  if [ "$status" -eq 0 ]; then echo "sanitize: 1 passed, 0 failed"; else echo "sanitize: 0 passed, 1 failed"; fi
  exit "$status"
fi

"$ROOT/scripts/setup.sh"
cd "${DSV3_BUILD_DIR:-$ROOT/build}"
ctest --output-on-failure "$@"
