#!/usr/bin/env bash
# The GPU evidence of issue 15 in one go (docs/gpu.md), sized for ~10 minutes on one large GPU:
#   1. build facecluster against python3's (CUDA) libtorch, Debian's other libraries unpacked from
#      .debs/ where the machine reaches no package registry (see ../shared/gpu/fetch-debs.sh);
#   2. exact kNN of 584,013 x 256 synthetic faces on the GPU (recall against brute force);
#   3. one training epoch on 576,000 synthetic anchors on the GPU;
#   4. training throughput with bf16 autocast (stopped after FC_GPU_BF16_SECONDS, 40);
#      inference of the 584,013 anchors on the GPU, fp32 and bf16;
#   5. a 20K split clustered with the model on the CPU and on the GPU: labels compared (ARI).
# Everything is printed with the card and the versions. Knobs for a dry run elsewhere:
#   FC_GPU_DEVICE (cuda), FC_GPU_N (584013), FC_GPU_TRAIN_N (576000), FC_GPU_SPLIT_N (20000),
#   FC_GPU_BUILD (a folder with a built facecluster: skips step 1), FC_GPU_OUT (/tmp/fc-gpu).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
device=${FC_GPU_DEVICE:-cuda}
n=${FC_GPU_N:-584013}
train_n=${FC_GPU_TRAIN_N:-576000}
split_n=${FC_GPU_SPLIT_N:-20000}
out=${FC_GPU_OUT:-/tmp/fc-gpu}
mkdir -p "$out"
step() { echo; echo "== $*"; }
timed() {  # name command...: runs, keeps its log, prints its stage lines and wall time
  local name=$1
  shift
  local t0=$(date +%s.%N)
  "$@" >"$out/$name.out" 2>"$out/$name.log" || { echo "FAILED: $name"; tail -20 "$out/$name.log"; exit 1; }
  grep -hE '^\[stage\]|recall@|^(pairwise|bcubed) |^training |anchors/s|^epoch .* done' "$out/$name.log" "$out/$name.out" |
    sed 's/^/  /' || true
  echo "  $name: $(echo "$(date +%s.%N) - $t0" | bc) s wall"
}

step "machine"
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())' 2>/dev/null ||
  echo "(python3 has no torch)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cores"

if [ -n "${FC_GPU_BUILD:-}" ]; then
  build=$FC_GPU_BUILD
else
  step "build against python3's libtorch"
  build=$out/build
  prefix=""
  if [ -d "$root/.debs" ]; then
    mkdir -p /opt/deb && for f in "$root"/.debs/*.deb; do dpkg -x "$f" /opt/deb; done
    export PKG_CONFIG_PATH=/opt/deb/usr/lib/x86_64-linux-gnu/pkgconfig
    export LD_LIBRARY_PATH=/opt/deb/usr/lib/x86_64-linux-gnu:/opt/deb/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    prefix="-DCMAKE_PREFIX_PATH=/opt/deb/usr;/opt/deb/usr/lib/x86_64-linux-gnu/cmake"
  fi
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFACECLUSTER_TORCH_FROM_PYTHON=ON \
    -DFACECLUSTER_BUILD_TESTS=OFF -DFACECLUSTER_BUILD_BENCH=OFF -DFACECLUSTER_BUILD_PYTHON=OFF ${prefix:+"$prefix"} >"$out/cmake.log"
  timed build cmake --build "$build" -j "$(nproc)" --target facecluster_cli
fi
fc="$build/facecluster"

step "data (synthetic, CPU)"
[ -f "$out/test.bin" ] || "$fc" -q synth -n "$n" -d 256 --seed 3 -o "$out/test"
[ -f "$out/train.bin" ] || "$fc" -q synth -n "$train_n" -d 256 --seed 1 -o "$out/train"
[ -f "$out/split.bin" ] || "$fc" -q synth -n "$split_n" -d 256 --seed 5 -o "$out/split"

step "exact kNN, $n x 256, k 80, on $device (libtorch matrix products)"
timed knn_test "$fc" knn -f "$out/test.bin" -d 256 -o "$out/test_knn.npz" --device "$device" --recall-sample 1000
timed knn_train "$fc" knn -f "$out/train.bin" -d 256 -o "$out/train_knn.npz" --device "$device"

step "one training epoch on $train_n anchors, on $device"
rm -rf "$out/work"
timed train "$fc" train -c "$root/configs/train_synthetic.yaml" --device "$device" \
  --set dataset_args.feature_path="$out/train.bin" --set dataset_args.label_path="$out/train.meta" \
  --set dataset_args.knn_path="$out/train_knn.npz" --set test_dataset_args.feature_path= \
  --set test_dataset_args.label_path= --set work_dir="$out/work" --set epochs=1
model=$(ls "$out"/work/*.ckpt | tail -1)

step "training throughput with bf16 autocast on $device (stopped after ${FC_GPU_BF16_SECONDS:-40} s)"
rm -rf "$out/work_bf16"
timeout -s INT "${FC_GPU_BF16_SECONDS:-40}" "$fc" train -c "$root/configs/train_synthetic.yaml" --device "$device" \
  --precision bf16 --set dataset_args.feature_path="$out/train.bin" --set dataset_args.label_path="$out/train.meta" \
  --set dataset_args.knn_path="$out/train_knn.npz" --set test_dataset_args.feature_path= \
  --set test_dataset_args.label_path= --set work_dir="$out/work_bf16" --set epochs=1 >"$out/train_bf16.log" 2>&1 || true
grep -E '^training |anchors/s' "$out/train_bf16.log" | sed 's/^/  /' || true

step "inference of $n anchors on $device (fp32, bf16), then the graph stage on the CPU"
for p in fp32 bf16; do
  timed "infer_$p" "$fc" cluster -f "$out/test.bin" -d 256 -l "$out/test.meta" --knn "$out/test_knn.npz" \
    --model "$model" --device "$device" --precision "$p" -o "$out/infer_$p"
done

step "CPU vs $device on a $split_n split with the model"
timed split_cpu "$fc" cluster -f "$out/split.bin" -d 256 --model "$model" --device cpu -o "$out/split_cpu"
for p in fp32 bf16; do
  timed "split_$p" "$fc" cluster -f "$out/split.bin" -d 256 --model "$model" --device "$device" --precision "$p" \
    -o "$out/split_$p"
  if cmp -s "$out/split_cpu/pred_labels.meta" "$out/split_$p/pred_labels.meta"; then
    echo "  $p on $device: labels identical to the CPU's"
  else
    "$fc" -q evaluate --pred "$out/split_$p/pred_labels.meta" --gt "$out/split_cpu/pred_labels.meta" | grep -E 'NMI|pairwise' |
      sed "s/^/  $p on $device vs CPU: /"
  fi
done
echo
echo "gpu-check: done (logs in $out)"
