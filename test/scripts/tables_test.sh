#!/usr/bin/env bash
# scripts/table3.sh and table4.sh --table-only on planted runs (no training): every published row
# is printed with ours beside it, a finished run's accuracy and the differences are the numbers a
# person computes by hand, runs not made show "-", and table3.sh refuses a half-given subset.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$repo"
plant() {  # plant DIR EPOCHS TOP1 TOP5: a finished run's summary.csv
  mkdir -p "$1"
  echo "epoch,lr,train_loss,train_top1,test_loss,test_top1,test_top5,seconds,images_per_s" >"$1/summary.csv"
  for ((e = 1; e <= $2; e++)); do echo "$e,0.1,1,50,1,$3,$4,10,100" >>"$1/summary.csv"; done
}
plant "$tmp/t3/resnet18-nd-e2-s0" 2 70.00 90.00
plant "$tmp/t3/vgg11-none-e2-s0" 1 60.00 80.00  # stopped after 1 of 2 epochs: not finished
bash scripts/table3.sh --table-only --epochs 2 --runs "$tmp/t3" >"$tmp/t3.md" 2>/dev/null
grep -q "| ResNet-18 ND | \*\*70.00\*\* | \*\*90.00\*\* | 71.24 | 90.14 | 72.42 | 91.41 | -1.24 | -2.42 | 20 |" "$tmp/t3.md"
grep -q "| VGG-11 simple | - | - | 69.02 | 88.63 | - | - | - | - | - |" "$tmp/t3.md"
[ "$(grep -c '^| [VRD]' "$tmp/t3.md")" -eq 7 ]
grep -q "^VGG-11 simple,vgg11,none,2,running," "$tmp/t3/table3.csv"

plant "$tmp/t4/b32" 5 90.00 99.00
bash scripts/table4.sh --table-only --runs "$tmp/t4" >"$tmp/t4.md" 2>/dev/null
grep -q "| 32 | 0.01 | 1e-5 | 5 | \*\*90.00\*\* | 91.89 | -1.89 | 50 |" "$tmp/t4.md"
grep -q "| 2 | 0.001 | 0.01 | 2 | - | 87.91 | - | - |" "$tmp/t4.md"
[ "$(tail -n +2 "$tmp/t4/table4.csv" | wc -l)" -eq 4 ]

if bash scripts/table3.sh --subset-classes 5 --runs "$tmp/t3" >/dev/null 2>"$tmp/err"; then
  echo "table3.sh accepted --subset-classes without --subset-images"; exit 1
fi
grep -q "go together" "$tmp/err"
echo "tables: ok"
