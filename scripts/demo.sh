#!/usr/bin/env bash
# The main job: sets everything up, generates a small random DeepSeek-V3-
# architecture checkpoint (HF layout), compiles it to a dsv3 module, and shows
# the dialect at work; then runs the numpy reference on the same checkpoint.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
BIN="${DSV3_BUILD_DIR:-$ROOT/build}/bin"
WORK="${DSV3_DEMO_DIR:-$ROOT/out/demo}"
mkdir -p "$WORK"
export PYTHONPATH="$ROOT/python"

echo "== 1. a random DeepSeek-V3-architecture checkpoint (preset 'tiny', bf16)"
/usr/bin/python3 -m dsv3.generate_model --preset tiny --out "$WORK/tiny" --seed 0 --dtype bf16
ls -l "$WORK/tiny"

echo "== 2. dsv3-compile: checkpoint -> dsv3 module ($WORK/tiny.mlir)"
"$BIN/dsv3-compile" "$WORK/tiny" --emit=dsv3 -o "$WORK/tiny.mlir" --print-timing
echo "   ops in the module:"
grep -oE '= dsv3\.[a-z_]+|scf\.for|func\.func [@a-z_ ]+' "$WORK/tiny.mlir" | sed 's/^= //' | sort | uniq -c

echo "== 3. dsv3-opt parses, verifies and prints it (the first MLA layer):"
"$BIN/dsv3-opt" "$WORK/tiny.mlir" -o "$WORK/tiny.roundtrip.mlir"
grep -m1 'dsv3.mla' "$WORK/tiny.roundtrip.mlir" | cut -c1-240

echo "== 4. the 61-layer 671B DeepSeek-V3 config (FP8) imports to a module of about the same size"
"$BIN/dsv3-compile" "$ROOT/test/data/configs/deepseek-v3-671b.json" --emit=dsv3 -o "$WORK/671b.mlir" --print-timing
wc -l "$WORK/tiny.mlir" "$WORK/671b.mlir"

echo "== 5. numpy reference: greedy tokens for prompt 1,2,3 (+8 new)"
/usr/bin/python3 -m dsv3.reference --checkpoint "$WORK/tiny" --tokens 1,2,3 --max-new-tokens 8 \
  --logits-out "$WORK/tiny.logits.npy"
