#!/usr/bin/env bash
# The paper's Fashion-MNIST linear-model experiment: the one-layer linear model 784->10 with the
# L2 loss 0.5*sum((o - onehot)^2), with and without ChannelDeconv(32), one epoch, and the
# training loss every EVERY steps of that epoch (from each run's steps.csv): printed, and
# OUT/fashion_linear.md + .csv, with the curves in OUT/fashion_linear.png (the paper's Figure 6,
# left). Resumable: finished runs are not trained again (scripts/lib/cells.sh; extra flags apply
# to new runs only).
# Usage: scripts/fashion_linear_curve.sh [--lr LR] [extra flags]   (EVERY=10, OUT=runs/fashion-linear)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/cells.sh
ensure_nd_train
every=${EVERY:-10}
out=${OUT:-runs/fashion-linear}
for norm in none nd; do
  run_cell "$out/$norm" 1 --dataset fashion-mnist --arch linear --norm "$norm" --loss L2 "$@"
done
cells_failed_exit fashion_linear_curve.sh
{
  echo "| step | plain L2 loss | deconvolution L2 loss |"
  echo "|---|---|---|"
  paste -d, "$out/none/steps.csv" "$out/nd/steps.csv" | tail -n +2 |
    awk -F, -v e="$every" 'function f(x) { return sprintf(x < 1000 ? "%.4f" : "%.3e", x) }
      ($1 == 1 || $1 % e == 0) {printf "| %d | %s | %s |\n", $1, f($4), f($8)}'
} | tee "$out/fashion_linear.md"
{
  echo "step,plain_l2_loss,nd_l2_loss"
  paste -d, "$out/none/steps.csv" "$out/nd/steps.csv" | tail -n +2 | awk -F, '{print $1 "," $4 "," $8}'
} >"$out/fashion_linear.csv"
bash scripts/matplotlib.sh scripts/plot_curves.py --run plain="$out/none" --run ND="$out/nd" \
  --output "$out/fashion_linear.png" --panels loss --smooth 1 --log-loss \
  --title "Fashion-MNIST linear model 784->10, L2 loss, one epoch${*:+ ($*)}" >&2
