#!/usr/bin/env bash
# Trains the learned similarity on real people and scores it on other real people (issue 39):
#   training: celebatest's people who are not in celeba299 (441 people, 7,676 photos), or
#             the first PEOPLE of them in a seeded order (the learning curve);
#   validation: celeba299 (299 people, 6,300 photos), identity-disjoint from the training people.
# For each epoch's checkpoint: `cluster --model` on the validation people with no other flags,
# against the training-free default on the same people; F_mean = (F_P + F_B) / 2 and the BCubed
# F of the smallest-size and the sparsest bins. One face model per run (its own embedding space).
#
#   scripts/train-real-model.sh mfn128|faceapi128 [PEOPLE] [EPOCHS]
# FC_TRAIN_SETS="--set key=value ..." adds training settings, FC_TAG names their folder.
# Writes save/real_<face>_<people>[_<tag>]/ (work/ with checkpoints and train_log.json, results_*/,
# summary.tsv). Seeded and single-threaded per run: the same command gives the same model.
set -euo pipefail
cd "$(dirname "$0")/.."
face=${1:?usage: scripts/train-real-model.sh mfn128|faceapi128 [PEOPLE] [EPOCHS]}
people=${2:-all}
epochs=${3:-6}
data=../shared/data
fc=${FC:-build/facecluster}
case $face in
  mfn128) train_src=$data/celebatest/celebatest_dev_mfn128 val=$data/celeba299/celeba299_mfn128 ;;
  faceapi128) train_src=$data/celebatest/celebatest_dev_faceapi128 val=$data/celeba299/celeba299_faceapi128 ;;
  *) echo "train-real-model: unknown face model $face (mfn128 or faceapi128)" >&2; exit 1 ;;
esac
out=save/real_${face}_${people}${FC_TAG:+_$FC_TAG}
rm -rf "$out"
mkdir -p "$out"
/usr/bin/python3 - "$train_src" "$data" "$people" "$out/train" <<'PY'
import sys
import numpy as np
src, data, people, prefix = sys.argv[1:]
x = np.fromfile(src + ".bin", dtype="<f4").reshape(-1, 128)
y = np.loadtxt(src + ".meta", dtype=np.int64)
# The 58 people in both sets: celeba299's labels are not CelebA's numbers (0-298 and 7201-7499),
# so they are found by their shared photos: a face-api embedding within cosine 0.99 of one in
# celeba299 (the same photo through a second crop; other pairs stay below 0.99).
def unit(path):
    v = np.fromfile(path, dtype="<f4").reshape(-1, 128)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
shared = (unit(f"{data}/celebatest/celebatest_dev_faceapi128.bin") @ unit(f"{data}/celeba299/celeba299_faceapi128.bin").T).max(1) > 0.99
held = set(y[shared].tolist())
ids = np.array(sorted(set(y.tolist()) - held))
ids = np.random.default_rng(0).permutation(ids)
if people != "all":
    ids = ids[: int(people)]
keep = np.isin(y, ids)
x[keep].astype("<f4").tofile(prefix + ".bin")
np.savetxt(prefix + ".meta", y[keep], fmt="%d")
print(f"training people: {len(ids)}, photos: {keep.sum()} (celebatest minus the {len(held)} people also in celeba299)")
PY
"$fc" -q --threads 1 train -c configs/train_celeba299_half.yaml \
  --set dataset_args.feature_path="$out/train.bin" --set dataset_args.label_path="$out/train.meta" \
  --set dataset_args.knn_path="$out/train_knn.npz" \
  --set test_dataset_args.feature_path="$val.bin" --set test_dataset_args.label_path="$val.meta" \
  --set test_dataset_args.knn_path="$out/val_knn.npz" \
  --set work_dir="$out/work" --set epochs="$epochs" --set inference_interval=1 --set precision=bf16 \
  --set print_interval=1000 ${FC_TRAIN_SETS:-}
score() {  # label, results folder: F_P, F_B, F_mean, bin-1 (size) and sparsest-bin BCubed F
  /usr/bin/python3 - "$1" "$2/scores.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[2]))
c = next(e for e in s["sweep"] if e["tau"] == s["chosen_tau"])["scores"]
size1 = next(b for b in s["size_bins"] if b["bin"] == 1)["scores"]["bcubed_f"]
sparse = max(s["sparsity_bins"], key=lambda b: b["bin"])["scores"]["bcubed_f"]
print(f"{sys.argv[1]}\t{s['chosen_tau']:.3f}\t{c['pairwise_f']:.4f}\t{c['bcubed_f']:.4f}\t"
      f"{(c['pairwise_f'] + c['bcubed_f']) / 2:.4f}\t{size1:.4f}\t{sparse:.4f}")
PY
}
printf 'similarity\ttau\tF_P\tF_B\tF_mean\tsmallest-size bin F_B\tsparsest bin F_B\n' >"$out/summary.tsv"
"$fc" -q cluster -f "$val.bin" -d 128 -l "$val.meta" --knn "$out/val_knn.npz" -o "$out/results_free" >/dev/null
score "training-free default" "$out/results_free" >>"$out/summary.tsv"
for ck in $(ls -v "$out"/work/epoch_*.ckpt); do
  e=$(basename "$ck" .ckpt)
  "$fc" -q cluster -f "$val.bin" -d 128 -l "$val.meta" --knn "$out/val_knn.npz" --model "$ck" -o "$out/results_$e" >/dev/null
  score "model $e, release tau" "$out/results_$e" >>"$out/summary.tsv"
  "$fc" -q cluster -f "$val.bin" -d 128 -l "$val.meta" --knn "$out/val_knn.npz" --model "$ck" --calibrate auto \
    -o "$out/results_${e}_auto" >/dev/null
  score "model $e, calibrated" "$out/results_${e}_auto" >>"$out/summary.tsv"
done
# The ceiling for the last epoch's distances: the best of 19 taus with the labels.
"$fc" -q cluster -f "$val.bin" -d 128 -l "$val.meta" --knn "$out/val_knn.npz" --model "$ck" --tau-range 0.05:0.95:19 \
  --select-by bcubed -o "$out/results_${e}_best" >/dev/null
score "model $e, best tau (labels)" "$out/results_${e}_best" >>"$out/summary.tsv"
column -t -s $'\t' "$out/summary.tsv"
