#!/usr/bin/env bash
# Set-up + all tests: installs dependencies, builds, runs every test through CTest, then the CUDA
# path in the device-emulation build (scripts/test_emu.sh). The nvcc build's CUDA test binary
# reports "skipped" without a GPU (set ND_REQUIRE_GPU=1 to make that a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh "$@"
cd build
# Two at a time: the CPU suite runs beside the shorter script tests (each test makes its own
# temporary folders, so they do not meet).
ctest --output-on-failure -j"$(nproc 2>/dev/null || echo 2)"
cd ..
bash scripts/test_emu.sh
