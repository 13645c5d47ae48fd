#!/usr/bin/env bash
# Installs the Debian packages ntkit needs, only those missing. Usage:
#   scripts/install-deps.sh [build|python|test|all]   (default: build)
# build: compiler, CMake, BLAS/LAPACK, zlib, libzip, CLI11, Eigen + Spectra (Lanczos) and the Fashion-MNIST data set.
# python: build + what `pip install .`, the package and its quick start use: Python headers, venv,
#         NumPy, tqdm, PyTorch (from_torch and the demo's functorch peer), torchvision (its ResNets in the
#         tests), matplotlib (the demo's plots).
# test:  build + python + GoogleTest, Google Benchmark, clang (fuzzing), pytest (oracles).
set -euo pipefail
profile=${1:-build}

build_pkgs=(g++ cmake make pkg-config libopenblas-dev liblapacke-dev zlib1g-dev libzip-dev libcli11-dev libeigen3-dev libspectra-dev libkissfft-dev
            dataset-fashion-mnist)
python_pkgs=(python3 python3-dev python3-venv python3-numpy python3-tqdm python3-torch python3-torchvision python3-matplotlib)
test_pkgs=(libgtest-dev libbenchmark-dev python3-pytest clang)

case "$profile" in
  build) pkgs=("${build_pkgs[@]}") ;;
  python) pkgs=("${build_pkgs[@]}" "${python_pkgs[@]}") ;;
  test|all) pkgs=("${build_pkgs[@]}" "${python_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "error: unknown profile '$profile' (use build, python, test or all)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
