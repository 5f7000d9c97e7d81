#!/usr/bin/env bash
# The CPU tests under the sanitizers (CI builds them beside the normal tests and runs them after;
# docs/reliability.md says what runs where and why):
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer (gcc), in the device-emulation
#                build (one compile for both suites): nd_tests without the network-sized runs, the
#                fuzz regression inputs (nd-fuzz replay test/fuzz) and the crash-safety tests,
#                whose nd-train is the sanitized one; then the emulator's self-tests and the
#                nd_cuda_tests cases but the whole networks, at ND_TEST_SMALL=1 sizes in reverse
#                thread order (docs/gpu.md, "Emulation"); ND_EMU_NETS=all adds the whole
#                networks.
#   build-tsan/  ThreadSanitizer: nd_thread_tests, the tests of the threaded loader, image folders
#                and the trainer, crash-safety tests included, without the [nets] and [large]
#                network-sized runs.
#   scripts/sanitize.sh [--build-only] [asan|tsan]...   (default: both; --build-only: configure
#   and build, run nothing)
# Extra CMake arguments can come through ND_SANITIZE_CMAKE_ARGS. Any sanitizer report fails.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
build_only=""
if [ "${1:-}" = --build-only ]; then
  build_only=1
  shift
fi
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(asan tsan)

configure_and_build() {
  local dir=$1 flags=$2
  shift 2
  mkdir -p "$dir"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer" -DND_BENCH=OFF ${ND_SANITIZE_CMAKE_ARGS:-} \
    >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; exit 1; }
  cmake --build "$dir" -j"$jobs" --target "$@"
}

# OpenBLAS's threads and libgomp's OpenMP pool are not instrumented (TSan would report the
# threads of every parallel loop as racing): keep BLAS and the kernels on the calling thread.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

for kind in "${kinds[@]}"; do
  start=$(date +%s)
  case "$kind" in
    asan)
      ND_SANITIZE_CMAKE_ARGS="-DND_CUDA_EMULATION=ON ${ND_SANITIZE_CMAKE_ARGS:-}" \
        configure_and_build build-asan "-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
        nd_tests nd-train nd-fuzz nd_emu_tests nd_cuda_tests
      [ -z "$build_only" ] || { echo "sanitize.sh: $kind built in $(($(date +%s) - start)) s"; continue; }
      export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
      export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
      build-asan/bin/nd-fuzz replay test/fuzz
      # [nets] and [fidelity] run whole networks at full width: the kernels they use are covered
      # by the op, gradient and layer tests at small sizes, and those hold most of the suite's time.
      # One thread (above), so it runs beside the emulated CUDA suites, whose emulator leaves a
      # core idle much of the time; its log follows theirs.
      build-asan/bin/nd_tests "~[nets]~[fidelity]" >build-asan/nd_tests.log 2>&1 &
      cpu_tests=$!
      trap 'kill "$cpu_tests" 2>/dev/null || true' EXIT
      # The emulated CUDA suite: device memory, shared memory and fiber stacks are all host
      # memory here, so ASan sees every kernel's and library stand-in's accesses.
      build-asan/bin/nd_emu_tests
      # Without the whole networks, as nd_tests above (11 min for the 26 in the unsanitized
      # emulation already); ND_EMU_NETS=all runs them too.
      nets="~[nets]"
      [ "${ND_EMU_NETS:-}" = all ] && nets="*"
      ND_TEST_SMALL=1 ND_EMU_ORDER=reverse OMP_WAIT_POLICY=PASSIVE build-asan/bin/nd_cuda_tests \
        "$nets"
      if ! wait "$cpu_tests"; then
        cat build-asan/nd_tests.log
        echo "sanitize.sh: nd_tests failed under ASan (log above)" >&2
        exit 1
      fi
      trap - EXIT
      tail -n 2 build-asan/nd_tests.log
      unset ASAN_OPTIONS UBSAN_OPTIONS
      ;;
    tsan)
      ND_SANITIZE_CMAKE_ARGS="-DND_CUDA=OFF ${ND_SANITIZE_CMAKE_ARGS:-}" \
        configure_and_build build-tsan "-fsanitize=thread" nd_thread_tests nd-train
      [ -z "$build_only" ] || { echo "sanitize.sh: $kind built in $(($(date +%s) - start)) s"; continue; }
      export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
      build-tsan/bin/nd_thread_tests "~[nets]~[large]"
      unset TSAN_OPTIONS
      ;;
    *)
      echo "sanitize.sh: unknown kind '$kind' (asan or tsan)" >&2
      exit 2
      ;;
  esac
  echo "sanitize.sh: $kind passed in $(($(date +%s) - start)) s"
done
