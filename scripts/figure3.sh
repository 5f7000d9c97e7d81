#!/usr/bin/env bash
# Figure 3 of the paper (and of the reproduction report): training loss and test accuracy of one
# network with batch norm (BN) against deconvolution (ND), the reference's CIFAR recipe. The runs
# are Table 1 cells (RUNS/<dataset>/<arch>-<norm>-e<epochs>-s0, as scripts/table1.sh names them),
# so runs table1.sh made are reused and vice versa; finished runs are not trained again, a killed
# one resumes. Writes OUT/figure3-<dataset>-<arch>-e<epochs>.png and its .csv
# (scripts/plot_curves.py).
# EfficientNet-B0: the ND curve is the reference's form of the network (only the stem
# deconvolved, the blocks with batch norm: nd-train --ref-compat, cell efficientnetb0-ndref-*),
# the form the paper measured; our form with every convolution deconvolved (cell
# efficientnetb0-nd-*, Table 1's "all deconvolved" row) is drawn as a third curve. Batch norm is
# the same network in both forms: one BN curve.
#
# Usage: scripts/figure3.sh [--arch vgg16] [--dataset cifar10] [--epochs 20] [--data-dir ROOT]
#          [--train-limit N] [--test-limit N] [--runs DIR] [--device D] [--out DIR] [--quick]
#   --quick   Fashion-MNIST read directly (a stand-in for CIFAR-10), efficientnetb0, 3 epochs on
#             the first 2048 training and 1000 test images (runs/figure3-quick); options given
#             explicitly change these settings
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/cells.sh

arch=""
dataset=""
epochs=""
data_root=""
train_limit=""
test_limit=""
runs=""
out=""
quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=$2; shift 2 ;;
    --dataset) dataset=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --data-dir) data_root=$2; shift 2 ;;
    --train-limit) train_limit=$2; shift 2 ;;
    --test-limit) test_limit=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --device) CELL_DEVICE=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) print_usage "$0"; exit 0 ;;
    *) echo "figure3.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$quick" -eq 1 ]; then
  arch=${arch:-efficientnetb0}
  dataset=${dataset:-fashion-mnist}
  epochs=${epochs:-3}
  train_limit=${train_limit:-2048}
  test_limit=${test_limit:-1000}
  runs=${runs:-runs/figure3-quick}
fi
arch=${arch:-vgg16}
dataset=${dataset:-cifar10}
epochs=${epochs:-20}
runs=${runs:-runs/table1}
out=${out:-$runs}
extra=()
[ -n "$data_root" ] && extra+=(--data-dir "$data_root/$dataset")
[ -n "$train_limit" ] && extra+=(--train-limit "$train_limit")
[ -n "$test_limit" ] && extra+=(--test-limit "$test_limit")

ensure_nd_train
curves=()
for norm in $(table1_norms "$arch"); do
  # shellcheck disable=SC2046  # norm_flags gives separate words
  run_cell "$runs/$dataset/$arch-$norm-e$epochs-s0" "$epochs" --dataset "$dataset" --arch "$arch" \
    $(norm_flags "$norm") --seed 0 --batch-size 128 --wd 1e-3 --lr 0.1 --momentum 0.9 \
    --lr-scheduler cosine "${extra[@]}"
  case $arch/$norm in
    */bn) label=BN ;;
    efficientnetb0/ndref) label="ND (reference form: stem only)" ;;
    efficientnetb0/nd) label="ND (all deconvolved)" ;;
    *) label=ND ;;
  esac
  curves+=(--run "$label=$runs/$dataset/$arch-$norm-e$epochs-s0")
done
cells_failed_exit figure3.sh
images=""
[ -n "$train_limit" ] && images=", first $train_limit training images"
bash scripts/matplotlib.sh scripts/plot_curves.py "${curves[@]}" \
  --output "$out/figure3-$dataset-$arch-e$epochs.png" \
  --title "$arch on $dataset$images, batch 128, $epochs epochs: batch norm against deconvolution"
