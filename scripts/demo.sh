#!/usr/bin/env bash
# The main job: sets everything up, generates a small random DeepSeek-V3-
# architecture checkpoint (HF layout), compiles it for this CPU, runs it with
# dsv3-run (prefill + greedy decode) and prints the tokens and the throughput;
# then checks the same prompt against the numpy reference, compiles the 671B
# config, and (with the CUDA toolkit) compiles the model for NVIDIA GPUs and
# runs it there if this machine has one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
BIN="${DSV3_BUILD_DIR:-$ROOT/build}/bin"
WORK="${DSV3_DEMO_DIR:-$ROOT/out/demo}"
mkdir -p "$WORK"
export PYTHONPATH="$ROOT/python"
PROMPT=1,2,3,4,5,6,7,8

echo "== 1. a random DeepSeek-V3-architecture checkpoint (preset 'tiny', bf16) with the test tokenizer"
# (test/data/tokenizer: byte-level BPE trained by python/dsv3/train_tokenizer.py, DeepSeek-V3's pre-tokenizer,
# special tokens and chat template; the vocab is sized to it)
/usr/bin/python3 -m dsv3.generate_model --preset tiny --out "$WORK/tiny" --seed 0 --dtype bf16 \
  --tokenizer "$ROOT/test/data/tokenizer"
ls -l "$WORK/tiny"

echo "== 2. dsv3-compile: checkpoint -> artifact (shared library + manifest.json)"
rm -rf "$WORK/tiny.artifact"
"$BIN/dsv3-compile" "$WORK/tiny" -o "$WORK/tiny.artifact" --max-seq-len 256
ls -l "$WORK/tiny.artifact"

echo "== 3. dsv3-run: prefill the prompt $PROMPT, decode 16 tokens greedily"
"$BIN/dsv3-run" "$WORK/tiny.artifact" --weights "$WORK/tiny" --tokens "$PROMPT" \
  --max-new-tokens 16 --logits-out "$WORK/tiny.logits.npy" --stats-out "$WORK/tiny.stats.json"

echo "== 3b. text in, text out: the checkpoint's tokenizer encodes the prompt; the reply streams as it is generated"
"$BIN/dsv3-run" "$WORK/tiny.artifact" --weights "$WORK/tiny" --prompt "The quick brown fox" --max-new-tokens 16 \
  --print-ids
printf 'Hello!\nAnd once more?\n' | "$BIN/dsv3-run" "$WORK/tiny.artifact" --weights "$WORK/tiny" --chat \
  --system "You are a random model." --max-new-tokens 12

echo "== 3c. dsv3-serve: the OpenAI-compatible server (continuous batching), queried with curl"
PORT_FILE="$WORK/serve.port"
rm -f "$PORT_FILE"
"$BIN/dsv3-serve" "$WORK/tiny.artifact" --weights "$WORK/tiny" --host 127.0.0.1 --port 0 >"$PORT_FILE" 2>"$WORK/serve.log" &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  PORT="$(grep -o 'http://127.0.0.1:[0-9]*' "$PORT_FILE" 2>/dev/null | head -n 1 | sed 's/.*://')" || true
  [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -s "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}'
echo
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true
trap - EXIT

echo "== 4. the numpy reference on the same prompt (independent implementation)"
/usr/bin/python3 -m dsv3.reference --checkpoint "$WORK/tiny" --tokens "$PROMPT" --max-new-tokens 16 \
  --kv-cache-dtype bf16 --logits-out "$WORK/tiny.reference.npy"
/usr/bin/python3 - "$WORK" <<'PY'
import sys, numpy as np
work = sys.argv[1]
compiled = np.load(f"{work}/tiny.logits.npy")
reference = np.load(f"{work}/tiny.reference.npy")
rows = min(len(compiled), len(reference))
rel = np.abs(compiled[:rows] - reference[:rows]).max() / np.abs(reference[:rows]).max()
same = (compiled[:rows].argmax(-1) == reference[:rows].argmax(-1)).all()
print(f"compiled vs reference: max |dlogit| / max |logit| = {rel:.2e}, greedy tokens identical: {bool(same)}")
PY

echo "== 5. the 61-layer 671B DeepSeek-V3 config (FP8) compiles for this CPU too"
rm -rf "$WORK/671b.artifact"
"$BIN/dsv3-compile" "$ROOT/test/data/configs/deepseek-v3-671b.json" -o "$WORK/671b.artifact"

CUDA_ROOT="${CUDA_ROOT:-${CUDA_HOME:-/usr/local/cuda}}"
if [ -x "$CUDA_ROOT/bin/ptxas" ]; then
  echo "== 6. the same model for NVIDIA GPUs: every op in kernels, cubins (sm_90a) assembled by ptxas here"
  rm -rf "$WORK/tiny.gpu"
  "$BIN/dsv3-compile" "$WORK/tiny" -o "$WORK/tiny.gpu" --target cuda
  if "$BIN/dsv3-run" "$WORK/tiny.gpu" --weights "$WORK/tiny" --tokens "$PROMPT" --max-new-tokens 16; then
    :
  else
    echo "(no GPU here: that is the runtime's one-line answer; see docs/gpu-backend.md and scripts/gpu-check.sh)"
  fi
fi
