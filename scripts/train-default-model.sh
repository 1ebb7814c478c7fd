#!/usr/bin/env bash
# Trains a shipped-model candidate for D-wide embeddings (issue 15, item 5; docs/model.md):
# a synthetic family drawn across the generator's ranges (identity sizes, within-identity
# cosines, two-mode identities, raw-scale cosine maps) plus the training halves of labelled real
# sets, one kNN graph over the mix, the release's network and optimiser. Sized for a GPU; runs
# anywhere (FC_DEVICE=cpu with a small FC_SYN_N for a dry run).
#   FC_BUILD       a folder with a built facecluster (build)
#   FC_DEVICE      cpu, cuda, cuda:N or auto (auto)
#   FC_DIM         embedding width (128)
#   FC_SYN_N       faces per synthetic family member (100000; 5 members)
#   FC_REAL        real training sets as PREFIX (PREFIX.bin + PREFIX.meta), space-separated
#   FC_EPOCHS      epochs (10, the release's)
#   FC_SECONDS     stop training after this many seconds (SIGINT: the last finished epoch's
#                  checkpoint is kept); 0 = no limit
#   FC_ROTATION    augment_rotation values, one training run each, side by side ("True")
#   FC_THREADS     CPU threads per training run (all cores)
#   FC_PRECISION   the forward pass: fp32 or bf16 (fp32)
#   FC_OUT         working folder (/tmp/fc-default); models land in FC_OUT/model_<rotation>.fcmodel
# Real halves: /usr/bin/python3 scripts/split_by_identity.py SET.bin SET.meta D PREFIX --seed 0
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fc=${FC_BUILD:-$root/build}/facecluster
device=${FC_DEVICE:-auto}
dim=${FC_DIM:-128}
syn_n=${FC_SYN_N:-100000}
epochs=${FC_EPOCHS:-10}
seconds=${FC_SECONDS:-0}
rotations=${FC_ROTATION:-True}
threads=${FC_THREADS:-}
precision=${FC_PRECISION:-fp32}
out=${FC_OUT:-/tmp/fc-default}
mkdir -p "$out/parts"

# The family: the generator's default, looser and tighter identities with more small ones, many
# two-mode identities, and two raw-scale maps (offset: all cosines packed near 1, as dlib-style
# models give; noise: all cosines shrunk). A map adds dimensions, so those members start narrower.
members=(
  "-d $dim --seed 11"
  "-d $dim --seed 12 --cos-min 0.15 --cos-max 0.6 --small-share 0.45 --size-sigma 1.3"
  "-d $dim --seed 13 --cos-min 0.45 --cos-max 0.9 --two-mode-share 0.35 --near-dup-share 0.05"
  "-d $((dim - 1)) --seed 14 --cos-map offset:0.8"
  "-d $((dim / 2)) --seed 15 --cos-map noise:0.7"
)
parts=()
for i in "${!members[@]}"; do
  p=$out/parts/syn$i
  [ -f "$p.bin" ] || "$fc" -q synth -n "$syn_n" ${members[$i]} -o "$p"
  parts+=("$p")
done
for r in ${FC_REAL:-}; do parts+=("$r"); done

# One training set: rows concatenated, each part's labels shifted past the previous parts'.
: >"$out/train.bin"
: >"$out/train.meta"
base=0
for p in "${parts[@]}"; do
  rows=$(($(stat -c %s "$p.bin") / (4 * dim)))
  [ "$rows" -eq "$(wc -l <"$p.meta")" ] || { echo "train-default-model: $p: rows and labels differ" >&2; exit 1; }
  cat "$p.bin" >>"$out/train.bin"
  base=$(awk -v b="$base" '{print $1 - 0 + b; if ($1 + b > m) m = $1 + b} END {print m + 1 > "/dev/stderr"}' \
    "$p.meta" 2>"$out/next_base" >>"$out/train.meta"; cat "$out/next_base")
  echo "part $(basename "$p"): $rows faces, $(sort -u "$p.meta" | wc -l) identities"
done
echo "training set: $(wc -l <"$out/train.meta") faces, $(sort -u "$out/train.meta" | wc -l) identities, $dim-d"

"$fc" knn -f "$out/train.bin" -d "$dim" -o "$out/train_knn.npz" --device "$device"

# One run per augment_rotation value, side by side (a model this small leaves a GPU mostly idle).
train_one() {  # rotation: trains into $out/work_<rotation>, writes $out/model_<rotation>.fcmodel
  local rot=$1 work=$out/work_$1 rc=0
  rm -rf "$work"
  local limit=()
  [ "$seconds" -gt 0 ] && limit=(timeout -s INT "$seconds")
  "${limit[@]}" "$fc" ${threads:+--threads "$threads"} train -c "$root/configs/train_default_model.yaml" \
    --device "$device" --precision "$precision" --set dataset_args.feature_path="$out/train.bin" --set dataset_args.label_path="$out/train.meta" \
    --set dataset_args.knn_path="$out/train_knn.npz" --set dataset_args.feature_dim="$dim" \
    --set model_args.d_model="$dim" --set test_dataset_args.feature_path= --set test_dataset_args.label_path= \
    --set work_dir="$work" --set epochs="$epochs" --set augment_rotation="$rot" \
    --set batch_size=512 --set learning_rate=0.0001 --set print_interval=200 2>&1 | sed -u "s/^/[rotation $rot] /" || rc=$?
  local last
  last=$(ls -v "$work"/epoch_*.ckpt 2>/dev/null | tail -1 || true)
  if [ -z "$last" ]; then
    echo "[rotation $rot] no epoch finished (train exit $rc)" >&2
    return 1
  fi
  [ "$rc" -eq 0 ] || echo "[rotation $rot] training stopped (exit $rc); keeping $(basename "$last")"
  "$fc" -q export-model "$last" "$out/model_$rot.fcmodel"
  echo "[rotation $rot] model: $out/model_$rot.fcmodel (from $(basename "$last"))"
}
pids=()
for rot in $rotations; do
  train_one "$rot" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
