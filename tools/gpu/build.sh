#!/usr/bin/env bash
# Builds the release `avdm` with the `cuda` backend (with --wgpu, `cuda` and `wgpu` in the same
# binary, so that one carried file runs the GPU check's CUDA and Vulkan rows) on a machine that
# reaches only the package registries, and strips and packs it for a GPU machine.
#
#   tools/gpu/build.sh [--wgpu]       -> target/gpu/avdm-cuda and avdm-cuda.xz
#
# Burn 0.22.1's `cuda` brings cubecl-cuda 0.11.3, whose LLVM NVPTX path statically links an
# LLVM that `tracel-llvm-bundler`'s build script downloads from GitHub unless it finds one
# installed under the user's data folder (`tracel/tracel-llvm-23.1.0-4`, with a sentinel file
# `.tracel-llvm-installed` and `bin/llvm-config`). This script lays Debian's LLVM 22 there
# (book: benchmarks, "GPU"; ../shared/docs/reference/cuda-offline-build.md):
# - llvm-22-dev (static libraries with NVPTX, llvm-config), libpolly-22-dev (its llvm-config
#   lists Polly), libzstd-dev;
# - a `liblibz3.so` link: llvm-config --system-libs prints libz3 as a full path, which the
#   bundler turns into `-llibz3`.
# About 20 minutes from scratch on 2 cores (its own target dir, target/cuda).
set -euo pipefail
cd "$(dirname "$0")/../.."
FEATURES=cuda
[ "${1:-}" = "--wgpu" ] && FEATURES=cuda,wgpu

if ! dpkg -s llvm-22-dev libpolly-22-dev libzstd-dev >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends llvm-22-dev llvm-22 libpolly-22-dev libzstd-dev >/dev/null
fi
LLVM=/usr/lib/llvm-22
DATA="${XDG_DATA_HOME:-$HOME/.local/share}/tracel"
mkdir -p "$DATA"
ln -sfn "$LLVM" "$DATA/tracel-llvm-23.1.0-4"
touch "$LLVM/.tracel-llvm-installed"
Z3=$(ls /usr/lib/x86_64-linux-gnu/libz3.so* 2>/dev/null | head -1 || true)
if [ -n "$Z3" ] && [ ! -e "$LLVM/lib/liblibz3.so" ]; then
    ln -sf "$Z3" "$LLVM/lib/liblibz3.so"
fi
echo "LLVM for the bundler: $DATA/tracel-llvm-23.1.0-4 -> $LLVM ($("$LLVM/bin/llvm-config" --version))"

mkdir -p target/gpu
CARGO_TARGET_DIR=target/cuda cargo build --release -p avdm-cli --features "$FEATURES"
cp target/cuda/release/avdm target/gpu/avdm-cuda
strip target/gpu/avdm-cuda
# -9e: the working tree and the carried files share 64 MiB.
xz -9e -T0 -kf target/gpu/avdm-cuda
ls -l target/gpu/avdm-cuda target/gpu/avdm-cuda.xz
target/gpu/avdm-cuda --version
echo "carry target/gpu/avdm-cuda.xz; on the GPU machine: xz -dk target/gpu/avdm-cuda.xz"
