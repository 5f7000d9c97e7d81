#!/usr/bin/env bash
# Table 3 of the paper: ImageNet top-1/top-5 of VGG-11 (also without normalisation, the paper's
# "simple"), ResNet-18 and DenseNet-121, batch norm against deconvolution, from an image folder in
# the ImageNet layout (DIR/train/<class>/*, DIR/val/<class>/*), with the reference's ImageNet
# recipe: SGD lr 0.1 (0.01 for VGG-11 ND, as the reference sets it), momentum 0.9, weight decay
# 1e-4, batch 256, 90 epochs, cosine per iteration, RandomResizedCrop + flip / Resize + CenterCrop.
# --subset-classes K --subset-images N trains on the first K classes (sorted) and N training
# images spread evenly over them, as the reproduction report did (about 1000 images, fewer
# classes, batch 128: the batch defaults to 128 with a subset). Then table3.md/table3.csv with ours
# beside the paper's and the report's numbers (scripts/tables.py). Resumable (scripts/lib/cells.sh).
#
# Usage: scripts/table3.sh --data-dir DIR [--subset-classes K --subset-images N]
#          [--subset-val-images M] [--nets vgg11,resnet18,densenet121] [--epochs 90]
#          [--batch-size B] [--image-size 224] [--workers N] [--runs DIR] [--device D]
#          [--seeds N] [--out DIR] [--table-only]
#   --subset-val-images M  validation images per class of the subset (default: all of them)
#   --runs DIR             run directories DIR/<arch>-<norm>-e<epochs>-s<seed>, the subset's
#                          links in DIR/subset (default runs/table3)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/cells.sh

data_dir=data/imagenet
classes=0
images=0
val_images=0
nets=vgg11,resnet18,densenet121
epochs=90
batch=""
image_size=224
workers=2
runs=runs/table3
seeds=1
out=""
table_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --data-dir) data_dir=$2; shift 2 ;;
    --subset-classes) classes=$2; shift 2 ;;
    --subset-images) images=$2; shift 2 ;;
    --subset-val-images) val_images=$2; shift 2 ;;
    --nets) nets=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --image-size) image_size=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --device) CELL_DEVICE=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --table-only) table_only=1; shift ;;
    -h|--help) print_usage "$0"; exit 0 ;;
    *) echo "table3.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
out=${out:-$runs}
note="the image folder $data_dir"
if [ "$classes" -gt 0 ] || [ "$images" -gt 0 ]; then
  [ "$classes" -gt 0 ] && [ "$images" -ge "$classes" ] ||
    { echo "table3.sh: --subset-classes K and --subset-images N >= K go together" >&2; exit 2; }
  batch=${batch:-128}
  note="the first $classes classes of $data_dir, $images training images"
fi
batch=${batch:-256}

# Symbolic links to the subset (made once; the parameters are kept in its SUBSET file).
make_subset() {
  local subset=$runs/subset spec="$data_dir $classes $images $val_images"
  if [ -f "$subset/SUBSET" ] && [ "$(cat "$subset/SUBSET")" = "$spec" ]; then return; fi
  [ -d "$data_dir/train" ] && [ -d "$data_dir/val" ] ||
    { echo "table3.sh: $data_dir needs train/ and val/ class folders (the ImageNet layout)" >&2; exit 1; }
  rm -rf "$subset"
  local per_class=$((images / classes)) cls split count
  local pattern='.*\.\(jpg\|jpeg\|png\|bmp\|ppm\)'
  for cls in $(find "$data_dir/train" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort | head -n "$classes"); do
    for split in train val; do
      count=$per_class
      [ "$split" = val ] && count=$val_images
      mkdir -p "$subset/$split/$cls"
      find -L "$(cd "$data_dir/$split/$cls" && pwd)" -type f -iregex "$pattern" | sort |
        { if [ "$count" -gt 0 ]; then head -n "$count"; else cat; fi; } |
        while read -r f; do ln -s "$f" "$subset/$split/$cls/"; done
    done
  done
  echo "$spec" >"$subset/SUBSET"
  echo "table3.sh: subset of $(find "$subset/train" -type l | wc -l) training and" \
    "$(find "$subset/val" -type l | wc -l) validation images in $subset" >&2
}

if [ "$table_only" -eq 0 ]; then
  ensure_nd_train
  train_dir=$data_dir
  if [ "$classes" -gt 0 ]; then
    make_subset
    train_dir=$runs/subset
  fi
  for net in $(words "$nets"); do
    norms="bn nd"
    [ "$net" = vgg11 ] && norms="none bn nd"
    for norm in $norms; do
      lr=0.1
      [ "$net-$norm" = vgg11-nd ] && lr=0.01
      for ((seed = 0; seed < seeds; seed++)); do
        run_cell "$runs/$net-$norm-e$epochs-s$seed" "$epochs" --dataset imagenet \
          --data-dir "$train_dir" --arch "$net" --norm "$norm" --seed "$seed" --batch-size "$batch" \
          --lr "$lr" --momentum 0.9 --wd 1e-4 --lr-scheduler cosine --image-size "$image_size" \
          --workers "$workers"
      done
    done
  done
fi
python3 scripts/tables.py table3 --runs "$runs" --epochs "$epochs" --seeds "$seeds" \
  --note "$note, batch $batch, ${image_size}px" --out "$out"
cells_failed_exit table3.sh
