#!/usr/bin/env bash
# CPU epoch time of the Fashion-MNIST MLP recipe (batch 512, lr 0.1, momentum 0.9, wd 5e-4,
# cosine; training pass + test pass), the median over EPOCHS epochs, against the anchor of
# PyTorch (Debian's CPU build with OpenBLAS, 2 threads, same recipe): 1.4 s per epoch.
# Usage: bench/fashion_epoch.sh [--norm none|bn] [more nd-train flags]   (EPOCHS=5 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/bin/nd-train ] || bash scripts/build.sh >/dev/null
epochs=${EPOCHS:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
./build/bin/nd-train --arch mlp --device cpu --epochs "$epochs" --output "$out" "$@" >/dev/null
median=$(tail -n +2 "$out/summary.csv" | cut -d, -f7 | sort -g |
  awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
imgs=$(tail -n +2 "$out/summary.csv" | cut -d, -f8 | sort -g |
  awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
echo "fashion-mnist mlp $*: median epoch ${median} s over ${epochs} epochs (train ${imgs} img/s);" \
  "PyTorch anchor 1.4 s -> $(awk -v m="$median" 'BEGIN {printf "%.2fx", 1.4 / m}') faster"
