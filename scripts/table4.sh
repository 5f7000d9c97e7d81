#!/usr/bin/env bash
# Table 4 of the reproduction report: network deconvolution at batch size 2 / 8 / 32 / 128, each
# with the learning rate, eps and epochs of its row (scripts/published/sweep_table4.tsv), on one
# network and data set (the report does not name them; default ResNet-18 on CIFAR-10), otherwise
# the reference's CIFAR recipe (SGD momentum 0.9, weight decay 1e-3, cosine per iteration,
# Delinear(512) classifier). Then table4.md/table4.csv beside the published row
# (scripts/tables.py). Resumable (scripts/lib/cells.sh).
#
# Usage: scripts/table4.sh [--arch resnet18] [--dataset cifar10] [--data-dir DIR]
#          [--batch-sizes 2,8,32,128] [--train-limit N] [--test-limit N] [--runs DIR]
#          [--device D] [--out DIR] [--table-only]
#   --runs DIR   run directories DIR/b<batch size> (default runs/table4/<arch>-<dataset>)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/cells.sh

arch=resnet18
dataset=cifar10
data=()
batch_sizes=""
limits=()
runs=""
out=""
table_only=0
note="the full data set"
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=$2; shift 2 ;;
    --dataset) dataset=$2; shift 2 ;;
    --data-dir) data=(--data-dir "$2"); shift 2 ;;
    --batch-sizes) batch_sizes=$2; shift 2 ;;
    --train-limit) limits+=(--train-limit "$2"); note="the first $2 training images"; shift 2 ;;
    --test-limit) limits+=(--test-limit "$2"); shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --device) CELL_DEVICE=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --table-only) table_only=1; shift ;;
    -h|--help) print_usage "$0"; exit 0 ;;
    *) echo "table4.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
runs=${runs:-runs/table4/$arch-$dataset}
out=${out:-$runs}

if [ "$table_only" -eq 0 ]; then
  ensure_nd_train
  # batch_size accuracy lr eps epochs, one published row per line
  while IFS=$'\t' read -r batch _ lr eps epochs; do
    if [ -n "$batch_sizes" ] && [[ ",$batch_sizes," != *",$batch,"* ]]; then continue; fi
    run_cell "$runs/b$batch" "$epochs" --dataset "$dataset" "${data[@]}" --arch "$arch" --norm nd \
      --batch-size "$batch" --lr "$lr" --eps "$eps" --momentum 0.9 --wd 1e-3 \
      --lr-scheduler cosine "${limits[@]}"
  done < <(grep -v '^#' scripts/published/sweep_table4.tsv)
fi
python3 scripts/tables.py table4 --runs "$runs" --arch "$arch" --dataset "$dataset" \
  --note "$note" --out "$out"
cells_failed_exit table4.sh
