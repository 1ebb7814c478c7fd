#!/usr/bin/env bash
# Adding faces to a clustering (issue 41, docs/incremental.md): the first FIRST rows clustered with
# --save-state, then BATCHES batches of BATCH rows added with `facecluster add`, against one run
# of `facecluster cluster` on all of those rows from scratch, in the same session.
# Prints each step's wall time and its ratio to the scratch run, how far the final labels agree
# with the scratch run's (pairwise F between the two partitions) and with the true labels, and
# whether every cluster whose members an addition did not change kept its id.
# Usage: scripts/bench-incremental.sh FEATURES DIM LABELS FIRST BATCHES BATCH [cluster flags...]
#   FC_BENCH_OUT=DIR keeps the files (default: a temp folder, removed at the end)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fc=${FC_BIN:-$root/build/facecluster}
py=/usr/bin/python3
features=$1 dim=$2 labels=$3 first=$4 batches=$5 batch=$6
shift 6
out=${FC_BENCH_OUT:-}
if [ -z "$out" ]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
mkdir -p "$out"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores;" \
  "features: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E -x 'avx2|avx512f|avx512_bf16|amx_bf16' | tr '\n' ' ')"\
  "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
total=$((first + batches * batch))
"$py" - "$features" "$dim" "$labels" "$first" "$batches" "$batch" "$out" <<'PY'
import sys, numpy as np
f, dim, lab, first, nb, b, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
x = np.load(f) if f.endswith('.npy') else np.fromfile(f, dtype=np.float32).reshape(-1, dim)
y = np.loadtxt(lab, dtype=np.int64)
total = first + nb * b
assert total <= len(x), f"{total} rows asked, the file has {len(x)}"
def put(name, a, c):
    np.ascontiguousarray(a, dtype=np.float32).tofile(f"{out}/{name}.bin"); np.savetxt(f"{out}/{name}.meta", c, fmt="%d")
put("first", x[:first], y[:first]); put("all", x[:total], y[:total])
for i in range(nb):
    s = first + i * b
    put(f"batch{i}", x[s:s + b], y[s:s + b])
PY
echo "input: $features (dim $dim): first $first rows, then $batches batches of $batch ($total in all); flags: $*"
timed() {  # timed NAME COMMAND...: wall seconds into $out/NAME.time, output into $out/NAME.log
  local name=$1; shift
  /usr/bin/time -f "%e" -o "$out/$name.time" "$@" >"$out/$name.log" 2>&1 || { tail -5 "$out/$name.log"; exit 1; }
}
timed scratch "$fc" cluster -f "$out/all.bin" -d "$dim" -l "$out/all.meta" -o "$out/r_scratch" "$@"
timed first "$fc" cluster -f "$out/first.bin" -d "$dim" -l "$out/first.meta" -o "$out/r_first" --save-state "$out/state" "$@"
scratch=$(cat "$out/scratch.time")
echo "scratch run, all $total rows: ${scratch} s; first run ($first rows, --save-state): $(cat "$out/first.time") s"
for i in $(seq 0 $((batches - 1))); do
  timed "add$i" "$fc" add --state "$out/state" -f "$out/batch$i.bin" -l "$out/batch$i.meta" -o "$out/r_add$i"
  t=$(cat "$out/add$i.time")
  echo "  add batch $i ($batch rows): $t s = $(awk -v a="$t" -v b="$scratch" 'BEGIN{printf "%.2f", 100 * a / b}')% of the scratch run;" \
    "$(grep -E -o '[0-9]+ joined earlier clusters.*' "$out/add$i.log" | head -1)"
  grep -E '^\[stage\] (knn of|density|TPDi|read state|write state)' "$out/add$i.log" | sed 's/^/      /'
done
"$py" - "$out" "$batches" <<'PY'
import sys, collections, numpy as np
out, nb = sys.argv[1], int(sys.argv[2])
def read(p): return np.loadtxt(p, dtype=np.int64)
def pairs(c): return sum(v * (v - 1) // 2 for v in collections.Counter(c).values())
def pairwise_f(p, g):
    tp = pairs(list(zip(p.tolist(), g.tolist()))); pp, gp = pairs(p.tolist()), pairs(g.tolist())
    P = tp / pp if pp else 1.0; R = tp / gp if gp else 1.0
    return 2 * P * R / (P + R) if P + R else 0.0
def canon(l):
    m = {}; return np.array([m.setdefault(v, len(m)) for v in l.tolist()])
inc, scr, truth = read(f"{out}/r_add{nb-1}/pred_labels.meta"), read(f"{out}/r_scratch/pred_labels.meta"), read(f"{out}/all.meta")
print(f"final labels: pairwise F against the scratch run {pairwise_f(inc, scr):.5f}; identical partition: {bool((canon(inc) == canon(scr)).all())}")
def fb(p, g):  # BCubed F
    pc, gc, both = collections.Counter(p.tolist()), collections.Counter(g.tolist()), collections.Counter(zip(p.tolist(), g.tolist()))
    P = sum(c * c / pc[a] for (a, b), c in both.items()) / len(p); R = sum(c * c / gc[b] for (a, b), c in both.items()) / len(p)
    return 2 * P * R / (P + R)
for name, l in (("incremental", inc), ("scratch", scr)):
    fp, fbv = pairwise_f(l, truth), fb(l, truth)
    print(f"  {name:12s} against the true labels: F_P {fp:.4f}  F_B {fbv:.4f}  F_mean {(fp + fbv) / 2:.4f}  clusters {len(set(l.tolist()))}")
# Ids: a cluster whose faces before a batch are exactly the faces now with its label among the
# earlier faces (it neither merged nor split) must keep its id.
prev = read(f"{out}/r_first/pred_labels.meta"); bad = kept = 0
for i in range(nb):
    cur = read(f"{out}/r_add{i}/pred_labels.meta"); old = cur[:len(prev)]
    groups = collections.defaultdict(set)
    for a, b in zip(prev.tolist(), old.tolist()): groups[a].add(b)
    owners = collections.Counter(old.tolist()); sizes = collections.Counter(prev.tolist())
    for a, bs in groups.items():
        if len(bs) == 1 and owners[next(iter(bs))] == sizes[a]:
            kept += 1; bad += next(iter(bs)) != a
    prev = cur
print(f"ids: {kept} (cluster, batch) cases of unchanged members, {bad} changed id")
PY
