#!/usr/bin/env bash
# The distributed run (issue 16) against the one-process run of the same binary: identical
# labels, density and scores with exact kNN and default flags (automatic calibration and tau
# included) at 1, 2 and 4 processes, and one clear error (nothing written) when one process fails.
# Usage: tests/mpi/check_mpi.sh BUILD_DIR_WITH_MPI [ROWS ...]   (rows default: 20000 100000)
set -euo pipefail
build=$(cd "$1" && pwd)
shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(20000 100000)
fc="$build/facecluster"
py=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail=0
checks=0
ok() { checks=$((checks + 1)); echo "ok: $*"; }
bad() { checks=$((checks + 1)); fail=1; echo "FAILED: $*"; }

# The run in folder $2 gave the labels, density and scores (but its process count) of the one in $1.
same_results() {
  cmp -s "$1/pred_labels.meta" "$2/pred_labels.meta" && cmp -s "$1/density.txt" "$2/density.txt" &&
    same_scores "$1/scores.json" "$2/scores.json"
}

# scores.json without the one line that must differ (the process count).
same_scores() {
  "$py" - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
b["plan"].pop("processes", None)
sys.exit(0 if a == b else 1)
PY
}

for n in "${sizes[@]}"; do
  "$fc" -q synth -n "$n" -d 64 --seed 11 -o "s$n" >/dev/null
  "$fc" -q --threads 1 cluster -f "s$n.bin" -d 64 -l "s$n.meta" -o "one$n" >/dev/null
  for np in 1 2 4; do
    out="np${np}_$n"
    if ! mpirun -np "$np" "$fc" -q --threads 1 cluster -f "s$n.bin" -d 64 -l "s$n.meta" -o "$out" >"$out.log" 2>&1; then
      bad "$n rows, $np processes: the run failed"; cat "$out.log"; continue
    fi
    if same_results "one$n" "$out"; then
      ok "$n rows, $np processes: labels, density and scores identical to one process"
    else
      bad "$n rows, $np processes: results differ from one process"
    fi
  done
done

# The halo in blocks: with 1 MiB for it, each process links its rows 256 at a time, fetching
# each block's neighbour rows afresh. Same results.
n=${sizes[0]}
if mpirun -np 4 "$fc" --threads 1 cluster -f "s$n.bin" -d 64 -l "s$n.meta" --halo-mib 1 -o "blocks_$n" >"blocks_$n.log" 2>&1 &&
   grep -qE "^\[mpi\] process 3: .* fetched in ([2-9]|[1-9][0-9]+) block" "blocks_$n.log" &&
   same_results "one$n" "blocks_$n"; then
  ok "$n rows, 4 processes, halo in blocks (--halo-mib 1): identical to one process"
else
  bad "$n rows, 4 processes, halo in blocks: differs, failed or was not blocked"; grep -E "^\[mpi\]|error" "blocks_$n.log"
fi

# Connected components across processes at given taus (no links gathered): one tau, a sweep on
# the release's scale, and two parents per face (a graph, not a forest).
for args in "--tau 0.6" "--calibrate off --tau-range 0.3:0.9:7" "--calibrate off --tau 0.7 --set cluster_args.max_conn=2"; do
  tag=$(echo "$args" | tr -c 'a-z0-9' '_')
  "$fc" -q --threads 1 cluster -f "s$n.bin" -d 64 -l "s$n.meta" $args -o "one_$tag" >/dev/null
  if mpirun -np 3 "$fc" -q --threads 1 cluster -f "s$n.bin" -d 64 -l "s$n.meta" $args -o "np3_$tag" >"np3_$tag.log" 2>&1 &&
     cmp -s "one_$tag/pred_labels.meta" "np3_$tag/pred_labels.meta" && same_scores "one_$tag/scores.json" "np3_$tag/scores.json"; then
    ok "$n rows, 3 processes, $args: identical to one process"
  else
    bad "$n rows, 3 processes, $args: differs or failed"; cat "np3_$tag.log"
  fi
done

# The learned similarity (the shipped 256-d model) on a small set: each process runs the
# one-process run's batches that start in its rows, with a halo of neighbour features. The
# slices (750 or 1500 rows) do not start at multiples of the batch (512), so rows move between
# processes both ways; bit for bit only if each anchor runs in the batch it runs in on one process
# (BLAS kernels such as OpenBLAS's Haswell ones round by a row's place in a product).
if "$fc" --help | grep -q "^  train"; then
  "$fc" -q synth -n 3000 -d 256 --seed 4 -o m3k >/dev/null
  "$fc" -q --threads 1 cluster -f m3k.bin -d 256 -l m3k.meta --model default -o model_one >/dev/null
  # The last run: anchors in blocks of 512 (--halo-mib 1), each block's neighbour features fetched afresh.
  for run in "2" "4" "4 --halo-mib 1"; do
    np=${run%% *}
    extra=()
    [ "$run" = "$np" ] || extra=(--halo-mib 1)
    out="model_np${np}_${#extra[@]}"
    if mpirun -np "$np" "$fc" --threads 1 cluster -f m3k.bin -d 256 -l m3k.meta --model default "${extra[@]}" -o "$out" >"$out.log" 2>&1 &&
       { [ ${#extra[@]} -eq 0 ] || grep -q "model: anchors in [2-9] blocks" "$out.log"; } &&
       same_results model_one "$out"; then
      ok "learned model, 3000 rows, $run processes: identical to one process"
    else
      bad "learned model, 3000 rows, $run processes: differs, failed or was not blocked"; grep -E "error|model:" "$out.log"
    fi
  done
  # A batch of 96 anchors at 3 processes, in blocks of 192 (--halo-mib 1): the batches run in
  # [96 j, 96 (j + 1)) on every process count.
  "$fc" -q --threads 1 cluster -f m3k.bin -d 256 -l m3k.meta --model default --batch-size 96 -o model_one_b96 >/dev/null
  if mpirun -np 3 "$fc" --threads 1 cluster -f m3k.bin -d 256 -l m3k.meta --model default --batch-size 96 --halo-mib 1 \
       -o model_np3_b96 >model_np3_b96.log 2>&1 &&
     grep -q "model: anchors in [2-9] blocks" model_np3_b96.log &&
     same_results model_one_b96 model_np3_b96; then
    ok "learned model, 3000 rows, 3 processes, --batch-size 96 --halo-mib 1: identical to one process"
  else
    bad "learned model, 3000 rows, 3 processes, --batch-size 96 --halo-mib 1: differs, failed or was not blocked"
    grep -E "error|model:" model_np3_b96.log
  fi
  # 600 rows at 4 processes, batches of 256: the third process's slice [300, 450) holds no batch's
  # first row, so it runs nothing and gets all its rows from the second.
  "$fc" -q synth -n 600 -d 256 --seed 5 -o m600 >/dev/null
  "$fc" -q --threads 1 cluster -f m600.bin -d 256 -l m600.meta --model default --batch-size 256 -o model_one_600 >/dev/null
  if mpirun -np 4 "$fc" -q --threads 1 cluster -f m600.bin -d 256 -l m600.meta --model default --batch-size 256 \
       -o model_np4_600 >model_np4_600.log 2>&1 &&
     same_results model_one_600 model_np4_600; then
    ok "learned model, 600 rows, 4 processes, --batch-size 256 (one process runs no batch): identical to one process"
  else
    bad "learned model, 600 rows, 4 processes, --batch-size 256: differs or failed"; cat model_np4_600.log
  fi
else
  echo "skipped: the learned model under mpirun (this build has no libtorch)"
fi

# A bad row that only the third of four processes reads: one message naming the file and the
# row, exit 1, no results folder.
n=${sizes[0]}
"$py" - "s$n.bin" bad.bin <<'PY'
import sys, numpy as np
x = np.fromfile(sys.argv[1], dtype=np.float32).reshape(-1, 64)
x[int(len(x) * 0.6), 3] = np.nan
x.tofile(sys.argv[2])
PY
set +e
mpirun -np 4 "$fc" -q --threads 1 cluster -f bad.bin -d 64 -o bad_out >bad.out 2>bad.err
rc=$?
set -e
row=$("$py" -c "print(int($n * 0.6))")
if [ "$rc" -ne 0 ] && [ "$(grep -c 'facecluster: error:' bad.err)" -eq 1 ] && grep -q "bad.bin: row $row column 3" bad.err &&
   [ ! -e bad_out ]; then
  ok "a NaN on one process: one error line, exit $rc, nothing written"
else
  bad "a NaN on one process: exit $rc, stderr:"; cat bad.err
fi

# Copies of faces are grouped on one process only; under mpirun they are counted and named.
"$fc" -q synth -n 1000 -d 64 --seed 12 -o dup >/dev/null
cat dup.bin dup.bin >dup2.bin
if mpirun -np 2 "$fc" --threads 1 cluster -f dup2.bin -d 64 -o dup_out >dup.out 2>dup.err &&
   grep -q "^warning: 2000 faces have a copy" dup.out && grep -q "2000 faces have a copy" dup_out/scores.json; then
  ok "copies under mpirun: counted and named (terminal and scores.json)"
else
  bad "copies under mpirun: not named"; cat dup.out dup.err
fi

# What does not run across processes says so once.
expect_one_error() {  # what pattern command...
  local what=$1 pattern=$2
  shift 2
  set +e
  "$@" >err.out 2>err.log
  local rc=$?
  set -e
  if [ "$rc" -ne 0 ] && [ "$(grep -c 'facecluster: error:' err.log)" -eq 1 ] && grep -q "$pattern" err.log; then
    ok "$what: one error line"
  else
    bad "$what: exit $rc, stderr:"; cat err.log
  fi
}
expect_one_error "an approximate index" "index ivf is not distributed" \
  mpirun -np 2 "$fc" -q cluster -f "s$n.bin" -d 64 --index ivf -o ivf_out
expect_one_error "another command" "only .facecluster cluster. runs across processes" \
  mpirun -np 2 "$fc" -q synth -n 100 -d 8 -o never
expect_one_error "a missing file" "missing.bin does not exist" \
  mpirun -np 3 "$fc" -q cluster -f missing.bin -d 64 -o missing_out

echo "mpi checks: $checks run"
[ "$checks" -ge 7 ] || { echo "FAILED: too few checks ran"; exit 1; }
exit $fail
