#!/usr/bin/env bash
# Scale of the distributed run (issue 16, docs/distributed.md): mpirun with P = 1, 2, 4 processes
# on one feature file; per process the peak memory and the bytes it sent per stage, the stage
# times of process 0, and whether the labels match the P = 1 run.
# Usage: scripts/bench-mpi.sh FEATURES.bin DIM [LABELS.meta]
#   FC_MPI_PROCS="1 2 4" (process counts), FC_MPI_OUT=DIR (logs and results; default a temp folder)
# On one machine the processes share its cores (oversubscribed): the times are not the point,
# the memory per process and the bytes on the wire are.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
features=$1
dim=$2
labels=${3:-}
procs=${FC_MPI_PROCS:-"1 2 4"}
out=${FC_MPI_OUT:-$(mktemp -d)}
mkdir -p "$out"
build="$root/build-mpi"
if [ ! -x "$build/facecluster" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFACECLUSTER_WITH_MPI=ON -DFACECLUSTER_WITH_TORCH=OFF \
    -DFACECLUSTER_BUILD_TESTS=OFF -DFACECLUSTER_BUILD_BENCH=OFF -DFACECLUSTER_BUILD_PYTHON=OFF >/dev/null
  cmake --build "$build" -j "$(nproc)" >/dev/null
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores;" \
  "features: $(grep -m1 -o -w -E 'avx2|avx512f|avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "input: $features (dim $dim), $(($(stat -c %s "$features") / (4 * dim))) rows; results in $out"
label_flag=()
[ -n "$labels" ] && label_flag=(-l "$labels")
first=""
for p in $procs; do
  threads=$(( $(nproc) / p )); [ "$threads" -ge 1 ] || threads=1
  start=$(date +%s.%N)
  # --bind-to none: Open MPI would pin a lone process (and its threads) to one core.
  /usr/bin/time -f "%e" -o "$out/np$p.time" mpirun --bind-to none -np "$p" "$build/facecluster" --threads "$threads" cluster \
    -f "$features" -d "$dim" "${label_flag[@]}" -o "$out/np$p" >"$out/np$p.out" 2>"$out/np$p.log"
  echo "== P = $p ($threads thread(s) each): $(cat "$out/np$p.time") s wall"
  grep -E '^\[stage\] (knn|halo|calibrate|density|TPDi|link|choose|read rows)' "$out/np$p.log" | sed 's/^/  /'
  grep -E '^\[mpi\] process' "$out/np$p.log" | sed 's/^/  /'
  grep -E '^pairwise|^bcubed' "$out/np$p.out" | sed 's/^/  /' || true
  if [ -z "$first" ]; then
    first=$p
  elif cmp -s "$out/np$first/pred_labels.meta" "$out/np$p/pred_labels.meta"; then
    echo "  labels identical to P = $first"
  else
    echo "  LABELS DIFFER from P = $first"
  fi
done
