#!/usr/bin/env bash
# The paper's Fashion-MNIST MLP experiment: the MLP 784-128-128-10 (sigmoid) plain, with batch
# norm and with ChannelDeconv(32), the reference recipe (batch 512, lr 0.1, momentum 0.9,
# wd 5e-4, cosine, 20 epochs), then one table of per-epoch training loss and test accuracy.
# Usage: scripts/fashion_mlp.sh [extra nd-train flags]   (EPOCHS=20, OUT=runs/fashion-mlp)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/bin/nd-train ] || bash scripts/build.sh >/dev/null
epochs=${EPOCHS:-20}
out=${OUT:-runs/fashion-mlp}
for norm in none bn nd; do
  echo "== --norm $norm" >&2
  ./build/bin/nd-train --dataset fashion-mnist --arch mlp --norm "$norm" --epochs "$epochs" --output "$out/$norm" "$@" >&2
done
echo "| epoch | plain loss | plain test % | BN loss | BN test % | ND loss | ND test % |"
echo "|---|---|---|---|---|---|---|"
paste -d, "$out/none/summary.csv" "$out/bn/summary.csv" "$out/nd/summary.csv" | tail -n +2 |
  awk -F, '{printf "| %d | %.4f | %.2f | %.4f | %.2f | %.4f | %.2f |\n", $1, $3, $6, $12, $15, $21, $24}'
echo
for norm in none bn nd; do
  tail -n +2 "$out/$norm/summary.csv" | cut -d, -f8 | sort -g |
    awk -v n="$norm" '{v[NR]=$1} END {printf "--norm %-4s median epoch %.2f s\n", n, (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
done
