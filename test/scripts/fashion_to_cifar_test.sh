#!/usr/bin/env bash
# scripts/fashion_to_cifar.py end to end: converts a slice of the real Fashion-MNIST into the
# CIFAR-10 binary format, checks the record layout, and trains a CIFAR network on it with
# nd-train for one epoch. Usage: fashion_to_cifar_test.sh PATH/TO/nd-train
set -euo pipefail
nd_train=$1
repo=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$repo/scripts/fashion_to_cifar.py" --dst "$tmp/cifar" --train-limit 100 --test-limit 40
for b in 1 2 3 4 5; do
  size=$(stat -c %s "$tmp/cifar/data_batch_$b.bin")
  [ "$size" -eq $((20 * 3073)) ] || { echo "data_batch_$b.bin has $size bytes"; exit 1; }
done
[ "$(stat -c %s "$tmp/cifar/test_batch.bin")" -eq $((40 * 3073)) ]
# First record: the label byte, then a black 2-pixel border in each plane.
python3 - "$tmp/cifar/data_batch_1.bin" <<'PY'
import sys
rec = open(sys.argv[1], "rb").read(3073)
assert rec[0] < 10, rec[0]
planes = [rec[1 + p * 1024:1 + (p + 1) * 1024] for p in range(3)]
assert planes[0] == planes[1] == planes[2], "planes differ"
assert max(planes[0][:64]) == 0 and max(planes[0][-64:]) == 0, "border not black"
assert max(planes[0]) > 0, "image empty"
PY
"$nd_train" --dataset cifar10 --data-dir "$tmp/cifar" --arch pnasnetA --norm nd --epochs 1 \
  --batch-size 50 --device cpu --workers 2 --output "$tmp/run" | tee "$tmp/log"
[ "$(wc -l < "$tmp/run/summary.csv")" -eq 2 ]
[ -f "$tmp/run/last.safetensors" ]
echo "fashion_to_cifar: ok"
