#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs an example computation on real data:
# initializes the CNN of the PyTorch peer and runs it over Fashion-MNIST test images.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
scripts/build.sh build -DNTK_BUILD_TESTS=OFF -DNTK_BUILD_BENCH=OFF
out=${1:-ntk-demo-report}
mkdir -p "$out"
data=/usr/share/datasets/fashion-mnist
spec="Conv(64, 3, padding=SAME, b_std=0), Relu, Conv(64, 3, padding=SAME, b_std=0), Relu, GlobalAvgPool, Dense(10, b_std=0)"
set -x
build/ntk init --net "$spec" --parameterization standard --input-shape 28,28,1 --seed 0 -o "$out/cnn_params.npz"
time build/ntk apply --net "$spec" --parameterization standard --params "$out/cnn_params.npz" \
  -x "$data/t10k-images-idx3-ubyte.gz" -o "$out/cnn_outputs.npy"
