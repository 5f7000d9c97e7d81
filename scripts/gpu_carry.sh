#!/usr/bin/env bash
# Fills .gpu_carry/ (git-ignored) with what the GPU machine lacks: the Fashion-MNIST files.
# Name .gpu_carry in the device call's carry list.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu_carry/fashion-mnist
cp /usr/share/datasets/fashion-mnist/*.gz .gpu_carry/fashion-mnist/
du -sh .gpu_carry
