#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the build, tests and main job need (run as root, or with
# sudo available). Skips everything when all are present, so it is cheap to call every time.
set -euo pipefail
packages=(cmake g++ make catch2 libopenblas-dev zlib1g-dev libcli11-dev nlohmann-json3-dev
          libstb-dev dataset-fashion-mnist python3-skimage python3-matplotlib)
packages+=(openmpi-bin libopenmpi-dev)  # data-parallel training and its tests (docs/distributed.md)
packages+=(libjpeg62-turbo-dev)  # JPEG decoding safe on corrupt files (data/jpeg_decoder.h)
packages+=(libdnnl-dev libopenblas-openmp-dev)  # CPU convolutions on oneDNN, one OpenMP pool with BLAS
packages+=(libboost-context-dev)  # the device emulator's fibers (emu/, docs/gpu.md "Emulation")
packages+=(ccache)  # build/ and build-emu/ share most compiles (CMakeLists.txt, ND_CCACHE)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
