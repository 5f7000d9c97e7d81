#!/usr/bin/env bash
# The one-shot check for the lent GPU machine (H100/H200, minutes at a time): build with CUDA,
# run the CUDA tests with ND_REQUIRE_GPU=1 (no device = failure), the CPU tests, the kernel
# microbenchmarks, the loader benchmark, short Fashion-MNIST runs and a ResNet-18 epoch on
# Fashion-MNIST in the CIFAR format on the GPU, and the same runs through the NCCL path; every log goes to $OUT (default
# gpu-check-out/). Finishes within about 10 minutes. Data the machine lacks travels in .gpu_carry/
# (ignored by git): .gpu_carry/fashion-mnist/*.gz — prepare it with scripts/gpu_carry.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
start=$(date +%s)
status=0
step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, record the outcome
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  printf '%-12s rc=%-3s %4ss\n' "$name" "$rc" "$(($(date +%s) - t0))" | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || status=1
  return $rc
}
{ nvidia-smi; nvcc --version; cmake --version; } >"$OUT/machine.txt" 2>&1
data=$PWD/.gpu_carry/fashion-mnist
[ -d "$data" ] || data=/usr/share/datasets/fashion-mnist
export ND_FASHION_MNIST_DIR=$data
jobs=$(nproc)
step configure 120 cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DND_CUDA_ARCHITECTURES=90
step build 300 cmake --build build -j"$jobs" || { cat "$OUT/build.log" | tail -40; exit 1; }
step cuda_tests 300 env ND_REQUIRE_GPU=1 ./build/bin/nd_cuda_tests
step cpu_tests 120 ./build/bin/nd_tests
step bench_ops 120 ./build/bin/nd-bench-ops --device cuda
step bench_deconv 180 ./build/bin/nd-bench-deconv --device cuda
step bench_loader 60 ./build/bin/nd-bench-loader
for norm in none bn nd; do
  step "train_$norm" 90 ./build/bin/nd-train --dataset fashion-mnist --arch mlp --norm "$norm" --epochs 3 --device cuda \
    --data-dir "$data" --output "$OUT/train-$norm"
done
# A CIFAR network on real images in the CIFAR format (Fashion-MNIST converted; the machine has
# python3), one epoch of 10000 images with batch norm and with deconvolution.
cifar=build/fashion-cifar10
step convert 60 python3 scripts/fashion_to_cifar.py --src "$data" --dst "$cifar" \
  --train-limit 10000 --test-limit 2000
for norm in bn nd; do
  step "resnet18_$norm" 120 ./build/bin/nd-train --dataset cifar10 --data-dir "$cifar" \
    --arch resnet18 --norm "$norm" --epochs 1 --workers 8 --device cuda \
    --output "$OUT/resnet18-$norm"
done
# The data-parallel path through NCCL on the one GPU (docs/distributed.md): ND_COMM_FORCE=1 makes
# a world of one communicate (one-rank NCCL communicators, gradient buckets on their own stream,
# synchronised statistics); the losses and weights must match the plain runs.
step nccl_mlp 90 env ND_COMM_FORCE=1 ./build/bin/nd-train --dataset fashion-mnist --arch mlp \
  --norm nd --epochs 3 --device cuda --data-dir "$data" --output "$OUT/nccl-mlp-nd"
step nccl_mlp_cmp 30 python3 test/scripts/compare_runs.py "$OUT/train-nd" "$OUT/nccl-mlp-nd" \
  --rtol 1e-3 --atol 1e-4
for mode in plain nccl; do
  force=0
  [ "$mode" = nccl ] && force=1
  step "r18_${mode}" 120 env ND_COMM_FORCE=$force ./build/bin/nd-train --dataset cifar10 \
    --data-dir "$cifar" --arch resnet18 --norm nd --epochs 1 --train-limit 2000 --workers 8 \
    --device cuda --output "$OUT/r18-$mode"
done
step r18_nccl_cmp 30 python3 test/scripts/compare_runs.py "$OUT/r18-plain" "$OUT/r18-nccl" \
  --rtol 1e-3 --atol 1e-4
echo "total $(($(date +%s) - start)) s, status $status" | tee -a "$OUT/summary.txt"
for f in cuda_tests cpu_tests; do tail -n 3 "$OUT/$f.log"; done
tail -n 30 "$OUT/bench_ops.log"
tail -n 45 "$OUT/bench_deconv.log"
tail -n 4 "$OUT"/train_*.log "$OUT"/resnet18_*.log "$OUT"/nccl_*.log "$OUT"/r18_*.log
tail -n 12 "$OUT/bench_loader.log"
exit $status
