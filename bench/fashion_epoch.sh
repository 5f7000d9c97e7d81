#!/usr/bin/env bash
# CPU epoch time of the Fashion-MNIST MLP recipe (batch 512, lr 0.1, momentum 0.9, wd 5e-4,
# cosine; training pass + test pass), the median over EPOCHS epochs, against the anchors of
# PyTorch (Debian's CPU build with OpenBLAS, 2 threads, same recipe): 1.4 s per epoch for the
# plain MLP, 3.5 s with the reference's deconvolution layers (no anchor for batch norm).
# Usage: bench/fashion_epoch.sh [--norm none|bn|nd] [more nd-train flags]   (plain MLP without
# --norm; EPOCHS=5 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/bin/nd-train ] || bash scripts/build.sh >/dev/null
epochs=${EPOCHS:-5}
# nd-train's own default is batch norm; this benchmark's is the plain MLP of the anchor.
case " $* " in
  *" --norm "*) ;;
  *) set -- --norm none "$@" ;;
esac
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
./build/bin/nd-train --dataset fashion-mnist --arch mlp --device cpu --epochs "$epochs" --output "$out" "$@" >/dev/null
median=$(tail -n +2 "$out/summary.csv" | cut -d, -f8 | sort -g |
  awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
imgs=$(tail -n +2 "$out/summary.csv" | cut -d, -f9 | sort -g |
  awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
anchor=1.4
case " $* " in
  *" --norm nd "*) anchor=3.5 ;;
  *" --norm bn "*) anchor="" ;;
esac
line="fashion-mnist mlp $*: median epoch ${median} s over ${epochs} epochs (train ${imgs} img/s)"
if [ -n "$anchor" ]; then
  line="$line; PyTorch anchor $anchor s -> $(awk -v m="$median" -v a="$anchor" 'BEGIN {printf "%.2fx", a / m}') as fast"
fi
echo "$line"
