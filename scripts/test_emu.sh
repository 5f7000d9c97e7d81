#!/usr/bin/env bash
# Set-up + the device-emulation build + the CUDA path executed on the CPU (docs/gpu.md,
# "Emulation"): the same .cu sources compiled as C++ against the emulator in emu/, built in
# build-emu/, then
#   1. the emulator's self-tests (nd_emu_tests: one broken kernel or call per fault class);
#   2. every nd_cuda_tests case but the whole networks under two thread orders, side by side
#      (natural, and warp: one warp runs ahead of the others between block barriers), and the
#      whole-network cases: 20 of the 26 in natural order by default (the six over 30 s each,
#      tagged [long], left out), all 26 under both orders with ND_EMU_NETS=all;
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
# The libraries' OpenMP threads sleep between calls instead of spinning against the emulator's
# own threads on a small machine (a quarter of the run time otherwise).
export OMP_WAIT_POLICY=PASSIVE
build-emu/bin/nd_emu_tests
# The two orders side by side (the emulator leaves a core idle much of the time); the warp
# order's log follows the natural one's.
echo "test_emu.sh: nd_cuda_tests without the network cases, thread orders natural and warp"
ND_EMU_ORDER=warp build-emu/bin/nd_cuda_tests "~[nets]" >build-emu/warp-order.log 2>&1 &
warp_order=$!
trap 'kill "$warp_order" 2>/dev/null || true' EXIT
ND_EMU_ORDER=natural build-emu/bin/nd_cuda_tests "~[nets]"
if ! wait "$warp_order"; then
  cat build-emu/warp-order.log
  echo "test_emu.sh: nd_cuda_tests failed in thread order warp (log above)" >&2
  exit 1
fi
trap - EXIT
echo "thread order warp: $(tail -n 2 build-emu/warp-order.log | tr -s '\n' ' ')"
# The whole-network cases take 3-90 s each here (11 min for all 26 on 2 cores; deconvolution
# runs Newton-Schulz on the CPU in float32 and float64 besides the emulated CUDA pass): by default
# the 20 that take at most 30 s, in natural order; ND_EMU_NETS=all runs all 26 under both orders.
# Every network's CUDA forward, eval and train mode, is also checked against the CPU by
# emu_train_test.sh below.
if [ "${ND_EMU_NETS:-}" = all ]; then
  for order in natural warp; do
    echo "test_emu.sh: nd_cuda_tests network cases, thread order $order"
    ND_EMU_ORDER=$order build-emu/bin/nd_cuda_tests "[nets]"
  done
else
  # Beside emu_train_test.sh below (its processes leave a core idle much of the time); the
  # cases' log follows its own.
  ND_EMU_ORDER=natural build-emu/bin/nd_cuda_tests "[nets]~[long]" >build-emu/net-cases.log 2>&1 &
  net_cases=$!
  trap 'kill "$net_cases" 2>/dev/null || true' EXIT
fi
mpirun=$(command -v mpirun || true)
bash test/scripts/emu_train_test.sh build-emu/bin "$mpirun"
if [ -n "${net_cases:-}" ]; then
  echo "test_emu.sh: nd_cuda_tests network cases (20 of 26, no [long]; ND_EMU_NETS=all for all)"
  status=0
  wait "$net_cases" || status=$?
  trap - EXIT
  cat build-emu/net-cases.log
  [ "$status" -eq 0 ] || { echo "test_emu.sh: the network cases failed (log above)" >&2; exit 1; }
fi
echo "test_emu.sh: passed in $(($(date +%s) - start)) s"
