#!/usr/bin/env bash
# Installs every build and test dependency of facecluster from Debian's packages.
# Safe to run again: apt-get install is a no-op for packages already present.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build pkg-config \
  libtorch-dev libfaiss-dev libopenblas-dev libyaml-cpp-dev libcli11-dev \
  libzip-dev zlib1g-dev libomp-dev libdnnl-dev \
  libgtest-dev libgmock-dev libbenchmark-dev \
  pybind11-dev python3-dev python3-numpy python3-pytest \
  python3-pip python3-venv python3-setuptools python3-wheel \
  clang libclang-rt-dev libigraph-dev libopenmpi-dev openmpi-bin \
  chromium >/dev/null  # pip, venv, setuptools: `pip install .` (pyproject.toml, setup.py); clang + compiler-rt: the libFuzzer targets; chromium: screenshots of report.html; igraph: the Infomap baseline of bench_family; Open MPI: the distributed build
echo "facecluster: dependencies installed"
