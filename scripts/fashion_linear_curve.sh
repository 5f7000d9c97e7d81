#!/usr/bin/env bash
# The paper's Fashion-MNIST linear-model experiment: the one-layer linear model 784->10 with the
# L2 loss 0.5*sum((o - onehot)^2), with and without ChannelDeconv(32), one epoch, and the
# training loss every EVERY steps of that epoch (from each run's steps.csv).
# Usage: scripts/fashion_linear_curve.sh [--lr LR] [extra flags]   (EVERY=10, OUT=runs/fashion-linear)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/bin/nd-train ] || bash scripts/build.sh >/dev/null
every=${EVERY:-10}
out=${OUT:-runs/fashion-linear}
for norm in none nd; do
  ./build/bin/nd-train --dataset fashion-mnist --arch linear --norm "$norm" --loss L2 --epochs 1 --output "$out/$norm" \
    "$@" >&2
done
echo "| step | plain L2 loss | deconvolution L2 loss |"
echo "|---|---|---|"
paste -d, "$out/none/steps.csv" "$out/nd/steps.csv" | tail -n +2 |
  awk -F, -v e="$every" '($1 == 1 || $1 % e == 0) {printf "| %d | %.4f | %.4f |\n", $1, $4, $8}'
