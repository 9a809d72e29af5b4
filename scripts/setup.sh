#!/usr/bin/env bash
# One-step set-up for dsv3 on a fresh Debian bookworm machine: installs every package the project needs
# (Debian's LLVM/MLIR 22 toolchain, build tools, Python test deps), checks for the CUDA toolkit, configures
# and builds into build/. Idempotent: re-running only rebuilds what changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${DSV3_BUILD_DIR:-$ROOT/build}"

PACKAGES=(
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools clang-22 lld-22 libomp-22-dev
  libfuzzer-22-dev libclang-rt-22-dev
  cmake ninja-build ccache nlohmann-json3-dev libgtest-dev
  libpcre2-dev libcpp-httplib-dev
  python3-numpy python3-pytest python3-matplotlib python3-regex
)
# node + npm run the tests' references (test/node). These machines' image ships a nodejs package that bundles
# npm (and conflicts with Debian's npm); elsewhere Debian's two packages provide them.
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

need_install=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_install+=("$p")
done
if [ ${#need_install[@]} -gt 0 ]; then
  echo "setup: installing ${need_install[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_install[@]}" >/dev/null
fi

# The CUDA toolkit (ptxas, fatbinary) is not a Debian package here; it ships with these machines in
# /usr/local/cuda. Without it the GPU compile tests are disabled, and we say so.
CUDA_ROOT="${CUDA_ROOT:-${CUDA_HOME:-/usr/local/cuda}}"
if [ -x "$CUDA_ROOT/bin/ptxas" ]; then
  echo "setup: CUDA toolkit found at $CUDA_ROOT ($("$CUDA_ROOT/bin/ptxas" --version | tail -n 1))"
  CUDA_FLAG=ON
else
  echo "setup: WARNING: no CUDA toolkit (ptxas) under $CUDA_ROOT: GPU code generation (cubin) tests are disabled"
  CUDA_FLAG=OFF
fi

# The tests' independent references come from the npm registry, pinned by test/node/package-lock.json:
# HF `tokenizers` (the Rust implementation, native binary), `@huggingface/jinja` (chat templates) and the
# official `openai` client (drives dsv3-serve).
if [ ! -d "$ROOT/test/node/node_modules" ] || [ "$ROOT/test/node/package-lock.json" -nt "$ROOT/test/node/node_modules" ]; then
  echo "setup: installing the tests' npm packages (test/node)"
  (cd "$ROOT/test/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules)
fi

cmake -G Ninja -S "$ROOT" -B "$BUILD_DIR" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
  -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
  -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
  -DDSV3_ENABLE_CUDA="$CUDA_FLAG" -DCUDA_ROOT="$CUDA_ROOT" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
echo "setup: built into $BUILD_DIR (tools in $BUILD_DIR/bin)"
