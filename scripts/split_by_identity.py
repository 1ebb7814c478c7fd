#!/usr/bin/python3
"""Splits a labelled feature set by identity into two disjoint halves (train / test).

    /usr/bin/python3 scripts/split_by_identity.py FEATURES.bin LABELS.meta DIM OUT_PREFIX [--seed S]

Writes OUT_PREFIX_train.{bin,meta} and OUT_PREFIX_test.{bin,meta}: every identity lands wholly in
one half, chosen at random (seeded), about half of the identities each.
"""
import argparse
import os

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features")
    ap.add_argument("labels")
    ap.add_argument("dim", type=int)
    ap.add_argument("out_prefix")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    x = np.fromfile(a.features, dtype="<f4")
    if x.size % a.dim:
        raise SystemExit(f"{a.features}: size is not a multiple of 4 x {a.dim} bytes")
    x = x.reshape(-1, a.dim)
    y = np.loadtxt(a.labels, dtype=np.int64).reshape(-1)
    if len(y) != len(x):
        raise SystemExit(f"{a.labels}: {len(y)} labels for {len(x)} feature rows")
    ids = np.unique(y)
    rng = np.random.default_rng(a.seed)
    train_ids = set(rng.permutation(ids)[: len(ids) // 2].tolist())
    in_train = np.array([v in train_ids for v in y])
    for name, mask in (("train", in_train), ("test", ~in_train)):
        for ext, write in ((".bin", lambda p, m=mask: x[m].astype("<f4").tofile(p)),
                           (".meta", lambda p, m=mask: np.savetxt(p, y[m], fmt="%d"))):
            path = f"{a.out_prefix}_{name}{ext}"
            tmp = path + ".tmp"
            write(tmp)
            os.replace(tmp, path)
        print(f"{name}: {mask.sum()} rows, {len(np.unique(y[mask]))} identities")


if __name__ == "__main__":
    main()
