#!/usr/bin/env bash
# Fills .gpu_carry/ (git-ignored) with what the GPU machine lacks and the check needs: the four
# Fashion-MNIST files (about 30 MB) for the MLP epochs. stb is not carried: the GPU build leaves
# the optional image-folder reader out (CMake says so), and the check reads no image folder.
# Then prints the device call to make (the README's "GPU check" section says the same).
set -euo pipefail
cd "$(dirname "$0")/.."
src=/usr/share/datasets/fashion-mnist
[ -f "$src/train-images-idx3-ubyte.gz" ] ||
  { echo "gpu_carry.sh: $src is missing: run scripts/install_deps.sh (dataset-fashion-mnist)" >&2; exit 1; }
mkdir -p .gpu_carry/fashion-mnist
cp "$src"/*-ubyte.gz .gpu_carry/fashion-mnist/
git check-ignore -q .gpu_carry || { echo "gpu_carry.sh: .gpu_carry is not git-ignored" >&2; exit 1; }
bytes=$(du -sb .gpu_carry | cut -f1)
[ "$bytes" -lt $((60 << 20)) ] || { echo "gpu_carry.sh: .gpu_carry is $bytes bytes, over the 64 MiB carry limit" >&2; exit 1; }
echo "carry ready: .gpu_carry ($((bytes >> 20)) MiB)"
echo "device call: command \"bash scripts/gpu_check.sh\", carry [\".gpu_carry\"], timeout_s 480"
