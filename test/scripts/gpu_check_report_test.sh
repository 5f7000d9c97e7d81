#!/usr/bin/env bash
# The GPU check's report on made-up work folders (no GPU needed): a failing Catch2 case is quoted
# with its section and failure lines, a memcheck and a racecheck finding with file:line and the
# kernel, a test group with no case fails, the summary stays under 10,000 characters with 200
# failing cases, and an all-passing folder passes (exit 0); a dry run accepts skipped cases.
set -euo pipefail
report=$(cd "$(dirname "$0")/../.." && pwd)/scripts/gpu_check_report.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

make_work() {  # make_work DIR: a passing run
  local w=$1
  mkdir -p "$w/logs" "$w/cases" "$w/bench" "$w/out"
  printf 'configure\tok\t0\t3\tlimit 120s\nbuild\tok\t0\t80\tlimit 300s\ntests\tok\t-\t50\t2 cases, 0 failed, jobs 4\ntotal\tdone\t0\t200\t\n' >"$w/steps.tsv"
  echo "NVIDIA H200, 580.65, 143771 MiB" >"$w/gpu.txt"
  for i in 001 002; do
    printf 'tests\t%s\t0\t2\tcuda case %s\n' "$i" "$i" >"$w/cases/tests-$i.tsv"
    echo "All tests passed (10 assertions in 1 test case)" >"$w/cases/tests-$i.log"
  done
  cat >"$w/logs/bench_train.log" <<'LOG'
nd-bench-train: device cuda:0 (NVIDIA H200), batch 128 of 3x32x32
network          norm  median_ms     min_ms     img/s  peak_MiB  allocs  ND/BN  status
resnet18         bn        6.000      5.900   21333.3     900.0       0         ok
resnet18         nd        9.000      8.800   14222.2    1200.0       0   1.50  ok

nd-bench-train: 2 measurements, 0 failed
LOG
}

# 1. Everything passed.
make_work "$tmp/pass"
python3 "$report" --work "$tmp/pass" --out "$tmp/pass/out" >"$tmp/pass.txt" ||
  fail "an all-passing folder did not pass: $(cat "$tmp/pass.txt")"
grep -q "verdict PASS" "$tmp/pass.txt" || fail "no PASS verdict"
grep -q "NVIDIA H200" "$tmp/pass.txt" || fail "the GPU is not named"
grep -q "resnet18         nd        9.000" "$tmp/pass.txt" || fail "the benchmark table is missing"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['verdict']=='PASS'" \
  "$tmp/pass/out/summary.json" || fail "summary.json"

# 2. A failing case, sanitizer findings, and a group without cases.
w=$tmp/failing
make_work "$w"
printf 'tests\t002\t1\t4\tcuda net resnet18 nd\n' >"$w/cases/tests-002.tsv"
cat >"$w/cases/tests-002.log" <<'LOG'

~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
nd_cuda_tests is a Catch v2.13.10 host application.
Run with -? for options

-------------------------------------------------------------------------------
cuda net resnet18 nd
  grads
-------------------------------------------------------------------------------
/work/main/test/cuda/test_nets_cuda.cpp:45
...............................................................................

/work/main/test/cuda/test_nets_cuda.cpp:61: FAILED:
explicitly with message:
  resnet18 --norm nd grad of layer1.0.conv1.weight: 12 of 36864 elements differ (shape (64, 64, 3, 3))

===============================================================================
test cases:  1 |  0 passed | 1 failed
assertions: 40 | 39 passed | 1 failed
LOG
printf 'memcheck\t001\t99\t9\tcovariance sampled\n' >"$w/cases/memcheck-001.tsv"
cat >"$w/cases/memcheck-001.log" <<'LOG'
========= COMPUTE-SANITIZER
========= Invalid __global__ read of size 4 bytes
=========     at nd::kernels::cov_tile_kernel(const float *, float *, int)+0x1b0 in /tmp/x/kernels/deconv_covariance_cuda.cu:211
=========     by thread (5,0,0) in block (3,0,0)
=========     Address 0x7f00 is out of bounds
========= ERROR SUMMARY: 1 error
LOG
printf 'racecheck\t001\t99\t12\tnewton schulz small\n' >"$w/cases/racecheck-001.tsv"
cat >"$w/cases/racecheck-001.log" <<'LOG'
========= COMPUTE-SANITIZER
========= Error: Race reported between Write access at 0x21c in /tmp/x/kernels/deconv_isqrt_fold_cuda.cu:97:ns_small_kernel(float const*, float*)
=========     and Read access at 0x230 in /tmp/x/kernels/deconv_isqrt_fold_cuda.cu:101:ns_small_kernel(float const*, float*) [64 hazards]
========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)
LOG
printf 'memcheck\tfail\t-\t9\t0 cases, 0 failed, jobs 4\n' >>"$w/steps.tsv"
if python3 "$report" --work "$w" --out "$w/out" >"$tmp/fail.txt"; then
  fail "a failing folder passed"
fi
for want in "verdict FAIL" "cuda net resnet18 nd: exit 1" "section: grads" \
  "test/cuda/test_nets_cuda.cpp:61" "grad of layer1.0.conv1.weight" \
  "kernels/deconv_covariance_cuda.cu:211 (cov_tile_kernel)" \
  "kernels/deconv_isqrt_fold_cuda.cu:97 (ns_small_kernel)" "memcheck             fail"; do
  grep -qF "$want" "$tmp/fail.txt" || { cat "$tmp/fail.txt"; fail "missing from the summary: $want"; }
done

# 3. Two hundred failing cases, each its own failure: the summary stays within its limit and
# says what it left out; two hundred failing alike are quoted once.
w=$tmp/many
make_work "$w"
for i in $(seq -w 1 200); do
  printf 'tests\t%s\t1\t3\tcuda op case %s with a long descriptive name\n' "$i" "$i" \
    >"$w/cases/tests-$i.tsv"
  sed "s/layer1.0.conv1.weight/param$i/" "$tmp/failing/cases/tests-002.log" >"$w/cases/tests-$i.log"
done
python3 "$report" --work "$w" --out "$w/out" >"$tmp/many.txt" || true
chars=$(wc -c <"$tmp/many.txt")
[ "$chars" -le 10100 ] || fail "summary of $chars characters"
grep -q "and 185 more" "$tmp/many.txt" || fail "the cut of failing cases is not said"
for i in $(seq -w 1 200); do cp "$tmp/failing/cases/tests-002.log" "$w/cases/tests-$i.log"; done
python3 "$report" --work "$w" --out "$w/out" >"$tmp/alike.txt" || true
grep -q "200 cases failed alike" "$tmp/alike.txt" || fail "identical failures are not grouped"
[ "$(wc -c <"$tmp/alike.txt")" -le 3000 ] || fail "identical failures fill the summary"

# 4. A dry run: skipped CUDA cases (exit 77) pass; outside a dry run they fail.
w=$tmp/dry
make_work "$w"
for i in 001 002; do printf 'tests\t%s\t77\t0\tcuda case %s\n' "$i" "$i" >"$w/cases/tests-$i.tsv"; done
python3 "$report" --work "$w" --out "$w/out" --dry-run 1 >"$tmp/dry.txt" || fail "dry run with skipped cases failed"
if python3 "$report" --work "$w" --out "$w/out" >"$tmp/notdry.txt"; then
  fail "skipped CUDA cases passed outside a dry run"
fi
echo "gpu_check_report: all checks passed"
