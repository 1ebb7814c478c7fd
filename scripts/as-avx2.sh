#!/usr/bin/env bash
# Runs a command with the math libraries held to their AVX2 kernels, to measure on an AVX-512
# machine what an AVX2-only CPU of the same clock and memory would reach (issue 14):
# OpenBLAS's Haswell kernels (libtorch's fp32 products and the blocked kNN's sgemm), ATen's AVX2
# code paths, oneDNN's AVX2 kernels. Not held back: faiss (compiled for one ISA) and our own
# target_clones dots (chosen from the CPU's features), a small share of the work; and bf16, which
# AVX2 lacks: pass --precision fp32 / --knn-precision fp32 to stay off it.
# Usage: bash scripts/as-avx2.sh build/bench/bench_model --benchmark_filter='BM_Inference/512/0'
set -euo pipefail
[ $# -ge 1 ] || { echo "facecluster: error: usage: scripts/as-avx2.sh COMMAND [ARGS...]" >&2; exit 1; }
export OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
# OPENBLAS_VERBOSE=2 makes OpenBLAS print the core it chose ("Core: Haswell") when it loads.
export OPENBLAS_VERBOSE=${OPENBLAS_VERBOSE:-2}
exec "$@"
