#!/usr/bin/env bash
# The paper's Fashion-MNIST MLP experiment: the MLP 784-128-128-10 (sigmoid) plain, with batch
# norm and with ChannelDeconv(32), the reference recipe (batch 512, lr 0.1, momentum 0.9,
# wd 5e-4, cosine, 20 epochs), then one table of per-epoch training loss and test accuracy
# (printed, and OUT/fashion_mlp.md + .csv) and the curves (OUT/fashion_mlp.png: the test
# accuracy of the paper's Figure 6, right). Resumable: finished runs are not trained again, a
# killed one resumes (scripts/lib/cells.sh; extra flags apply to new runs only).
# Usage: scripts/fashion_mlp.sh [extra nd-train flags]   (EPOCHS=20, OUT=runs/fashion-mlp)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/cells.sh
ensure_nd_train
epochs=${EPOCHS:-20}
out=${OUT:-runs/fashion-mlp}
for norm in none bn nd; do
  run_cell "$out/$norm" "$epochs" --dataset fashion-mnist --arch mlp --norm "$norm" "$@"
done
cells_failed_exit fashion_mlp.sh
{
  echo "| epoch | plain loss | plain test % | BN loss | BN test % | ND loss | ND test % |"
  echo "|---|---|---|---|---|---|---|"
  paste -d, "$out/none/summary.csv" "$out/bn/summary.csv" "$out/nd/summary.csv" | tail -n +2 |
    awk -F, '{printf "| %d | %.4f | %.2f | %.4f | %.2f | %.4f | %.2f |\n", $1, $3, $6, $12, $15, $21, $24}'
  echo
  for norm in none bn nd; do
    tail -n +2 "$out/$norm/summary.csv" | cut -d, -f8 | sort -g |
      awk -v n="$norm" '{v[NR]=$1} END {printf "--norm %-4s median epoch %.2f s\n", n, (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
  done
} | tee "$out/fashion_mlp.md"
{
  echo "epoch,plain_loss,plain_test_top1,bn_loss,bn_test_top1,nd_loss,nd_test_top1"
  paste -d, "$out/none/summary.csv" "$out/bn/summary.csv" "$out/nd/summary.csv" | tail -n +2 |
    awk -F, '{printf "%d,%s,%s,%s,%s,%s,%s\n", $1, $3, $6, $12, $15, $21, $24}'
} >"$out/fashion_mlp.csv"
bash scripts/matplotlib.sh scripts/plot_curves.py --run plain="$out/none" --run BN="$out/bn" \
  --run ND="$out/nd" --output "$out/fashion_mlp.png" \
  --title "Fashion-MNIST MLP 784-128-128-10 (sigmoid), batch 512, $epochs epochs" >&2
