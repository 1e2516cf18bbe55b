#!/usr/bin/env bash
# Builds (or checks) normstyle with `--features cuda` on a machine without a CUDA installation,
# using NVIDIA's pip wheels for the compiler, installed apart from the
# Python environment (torch pulls newer nvvm/crt/cccl/runtime wheels into site-packages):
#   pip install --no-deps --target /tmp/cuda130 "nvidia-cuda-nvcc==13.0.88" \
#       "nvidia-nvvm==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-cuda-cccl==13.0.85" \
#       "nvidia-cuda-runtime==13.0.96"
# Every part must be the same release: a newer nvvm emits PTX the 13.0 ptxas refuses, and newer
# cccl/runtime headers stop nvcc 13.0 with "compiler and toolkit headers are incompatible".
# Kernels are compiled for sm_90 (H100/H200); set CUDA_COMPUTE_CAP for other cards.
#
#   scripts/build_cuda.sh check    # compile everything, no link (no libcuda.so needed)
#   scripts/build_cuda.sh build    # link too: needs libcuda.so (the driver) or a stub of it
set -euo pipefail
cd "$(dirname "$0")/.."
NV="${CUDA_WHEELS:-/tmp/cuda130}/nvidia/cu13"
export PATH="$NV/bin:$PATH" CUDA_ROOT="$NV" CUDA_PATH="$NV"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
case "${1:-check}" in
  check) cargo check --release --features cuda ;;
  build) cargo build --release --features cuda ;;
  *) echo "usage: $0 check|build" >&2; exit 2 ;;
esac
