#!/usr/bin/env bash
# Set-up + the main job: trains the Fashion-MNIST MLP of the paper with batch norm against
# network deconvolution (ChannelDeconv before every Linear), 20 epochs each, on the GPU when one
# is visible and on the CPU otherwise. Runs land in runs/main-<norm>/ (NORMS="none bn nd" adds
# the plain MLP).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
epochs=${EPOCHS:-20}
norms=${NORMS:-"bn nd"}
for norm in $norms; do
  echo "== Fashion-MNIST MLP, --norm $norm, $epochs epochs"
  ./build/bin/nd-train --dataset fashion-mnist --arch mlp --norm "$norm" --epochs "$epochs" \
    --device auto --output "runs/main-$norm"
done
echo "== final test accuracy"
for norm in $norms; do
  tail -n 1 "runs/main-$norm/summary.csv" |
    awk -F, -v n="$norm" '{printf "  --norm %-5s test top1 %.2f%%  (%.2f s last epoch)\n", n, $6, $8}'
done
