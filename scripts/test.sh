#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every test suite through
# ctest: lit (IR and tools), the C++ unit tests, and the Python tests.
# ctest's closing summary ("N% tests passed, M tests failed out of K") is the
# line CI reads; the exit code is non-zero on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "${DSV3_BUILD_DIR:-$ROOT/build}"
ctest --output-on-failure "$@"
