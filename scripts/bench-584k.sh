#!/usr/bin/env bash
# Issue 14's end-to-end numbers at MS1M scale (584,013 faces x 256, the size of MS1M part1_test),
# training-free, on whatever machine runs it:
#   1. synth the split (once; kept in $FC_WORK);
#   2. the kNN graph with the blocked index, its recall@80 on 1,000 sampled rows against exact search;
#   3. `cluster` end to end from the features (blocked kNN, calibration, graph stage, cut, scores,
#      results written): wall time and peak memory (/usr/bin/time), and each stage's line;
#   4. the baseline in the same run: the release's graph stage (`--calibrate off --tau 0.7`) on
#      the same cached graph, so the default's extra cost after the kNN is a ratio, not a guess.
#   5. with FC_MODEL=1: `cluster --model default --precision bf16` end to end (the shipped model; bf16
#      where the CPU has AVX-512, else libtorch falls back to fp32 with a warning).
# Usage: bash scripts/bench-584k.sh        (FC_N=100000 for a quicker look; FC_WORK=DIR; FACECLUSTER=path)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${FC_N:-584013}
WORK=${FC_WORK:-/tmp/facecluster-bench-$N}
FC=${FACECLUSTER:-build/facecluster}
[ -x "$FC" ] || { echo "facecluster: error: $FC not built (cmake --build build)" >&2; exit 1; }
mkdir -p "$WORK"
echo "== machine: $(nproc) cores; cpu features: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
  grep -E '^(avx2|fma|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|amx_tile|amx_bf16)$' | tr '\n' ' ')"
if [ ! -s "$WORK/faces.bin" ]; then
  echo "== synth $N x 256 (seed 3)"
  "$FC" synth -n "$N" -d 256 --seed 3 -o "$WORK/faces"
fi
wall() { /usr/bin/time -f '%e s wall, %M KiB peak' "$@"; }

echo "== kNN graph, blocked index, recall@80 on 1,000 rows"
wall "$FC" knn -f "$WORK/faces.bin" -d 256 --index blocked -o "$WORK/knn.npz" --recall-sample 1000 2>&1 |
  grep -E 'stage\]|recall|wall'

echo "== cluster end to end (the default index, auto: blocked at this size, built again inside; training-free default)"
rm -rf "$WORK/out" && mkdir -p "$WORK/out"
wall "$FC" cluster -f "$WORK/faces.bin" -d 256 -l "$WORK/faces.meta" -o "$WORK/out" 2>&1 |
  grep -E 'stage\]|knn: auto|auto: tau|^pairwise|^bcubed|wall'

echo "== the default after the kNN, on the cached graph, against the release's graph stage (same run)"
seconds() { /usr/bin/time -f '%e' -o "$WORK/time.txt" "$@" >/dev/null 2>&1; cat "$WORK/time.txt"; }
default_s=$(seconds "$FC" cluster -f "$WORK/faces.bin" -d 256 --knn "$WORK/knn.npz")
release_s=$(seconds "$FC" cluster -f "$WORK/faces.bin" -d 256 --knn "$WORK/knn.npz" --calibrate off --tau 0.7)
echo "default (calibration + graph stage + likelihood cut): $default_s s; release graph stage: $release_s s; ratio $(awk -v a="$default_s" -v b="$release_s" 'BEGIN { printf "%.2f", a / b }')"

if [ "${FC_MODEL:-0}" = 1 ]; then
  echo "== cluster end to end with the shipped model, bf16"
  rm -rf "$WORK/out-model" && mkdir -p "$WORK/out-model"
  wall "$FC" cluster -f "$WORK/faces.bin" -d 256 -l "$WORK/faces.meta" --model default --precision bf16 -o "$WORK/out-model" 2>&1 |
    grep -E 'stage\]|knn: auto|^pairwise|^bcubed|wall|warn'
fi
