#!/usr/bin/env bash
# Configures and builds into build/ (CUDA kernels too when nvcc is found). Extra arguments go to
# CMake, e.g. scripts/build.sh -DND_CUDA=OFF or -DND_CUDA_ARCHITECTURES="80;90".
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >build-configure.log 2>&1 ||
  { cat build-configure.log; exit 1; }
grep -E "CUDA build|CPU-only build" build-configure.log || true
cmake --build build -j"$jobs"
