#!/usr/bin/env bash
# Installs the dependencies, builds facecluster (Release) and runs the built-in demo:
# synthetic faces -> exact kNN graph -> training-free, self-calibrated clustering -> scores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFACECLUSTER_BUILD_TESTS=OFF
cmake --build build --target facecluster_cli
./build/facecluster demo "$@"
