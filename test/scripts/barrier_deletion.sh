#!/usr/bin/env bash
# Barrier-deletion check (docs/barrier-deletion.md): deleting any single __syncthreads in
# kernels/*.cu or kernels/*.cuh must make the CUDA suite fail in the device-emulation build under
# one of the CI thread orders (natural, then warp). For each barrier in turn, a private copy of
# the tree gets that one line deleted, nd_cuda_tests is rebuilt there (one build folder for all,
# so a rebuild compiles the touched .cu files and relinks) and the test cases run one per process
# until the first failure (a timeout counts as one); the test case that caught the last deletion
# runs first. The real tree is only read. Prints a table and "N of M deletions caught"; exits 1
# if any deletion is not caught, 2 if the unmodified copy fails.
#   test/scripts/barrier_deletion.sh
# Environment:
#   ND_BARRIER_WORK     scratch folder, kept for reruns (default: $TMPDIR/nd-barrier-deletion)
#   ND_BARRIER_FILTER   Catch2 test spec of the cases to run (default: every [cuda] case that
#                       runs kernels: not [nets], [allocator], [syncs], [gpu_math], [transfer])
#   ND_BARRIER_ORDERS   thread orders, in turn (default: "natural warp")
#   ND_BARRIER_TIMEOUT  seconds per test case before it counts as hung (default 900)
#   ND_BARRIER_ONLY     only barriers whose "file:line" contains this string
#   ND_BARRIER_JOBS     build jobs (default: nproc)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${ND_BARRIER_WORK:-${TMPDIR:-/tmp}/nd-barrier-deletion}
filter=${ND_BARRIER_FILTER:-[cuda]~[nets]~[allocator]~[syncs]~[gpu_math]~[transfer]}
orders=${ND_BARRIER_ORDERS:-natural warp}
per_test_timeout=${ND_BARRIER_TIMEOUT:-900}
only=${ND_BARRIER_ONLY:-}
jobs=${ND_BARRIER_JOBS:-$(nproc 2>/dev/null || echo 2)}
src=$work/src
build=$work/build
log=$work/log
start=$(date +%s)

# Bring the copy (no build folders, no .git) up to date with the tree: only files whose content
# differs are copied, with a new time, so the kept build recompiles exactly what changed (a
# restored deletion or an interrupted run included).
stage=$work/stage
rm -rf "$stage"
mkdir -p "$stage" "$src" "$log"
tar -C "$repo" --exclude='./build*' --exclude=./.git -cf - . | tar -C "$stage" -xf -
(cd "$stage" && find . -type f) | while IFS= read -r f; do
  cmp -s "$stage/$f" "$src/$f" || { mkdir -p "$(dirname "$src/$f")" && cp "$stage/$f" "$src/$f"; }
done
(cd "$src" && find . -type f) | while IFS= read -r f; do
  [ -e "$stage/$f" ] || rm -f "$src/$f"
done
rm -rf "$stage"

cmake -S "$src" -B "$build" -DND_CUDA_EMULATION=ON -DND_BENCH=OFF -DCMAKE_BUILD_TYPE=Release \
  > "$log/configure.log" 2>&1 || { cat "$log/configure.log"; exit 2; }
rebuild() {
  cmake --build "$build" -j"$jobs" --target nd_cuda_tests > "$log/build.log" 2>&1
}

# Barriers: "file<TAB>line<TAB>kernel", the kernel being the nearest __global__ or __device__
# function above the line.
barriers=$(cd "$src" && for f in kernels/*.cu kernels/*.cuh; do
  [ -f "$f" ] || continue
  awk -v f="$f" '
    /__global__|__device__/ { want = 1 }
    want {
      s = $0
      while (match(s, /[A-Za-z_][A-Za-z0-9_]*[ \t]*\(/)) {
        id = substr(s, RSTART, RLENGTH)
        sub(/[ \t]*\($/, "", id)
        s = substr(s, RSTART + RLENGTH)
        if (id != "__launch_bounds__" && id != "__align__") { fn = id; want = 0; break }
      }
    }
    /__syncthreads[ \t]*\(/ { print f "\t" FNR "\t" fn }
  ' "$f"
done)
[ -n "$only" ] && barriers=$(printf '%s\n' "$barriers" | awk -F'\t' -v o="$only" \
  'index($1 ":" $2, o)')
total=$(printf '%s\n' "$barriers" | grep -c . || true)
[ "$total" -gt 0 ] || { echo "barrier_deletion: no __syncthreads found"; exit 2; }

# Runs the selected cases one per process under order $1, the case named $2 first; prints the
# first failing case ("" when all pass). Logs go to $log/$3.
tests=()
list_tests() {
  mapfile -t tests < <("$build/bin/nd_cuda_tests" --list-test-names-only "$filter" |
    sed -e 's/[[:space:]]*$//' -e '/^$/d')
  [ "${#tests[@]}" -gt 0 ] || { echo "barrier_deletion: no test matches $filter"; exit 2; }
}
first_failure() {
  local order=$1 first=$2 out=$3 t rc
  local ordered=()
  [ -n "$first" ] && ordered+=("$first")
  for t in "${tests[@]}"; do [ "$t" = "$first" ] || ordered+=("$t"); done
  for t in "${ordered[@]}"; do
    rc=0
    # -w NoTests: a name that matches nothing fails instead of passing.
    ND_EMU_ORDER=$order timeout "$per_test_timeout" "$build/bin/nd_cuda_tests" -w NoTests "$t" \
      > "$out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
      [ "$rc" -eq 124 ] && t="$t (timed out)"
      echo "$t"
      return
    fi
  done
  echo ""
}

echo "barrier_deletion: $total barriers; copy and build in $work"
rebuild || { cat "$log/build.log"; exit 2; }
list_tests
echo "barrier_deletion: ${#tests[@]} test cases ($filter), orders: $orders"
# The unmodified copy must pass, or every deletion would look caught.
for order in $orders; do
  bad=$(first_failure "$order" "" "$log/baseline-$order.log")
  if [ -n "$bad" ]; then
    echo "barrier_deletion: the unmodified tree fails under $order: $bad (log/baseline-$order.log)"
    exit 2
  fi
done
echo "barrier_deletion: unmodified tree passes ($(($(date +%s) - start)) s so far)"

rows=()
caught=0
last_catcher=""
restore=""
i=0
while IFS=$'\t' read -r file line kernel; do
  i=$((i + 1))
  # Put the previous deletion back (cp gives it a new time, so it recompiles), then delete this
  # barrier's line.
  [ -n "$restore" ] && cp "$work/pristine" "$src/$restore"
  restore=$file
  cp "$src/$file" "$work/pristine"
  sed -i "${line}d" "$src/$file"
  t0=$(date +%s)
  result="NOT caught"
  by="-"
  which="-"
  if ! rebuild; then
    result="caught"
    by="build"
    which="(does not compile: $log/build-$i.log)"
    cp "$log/build.log" "$log/build-$i.log"
  else
    for order in $orders; do
      bad=$(first_failure "$order" "$last_catcher" "$log/barrier-$i-$order.log")
      if [ -n "$bad" ]; then
        result="caught"
        by=$order
        which=$bad
        last_catcher=${bad% (timed out)}
        break
      fi
    done
  fi
  [ "$result" = caught ] && caught=$((caught + 1))
  secs=$(($(date +%s) - t0))
  rows+=("$file:$line|$kernel|$result|$by|$which|$secs")
  echo "barrier_deletion: [$i/$total] $file:$line ($kernel): $result, order $by, $which" \
    "(${secs} s)"
done <<< "$barriers"
[ -n "$restore" ] && cp "$work/pristine" "$src/$restore"

echo
echo "| barrier | kernel | result | order | test case | seconds |"
echo "|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
  IFS='|' read -r a b c d e f <<< "$r"
  echo "| $a | $b | $c | $d | $e | $f |"
done
echo
echo "$caught of $total deletions caught ($(($(date +%s) - start)) s)"
[ "$caught" -eq "$total" ]
