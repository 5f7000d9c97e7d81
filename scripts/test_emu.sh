#!/usr/bin/env bash
# Set-up + the device-emulation build + the CUDA path executed on the CPU (docs/gpu.md,
# "Emulation"): the same .cu sources compiled as C++ against the emulator in emu/, built in
# build-emu/, then
#   1. the emulator's self-tests (nd_emu_tests: one broken kernel or call per fault class);
#   2. every nd_cuda_tests case, none skipped, under two thread orders (natural, then warp:
#      one warp runs ahead of the others between block barriers);
#   3. nd-train and nd-infer on --device cuda against --device cpu, and two NCCL ranks against
#      one (test/scripts/emu_train_test.sh).
# scripts/sanitize.sh runs the same suites under AddressSanitizer at ND_TEST_SMALL=1 sizes.
# A green run here is not a GPU run: docs/gpu.md says what only a GPU can show.
#   scripts/test_emu.sh [extra CMake arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build-emu -DCMAKE_BUILD_TYPE=Release -DND_CUDA_EMULATION=ON "$@" \
  >build-emu-configure.log 2>&1 || { cat build-emu-configure.log; exit 1; }
cmake --build build-emu -j"$jobs" --target nd_emu_tests nd_cuda_tests nd-train nd-infer \
  nd-bench-train
start=$(date +%s)
build-emu/bin/nd_emu_tests
for order in natural warp; do
  echo "test_emu.sh: nd_cuda_tests, thread order $order"
  ND_EMU_ORDER=$order build-emu/bin/nd_cuda_tests
done
mpirun=$(command -v mpirun || true)
bash test/scripts/emu_train_test.sh build-emu/bin "$mpirun"
echo "test_emu.sh: passed in $(($(date +%s) - start)) s"
