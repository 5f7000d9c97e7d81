#!/usr/bin/env bash
# Fuzzing with libFuzzer: builds the harnesses of test/fuzz/ (one per reader of outside files)
# with clang, AddressSanitizer and UndefinedBehaviorSanitizer into build-fuzz/, writes each
# harness's seed corpus, then runs each harness for SECONDS (default 60) and prints a table of
# seconds, executions and coverage (libFuzzer's cov and ft). What a harness finds (crash, leak,
# hang, out-of-memory, an allocation over 1 GB) is saved under build-fuzz/artifacts/<harness>/;
# copy it into test/fuzz/<harness>/ once fixed, where the CTest fuzz_regressions replays it.
#   scripts/fuzz.sh [SECONDS] [HARNESS...]   ND_FUZZ_PARALLEL=2 runs two harnesses at a time
# Needs clang and libclang-rt-14-dev (Debian: apt-get install clang libclang-rt-14-dev); CI does
# not: it replays the regression inputs with the normal build (and the ASan build of sanitize.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
parallel=${ND_FUZZ_PARALLEL:-1}
command -v clang++ >/dev/null ||
  { echo "fuzz.sh needs clang: apt-get install clang libclang-rt-14-dev" >&2; exit 1; }

flags="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined"
flags+=" -fno-omit-frame-pointer"
mkdir -p build-fuzz
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS="$flags" -DND_CUDA=OFF \
  -DND_BENCH=OFF -DND_FUZZ=ON >build-fuzz/configure.log 2>&1 ||
  { cat build-fuzz/configure.log; exit 1; }
jobs=$(nproc 2>/dev/null || echo 2)
cmake --build build-fuzz -j"$jobs" --target nd-fuzz
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || mapfile -t harnesses < <(build-fuzz/bin/nd-fuzz list | awk '{print $1}')
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
cmake --build build-fuzz -j"$jobs" --target "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OPENBLAS_NUM_THREADS=1
scratch=$(mktemp -d "${TMPDIR:-/tmp}/nd-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

run_harness() {
  local h=$1 max_len corpus artifacts log
  max_len=$(build-fuzz/bin/nd-fuzz list | awk -v h="$h" '$1 == h {print $2}')
  corpus=build-fuzz/corpus/$h
  artifacts=build-fuzz/artifacts/$h
  log=build-fuzz/logs/$h.log
  mkdir -p "$corpus" "$artifacts" build-fuzz/logs "$scratch/$h"
  rm -f "build-fuzz/logs/$h.row"
  TMPDIR="$scratch/$h" build-fuzz/bin/nd-fuzz seeds "$h" "$corpus"
  local status=0
  TMPDIR="$scratch/$h" nice -n 10 build-fuzz/bin/fuzz_"$h" -max_total_time="$seconds" \
    -max_len="$max_len" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || status=$?
  local execs cov ft took
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  cov=$( (grep -o 'cov: [0-9]*' "$log" || true) | tail -1 | awk '{print $2}')
  ft=$( (grep -o 'ft: [0-9]*' "$log" || true) | tail -1 | awk '{print $2}')
  took=$( (grep -o 'Done [0-9]* runs in [0-9]* second' "$log" || true) | tail -1 | awk '{print $5}')
  local found
  found=$(find "$artifacts" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$h" "${took:-?}" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
    "$found" "$([ $status -eq 0 ] && echo ok || echo "FOUND (exit $status, see $log)")" \
    >"build-fuzz/logs/$h.row"
}

running=0
for h in "${harnesses[@]}"; do
  run_harness "$h" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

report=build-fuzz/fuzz-report.tsv
printf 'harness\tseconds\texecutions\tcov\tft\tartifacts\tresult\n' >"$report"
failed=0
for h in "${harnesses[@]}"; do
  cat "build-fuzz/logs/$h.row" >>"$report"
  grep -q 'FOUND' "build-fuzz/logs/$h.row" && failed=1
done
column -t -s $'\t' "$report"
exit $failed
