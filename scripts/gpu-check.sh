#!/usr/bin/env bash
# The GPU check of issue #6, in two halves (bench/gpu_check.py does the work):
#
#   scripts/gpu-check.sh prepare [BUNDLE]   here: set up and build, compile the golden cases and bench-450m
#                                           for the GPU (--chip via DSV3_GPU_CHIP, default sm_90a) and gather
#                                           what runs them into BUNDLE (default build/gpu-check, <= 64 MiB)
#   scripts/gpu-check.sh run [BUNDLE]       on a GPU machine (CUDA driver, python3 + numpy, no compiler):
#                                           golden cases, decode tokens/s, MLA decode bandwidth, expert GEMM
#                                           TFLOP/s; prints one JSON (also BUNDLE/result.json); < 8 minutes
#
# With the device tool: run `prepare` here, then `bash scripts/gpu-check.sh run` there with
# carry=["build/gpu-check"].
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-}"
BUNDLE="${2:-$ROOT/build/gpu-check}"
case "$MODE" in
  prepare)
    "$ROOT/scripts/setup.sh" >&2
    exec /usr/bin/python3 "$ROOT/bench/gpu_check.py" prepare --out "$BUNDLE" --chip "${DSV3_GPU_CHIP:-sm_90a}"
    ;;
  run)
    [ -f "$BUNDLE/bundle.json" ] || { echo "gpu-check: error: no bundle at $BUNDLE (run 'prepare' first)" >&2; exit 1; }
    # Whatever python3 has numpy (/usr/bin/python3 here, the image's own on the GPU machine).
    PY=python3
    "$PY" -c "import numpy" 2>/dev/null || PY=/usr/bin/python3
    # The whole check must finish within 8 minutes.
    exec timeout 480 "$PY" "$BUNDLE/gpu_check.py" run --bundle "$BUNDLE" --json-out "$BUNDLE/result.json"
    ;;
  *)
    echo "usage: scripts/gpu-check.sh prepare|run [BUNDLE]" >&2
    exit 2
    ;;
esac
