#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and fuzzes each reader of untrusted files
# for SECONDS (default 60): scripts/fuzz.sh [SECONDS] [TARGET ...]
# New inputs go to build-fuzz/corpus/<target> (the committed seeds in fuzz/corpus stay as they
# are); a crash is saved as build-fuzz/crash-<target>-* and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_npy fuzz_npz fuzz_meta fuzz_bin fuzz_yaml fuzz_checkpoint)
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFACECLUSTER_FUZZ=ON \
  -DFACECLUSTER_WITH_FAISS=OFF -DFACECLUSTER_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j "${JOBS:-$(nproc)}" >/dev/null
status=0
for t in "${targets[@]}"; do
  [ -x "build-fuzz/fuzz/$t" ] || { echo "$t: not built (libtorch missing?)"; continue; }
  mkdir -p "build-fuzz/corpus/$t"
  log="build-fuzz/$t.log"
  set +e
  # Checkpoints are ~150 KB: let inputs grow to that size.
  max_len=$([ "$t" = fuzz_checkpoint ] && echo 200000 || echo 8192)
  ASAN_OPTIONS=detect_leaks=1 "build-fuzz/fuzz/$t" -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=4096 \
    -artifact_prefix="build-fuzz/crash-$t-" -print_final_stats=1 "build-fuzz/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  if [ $rc -eq 0 ]; then
    echo "$t: $runs executions in ${seconds} s, no crash"
  else
    echo "$t: CRASH after $runs executions (exit $rc); see $log and build-fuzz/crash-$t-*"
    status=1
  fi
done
exit $status
