#!/usr/bin/env bash
# A time-boxed check of the CUDA path on a machine with one NVIDIA GPU (sized for one H100 or
# H200 and 16 cores: the default budget of 7 minutes covers the build as well):
#   bash scripts/gpu_check.sh [--budget SECONDS] [--out DIR] [--data DIR] [--build-dir DIR]
#                             [--jobs N] [--dry-run]
# It builds only what it runs (nd_cuda_tests, the benchmarks, nd-train; CUDA with line info),
# runs every Catch2 test case of nd_cuda_tests in its own process (CUDA_LAUNCH_BLOCKING=1, so a
# sticky CUDA error fails only its own case, where it happened), compute-sanitizer memcheck over
# the [memcheck] cases and racecheck over the [racecheck] cases at small sizes (ND_TEST_SMALL=1),
# then nd-bench-train (ResNet-18, VGG-16, DenseNet-121 at batch 128, BN and ND, FP32 and TF32,
# and a ResNet-18 profile), nd-bench-deconv --quick, one Fashion-MNIST MLP epoch per norm, and
# the MLP and ResNet-18 through the one-rank NCCL path against the plain runs.
#   --budget SECONDS  every step has its own timeout inside this budget (420)
#   --out DIR         receives summary.txt, summary.json and gpu-check-logs.tar.gz (every log,
#                     at most 16 MiB) (gpu-check-out/ in the repository)
#   --data DIR        the Fashion-MNIST IDX files (/usr/share/datasets/fashion-mnist, which
#                     scripts/install_deps.sh installs)
#   --build-dir DIR   the build folder (build-gpu/; build/ with --dry-run); run folders and
#                     checkpoints stay in DIR/gpu-check
#   --jobs N          test cases run at once (8; 2 with --dry-run)
#   --dry-run         the same plumbing on a machine without a GPU (CI): every CUDA case must
#                     report "skipped", the benchmarks run on the CPU at tiny sizes
# The summary (stdout, at most ~10,000 characters) is printed even when steps time out or
# crash. Exit status 0 only when every step passed.
set -uo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
root=$PWD

dry=0
build=""
budget=420
jobs=""
out=""
data=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --build-dir|--budget|--jobs|--out|--data)
      [ $# -ge 2 ] || { echo "gpu_check.sh: $1 needs a value (try --help)" >&2; exit 2; }
      case "$1" in
        --build-dir) build=$2 ;;
        --budget) budget=$2 ;;
        --jobs) jobs=$2 ;;
        --out) out=$2 ;;
        --data) data=$2 ;;
      esac
      shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
for n in "$budget" "${jobs:-1}"; do
  case $n in ''|*[!0-9]*) echo "gpu_check.sh: '$n' is not a number of seconds or jobs" >&2; exit 2 ;; esac
done
# Folders given on the command line are relative to where it was called; the defaults are in
# the repository.
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac; }
if [ -z "$build" ]; then
  if [ $dry -eq 1 ]; then build=$root/build; else build=$root/build-gpu; fi
else
  build=$(absolute "$build")
fi
if [ -z "$out" ]; then out=$root/gpu-check-out; else out=$(absolute "$out"); fi
if [ -z "$data" ]; then data=/usr/share/datasets/fashion-mnist; else data=$(absolute "$data"); fi
cores=$(nproc 2>/dev/null || echo 2)
[ -n "$jobs" ] || { if [ $dry -eq 1 ]; then jobs=2; else jobs=8; fi; }

mkdir -p "$out"
work=$build/gpu-check
rm -rf "$work"
mkdir -p "$work/logs" "$work/cases" "$work/bench" "$work/runs"
steps=$work/steps.tsv
: >"$steps"
start=$(date +%s)
deadline=$((start + budget))
reserve=20  # seconds kept for the report and the archive
export ND_CHECK_WORK=$work

# ------------------------------------------------------------------ the summary, always
finish() {
  local rc=$?
  trap - EXIT INT TERM
  printf 'total\t%s\t%s\t%s\t\n' "done" "$rc" "$(($(date +%s) - start))" >>"$steps"
  python3 "$root/scripts/gpu_check_report.py" --work "$work" --out "$out" --budget "$budget" \
    --dry-run "$dry"
  local verdict=$?
  cp "$work/summary.txt" "$out/" 2>/dev/null
  # One archive of every log (never checkpoints or run folders), under 16 MiB.
  tar -C "$work" -czf "$out/gpu-check-logs.tar.gz" logs cases bench steps.tsv summary.txt \
    2>/dev/null
  if [ "$(stat -c %s "$out/gpu-check-logs.tar.gz" 2>/dev/null || echo 0)" -gt 16000000 ]; then
    find "$work/logs" "$work/cases" -name '*.log' -size +512k -exec truncate -s 512k {} +
    tar -C "$work" -czf "$out/gpu-check-logs.tar.gz" logs cases bench steps.tsv summary.txt
  fi
  exit $verdict
}
trap finish EXIT
trap 'exit 130' INT TERM

remaining() { echo $((deadline - reserve - $(date +%s))); }

# step NAME LIMIT COMMAND...: runs with a timeout of min(LIMIT, the budget left), output in
# logs/NAME.log, one line in steps.tsv (name, status, rc, seconds, note).
step() {
  local name=$1 limit=$2
  shift 2
  local left
  left=$(remaining)
  if [ "$left" -lt 5 ]; then
    printf '%s\tskipped\t-\t0\tout of time\n' "$name" >>"$steps"
    return 1
  fi
  [ "$limit" -le "$left" ] || limit=$left
  local t0 rc status
  t0=$(date +%s)
  timeout -k 5 "$limit" "$@" >"$work/logs/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status=timeout ;;
    *) status=fail ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$(($(date +%s) - t0))" \
    "limit ${limit}s" >>"$steps"
  return $rc
}

note() {  # a step that only records a remark
  printf '%s\t%s\t-\t0\t%s\n' "$1" "$2" "$3" >>"$steps"
}

# ------------------------------------------------------------------ machine
{
  echo "dry run: $dry; cores: $cores; build dir: $build"
  uname -a
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader |
      head -1 >"$work/gpu.txt"
    nvidia-smi
  else
    echo "nvidia-smi: not found"
  fi
  command -v nvcc >/dev/null && nvcc --version || /usr/local/cuda/bin/nvcc --version
  cmake --version | head -1
  command -v compute-sanitizer >/dev/null || ls /usr/local/cuda/bin/compute-sanitizer 2>&1
} >"$work/logs/machine.log" 2>&1

[ -f "$data/train-images-idx3-ubyte.gz" ] || [ -f "$data/train-images-idx3-ubyte" ] ||
  note data fail "no Fashion-MNIST in $data: install it (scripts/install_deps.sh) or pass --data DIR"

# ------------------------------------------------------------------ build
targets=(nd_cuda_tests nd-bench-train nd-bench-deconv nd-train)
if [ $dry -eq 1 ]; then
  step configure 120 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
else
  step configure 120 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DND_CUDA_ARCHITECTURES=90 -DND_REQUIRE_CUDA=ON
fi || exit 1
step build 300 cmake --build "$build" -j"$cores" --target "${targets[@]}" || exit 1
bin=$build/bin
grep -q "CUDA build" "$work/logs/configure.log" ||
  note cuda-build fail "configure found no CUDA toolkit: the CUDA tests are empty"

# ------------------------------------------------------------------ CUDA test cases
# Catch2 2.x lists names with --list-test-names-only, 3.x with --list-tests --verbosity quiet.
if "$bin/nd_cuda_tests" --help 2>&1 | grep -q -- '--list-test-names-only'; then
  list_args=(--list-test-names-only)
else
  list_args=(--list-tests --verbosity quiet)
fi
list_cases() {  # list_cases [TEST SPEC]: one name per line
  "$bin/nd_cuda_tests" "$@" "${list_args[@]}" 2>>"$work/logs/list.log" |
    grep -v '^[[:space:]]*$' | sed 's/^[[:space:]]*//'
}
list_cases >"$work/cases.txt"
ncases=$(wc -l <"$work/cases.txt")
note list "$([ "$ncases" -gt 0 ] && echo ok || echo fail)" "$ncases test cases"

# run_cases GROUP FILTER_TAG PER_CASE_LIMIT GROUP_LIMIT PREFIX...: every listed case (or those
# whose tags include FILTER_TAG) in its own process, $jobs at a time, none started after
# GROUP_LIMIT seconds (so later steps keep their time); one line per case in
# cases/GROUP-NNN.tsv (group, index, rc, seconds, name) and its output in cases/GROUP-NNN.log.
run_cases() {
  local group=$1 tag=$2 limit=$3 group_limit=$4
  shift 4
  local names=$work/$group.names
  if [ -z "$tag" ]; then cp "$work/cases.txt" "$names"; else list_cases "$tag" >"$names"; fi
  local left
  left=$(remaining)
  if [ "$left" -lt 10 ]; then
    printf '%s\tskipped\t-\t0\tout of time\n' "$group" >>"$steps"
    return
  fi
  local t0=$(date +%s)
  group_deadline=$((t0 + group_limit))
  [ "$group_deadline" -le $((deadline - reserve)) ] || group_deadline=$((deadline - reserve))
  case_end=$((deadline - reserve))
  export group limit bin work group_deadline case_end
  export -f run_one_case
  # The prefix (a sanitizer command) travels as one string: no case name is in it.
  export ND_CASE_PREFIX="$*"
  nl -ba -w3 -nrz -s$'\t' "$names" |
    xargs -d '\n' -P "$jobs" -I{} bash -c 'run_one_case "$1"' _ {}
  local total failed not_run status=ok
  total=$(cat "$work/cases/$group"-*.tsv 2>/dev/null | wc -l)
  failed=$(cat "$work/cases/$group"-*.tsv 2>/dev/null |
    awk -F'\t' '$3 != 0 && $3 != 77 && $3 != "skipped"' | wc -l)
  not_run=$(cat "$work/cases/$group"-*.tsv 2>/dev/null | awk -F'\t' '$3 == "skipped"' | wc -l)
  # A failure, a case left for lack of time, or no case at all fails the group.
  [ "$failed" -eq 0 ] && [ "$not_run" -eq 0 ] && [ "$total" -gt 0 ] || status=fail
  printf '%s\t%s\t-\t%s\t%s cases, %s failed, %s not run (time), jobs %s\n' "$group" \
    "$status" "$(($(date +%s) - t0))" "$total" "$failed" "$not_run" "$jobs" >>"$steps"
}

run_one_case() {
  local idx=${1%%$'\t'*} name=${1#*$'\t'}
  local left=$((group_deadline - $(date +%s)))
  local log=$work/cases/$group-$idx.log
  if [ "$left" -lt 3 ]; then
    printf '%s\t%s\t%s\t%s\t%s\n' "$group" "$idx" "skipped" 0 "$name" >"$work/cases/$group-$idx.tsv"
    return
  fi
  local lim=$limit end_left=$((case_end - $(date +%s)))
  [ "$lim" -le "$end_left" ] || lim=$end_left
  # Catch2's test-spec parser splits on ',' and treats [ ] * \ as syntax: escape them.
  local spec
  spec=$(printf '%s' "$name" | sed -e 's/[][\\,*"]/\\&/g')
  local t0=$(date +%s)
  # shellcheck disable=SC2086
  timeout -k 5 "$lim" $ND_CASE_PREFIX "$bin/nd_cuda_tests" "$spec" --durations yes >"$log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\t%s\n' "$group" "$idx" "$rc" "$(($(date +%s) - t0))" "$name" \
    >"$work/cases/$group-$idx.tsv"
}

export CUDA_LAUNCH_BLOCKING=1
# The CPU references inside the tests: a few BLAS threads each, as $jobs processes share the cores.
export OPENBLAS_NUM_THREADS=$(( cores / jobs > 1 ? cores / jobs : 1 ))
[ $dry -eq 1 ] || export ND_REQUIRE_GPU=1
run_cases tests "" 90 100

sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
export ND_TEST_SMALL=1  # the sanitizers run the small cases only
if [ -x "$sanitizer" ]; then
  run_cases memcheck "[memcheck]" 120 90 "$sanitizer" --tool memcheck --error-exitcode 99 \
    --print-limit 40
  run_cases racecheck "[racecheck]" 120 45 "$sanitizer" --tool racecheck \
    --racecheck-report hazard --error-exitcode 99 --print-limit 40
else
  note sanitizers "$([ $dry -eq 1 ] && echo ok || echo fail)" \
    "compute-sanitizer not found; the [memcheck] and [racecheck] cases run bare"
  run_cases memcheck "[memcheck]" 120 90
  run_cases racecheck "[racecheck]" 120 45
fi
unset CUDA_LAUNCH_BLOCKING ND_TEST_SMALL OPENBLAS_NUM_THREADS

# ------------------------------------------------------------------ benchmarks
if [ $dry -eq 1 ]; then
  device=cpu
  small=(--batch 2 --warmup 0 --steps 1)
  step bench_train 120 "$bin/nd-bench-train" --device cpu --nets resnet18 "${small[@]}" \
    --json "$work/bench/train.jsonl"
  step bench_train_profile 60 "$bin/nd-bench-train" --device cpu --nets resnet18 --norm nd \
    "${small[@]}" --profile --json "$work/bench/train_profile.jsonl"
  step bench_deconv 60 "$bin/nd-bench-deconv" --device cpu --quick
  limits=(--train-limit 2048 --test-limit 1000)
else
  device=cuda
  nets=resnet18,vgg16,densenet121
  step bench_train 100 "$bin/nd-bench-train" --device cuda --nets "$nets" --batch 128 \
    --json "$work/bench/train.jsonl"
  step bench_train_tf32 60 "$bin/nd-bench-train" --device cuda --nets "$nets" --batch 128 \
    --tf32 --json "$work/bench/train_tf32.jsonl"
  step bench_train_profile 40 "$bin/nd-bench-train" --device cuda --nets resnet18 --batch 128 \
    --profile --json "$work/bench/train_profile.jsonl"
  step bench_deconv 45 "$bin/nd-bench-deconv" --device cuda --quick
  limits=()
fi

# ------------------------------------------------------------------ Fashion-MNIST MLP epochs
for norm in none bn nd; do
  step "mlp_$norm" 30 "$bin/nd-train" --dataset fashion-mnist --data-dir "$data" --arch mlp \
    --norm "$norm" --epochs 1 --device "$device" --workers 4 "${limits[@]}" \
    --output "$work/runs/mlp-$norm"
done
# ------------------------------------------------------------------ the NCCL path, one GPU
# ND_COMM_FORCE=1 sends a world of one through the data-parallel path (a one-rank NCCL
# communicator on a GPU, gradient buckets on their own stream, synchronised statistics;
# docs/distributed.md): the MLP epoch must match the plain one above.
step nccl_mlp_nd 30 env ND_COMM_FORCE=1 "$bin/nd-train" --dataset fashion-mnist --data-dir "$data" \
  --arch mlp --norm nd --epochs 1 --device "$device" --workers 4 "${limits[@]}" \
  --output "$work/runs/nccl-mlp-nd"
step nccl_mlp_compare 30 python3 "$root/test/scripts/compare_runs.py" "$work/runs/mlp-nd" \
  "$work/runs/nccl-mlp-nd" --rtol 1e-3 --atol 1e-4
# ResNet-18 with deconvolution, plain and through NCCL, on 1024 Fashion-MNIST images (GPU only:
# on the CPU of a dry run it would take minutes).
if [ $dry -eq 0 ]; then
  for force in 0 1; do
    step "r18_nccl$force" 60 env ND_COMM_FORCE=$force "$bin/nd-train" --dataset fashion-mnist \
      --data-dir "$data" --arch resnet18 --norm nd --batch-size 128 --epochs 1 \
      --train-limit 1024 --test-limit 256 --device cuda --workers 4 --deterministic \
      --output "$work/runs/r18-nccl$force"
  done
  step r18_nccl_compare 30 python3 "$root/test/scripts/compare_runs.py" "$work/runs/r18-nccl0" \
    "$work/runs/r18-nccl1" --rtol 1e-3 --atol 1e-4
fi
exit 0  # the verdict is the report's (finish)
