#!/usr/bin/env bash
# Installs the dependencies, builds, and runs the whole test suite:
#  1. Release build: every C++ test (ctest) and the Python tests (pytest, Debian's python3);
#  2. AddressSanitizer + UndefinedBehaviorSanitizer build of the core (I/O, graph, metrics,
#     config, synthetic data) and its tests;
#  3. the libFuzzer targets (fuzz/, clang) replayed on their seed corpus (scripts/fuzz.sh fuzzes);
#  4. the MPI build (-DFACECLUSTER_WITH_MPI=ON, Open MPI): mpirun with 1, 2 and 4 processes gives
#     the one-process results (tests/mpi/check_mpi.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
JOBS=${JOBS:-$(nproc)}

echo "== Release build and tests"
# -DFACECLUSTER_WERROR=ON: a warning in our sources fails the build (GCC here, clang for the fuzz targets).
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFACECLUSTER_BUILD_TESTS=ON -DFACECLUSTER_WERROR=ON  # demo.sh may have turned tests off
cmake --build build -j "$JOBS"
(cd build && ctest -j "$JOBS" --output-on-failure --no-tests=error --timeout 600)

echo "== Python tests"
# pytest exits 5 when it collects no tests: that fails here like any other error.
FACECLUSTER_BUILD="$PWD/build" PYTHONPATH="$PWD/build/python${PYTHONPATH:+:$PYTHONPATH}" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python

echo "== Sanitizer build (ASan + UBSan) and core tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFACECLUSTER_WERROR=ON -DFACECLUSTER_SANITIZE=ON -DFACECLUSTER_WITH_FAISS=OFF -DFACECLUSTER_WITH_TORCH=OFF
cmake --build build-asan -j "$JOBS"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest -j "$JOBS" --output-on-failure --no-tests=error -L core --timeout 600)
echo "== Fuzz targets (clang, libFuzzer, ASan + UBSan) replayed on their seed corpus"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFACECLUSTER_WERROR=ON -DFACECLUSTER_FUZZ=ON \
  -DFACECLUSTER_WITH_FAISS=OFF -DFACECLUSTER_BUILD_TESTS=OFF
cmake --build build-fuzz -j "$JOBS"
(cd build-fuzz && ctest -j "$JOBS" --output-on-failure --no-tests=error -L fuzz --timeout 600)
echo "== MPI build and distributed tests (mpirun, 1/2/4 processes)"
cmake -S . -B build-mpi -G Ninja -DCMAKE_BUILD_TYPE=Release -DFACECLUSTER_WERROR=ON -DFACECLUSTER_WITH_MPI=ON \
  -DFACECLUSTER_BUILD_TESTS=OFF -DFACECLUSTER_BUILD_BENCH=OFF -DFACECLUSTER_BUILD_PYTHON=OFF
cmake --build build-mpi -j "$JOBS"
(cd build-mpi && ctest --output-on-failure --no-tests=error -L mpi --timeout 1200)
echo "facecluster: all tests passed"
