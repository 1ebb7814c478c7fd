"""Adding faces to a clustering (issue 41): `cluster --save-state`, `facecluster add`, and the
Python partial_fit / save_state / load_state; ids survive, changes are listed, the exact plan
gives the scratch partition, and a killed `add` leaves a state that loads."""
import collections
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import fails

EXACT = ("--index", "flat", "--calibrate", "off", "--tau", "0.6", "-k", "20")


@pytest.fixture
def batches(fc, tmp_path):
    """3,000 synthetic faces (64-d): the first 2,400 and three batches of 200, each with labels."""
    prefix = tmp_path / "s"
    fc("synth", "-o", prefix, "-n", 3000, "-d", 64, "--seed", 5)
    x = np.fromfile(f"{prefix}.bin", dtype=np.float32).reshape(-1, 64)
    y = np.loadtxt(f"{prefix}.meta", dtype=np.int64)
    parts = {"first": (0, 2400), "b0": (2400, 2600), "b1": (2600, 2800), "b2": (2800, 3000), "all": (0, 3000)}
    for name, (a, b) in parts.items():
        x[a:b].tofile(tmp_path / f"{name}.bin")
        np.savetxt(tmp_path / f"{name}.meta", y[a:b], fmt="%d")
    return tmp_path


def labels(folder):
    return np.loadtxt(folder / "pred_labels.meta", dtype=np.int64)


def canonical(l):
    first = {}
    return [first.setdefault(v, len(first)) for v in l.tolist()]


def unchanged_clusters_keep_ids(before, after):
    """(cases, violations): clusters whose earlier faces all carry one label now, held by no other
    earlier face, must carry their own id."""
    old = after[:len(before)]
    now = collections.defaultdict(set)
    for a, b in zip(before.tolist(), old.tolist()):
        now[a].add(b)
    holders, sizes = collections.Counter(old.tolist()), collections.Counter(before.tolist())
    cases = bad = 0
    for a, bs in now.items():
        if len(bs) == 1 and holders[next(iter(bs))] == sizes[a]:
            cases += 1
            bad += next(iter(bs)) != a
    return cases, bad


def test_add_batches_cover_every_face_keep_ids_and_list_changes(fc, batches):
    d = batches
    fc("cluster", "-f", d / "first.bin", "-d", 64, "-l", d / "first.meta", "--save-state", d / "state", "-o", d / "r0")
    prev = labels(d / "r0")
    assert len(prev) == 2400
    cases = 0
    for i in range(3):
        out = fc("add", "--state", d / "state", "-f", d / f"b{i}.bin", "-l", d / f"b{i}.meta", "-o", d / f"r{i + 1}").stdout
        cur = labels(d / f"r{i + 1}")
        assert len(cur) == 2400 + 200 * (i + 1)
        c, bad = unchanged_clusters_keep_ids(prev, cur)
        assert bad == 0
        cases += c
        scores = json.loads((d / f"r{i + 1}" / "scores.json").read_text())
        assert scores["n"] == len(cur) and "scores" in scores
        for change in scores["changes"]:
            assert change["text"] in out  # every change is on the terminal (fewer than 20 here)
        assert f"now holds {len(cur)} faces" in out
        prev = cur
    assert cases > 50
    # Against clustering all 3,000 from scratch with the same plan.
    fc("cluster", "-f", d / "all.bin", "-d", 64, "-l", d / "all.meta", "-o", d / "scratch")
    p, s = np.array(canonical(prev)), np.array(canonical(labels(d / "scratch")))
    same = collections.Counter(zip(p.tolist(), s.tolist()))
    tp = sum(v * (v - 1) // 2 for v in same.values())
    pp = sum(v * (v - 1) // 2 for v in collections.Counter(p.tolist()).values())
    sp = sum(v * (v - 1) // 2 for v in collections.Counter(s.tolist()).values())
    assert 2 * tp / (pp + sp) >= 0.98


def test_the_exact_plan_gives_the_scratch_partition(fc, batches):
    d = batches
    fc("cluster", "-f", d / "first.bin", "-d", 64, *EXACT, "--save-state", d / "state")
    for i in range(3):
        fc("add", "--state", d / "state", "-f", d / f"b{i}.bin", "-o", d / "inc")
    fc("cluster", "-f", d / "all.bin", "-d", 64, *EXACT, "-o", d / "scratch")
    assert canonical(labels(d / "inc")) == canonical(labels(d / "scratch"))


def test_what_does_not_fit_is_refused(fc, batches):
    d = batches
    fc("cluster", "-f", d / "first.bin", "-d", 64, "--save-state", d / "state")
    fails(fc, "cluster", "-f", d / "first.bin", "-d", 64, "--save-state", d / "state", fragment="already holds a clustering state")
    fails(fc, "cluster", "-f", d / "first.bin", "-d", 64, "--model", "default", "--save-state", d / "s2",
          fragment="learned similarity")
    np.save(d / "wide.npy", np.ones((5, 32), dtype=np.float32))
    fails(fc, "add", "--state", d / "state", "-f", d / "wide.npy", fragment="32 dimensions, the clustering's have 64")
    fails(fc, "add", "--state", d / "nothing", "-f", d / "b0.bin", fragment="does not exist")
    (d / "empty").mkdir()
    fails(fc, "add", "--state", d / "empty", "-f", d / "b0.bin", fragment="holds no clustering state")
    fails(fc, "add", "--state", d / "state", "-f", d / "b0.bin", "-l", d / "b1.meta", "-o", d / "b0.meta",
          fragment="b0.meta")  # results over an input
    fc("add", "--state", d / "state", "-f", d / "b0.bin")
    fails(fc, "add", "--state", d / "state", "-f", d / "b0.bin", fragment="added already")
    with open(d / "state" / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        fails(fc, "add", "--state", d / "state", "-f", d / "b1.bin", fragment="in use by another facecluster")


def test_a_killed_add_leaves_a_state_that_loads(fc, fc_bin, batches):
    facecluster = pytest.importorskip("facecluster", reason="Python module not built (build/python on PYTHONPATH)")
    d = batches
    fc("cluster", "-f", d / "first.bin", "-d", 64, "--save-state", d / "pristine")
    before = facecluster.FaceClusterer.load_state(d / "pristine").labels_
    shutil.copytree(d / "pristine", d / "done")
    start = time.monotonic()
    fc("add", "--state", d / "done", "-f", d / "b0.bin")
    took = time.monotonic() - start
    after = facecluster.FaceClusterer.load_state(d / "done").labels_
    rng = random.Random(41)
    outcomes = collections.Counter()
    for attempt in range(20):
        work = d / f"kill{attempt}"
        shutil.copytree(d / "pristine", work)
        proc = subprocess.Popen([fc_bin, "-q", "add", "--state", str(work), "-f", str(d / "b0.bin")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, took * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        got = facecluster.FaceClusterer.load_state(work).labels_
        if np.array_equal(got, before):
            outcomes["old"] += 1
            fc("add", "--state", work, "-f", d / "b0.bin")  # and the addition then completes as usual
            got = facecluster.FaceClusterer.load_state(work).labels_
        else:
            outcomes["new"] += 1
        assert np.array_equal(got, after), f"attempt {attempt}"
        shutil.rmtree(work)
    assert outcomes["old"] > 0, outcomes


def test_python_partial_fit_save_and_load(fc, batches):
    facecluster = pytest.importorskip("facecluster", reason="Python module not built (build/python on PYTHONPATH)")
    d = batches
    x = {n: np.fromfile(d / f"{n}.bin", dtype=np.float32).reshape(-1, 64) for n in ("first", "b0", "b1", "b2")}
    y = {n: np.loadtxt(d / f"{n}.meta", dtype=np.int64) for n in x}
    with pytest.raises(RuntimeError, match="call fit"):
        facecluster.FaceClusterer().partial_fit(x["b0"])
    c = facecluster.FaceClusterer(k=20).fit(x["first"], y["first"])
    first = c.labels_.copy()
    c.partial_fit(x["b0"], y["b0"])
    assert len(c.labels_) == 2600 and c.report_["scores"]["pairwise_f"] > 0.5
    assert unchanged_clusters_keep_ids(first, c.labels_)[1] == 0
    assert all({"kind", "id", "others", "text"} <= set(ch) for ch in c.changes_)
    kept = c.labels_.copy()
    with pytest.raises(Exception, match="dimensions"):
        c.partial_fit(np.ones((3, 8), dtype=np.float32))
    assert np.array_equal(c.labels_, kept)  # a failed addition changes nothing
    c.save_state(d / "py_state")
    # The CLI continues a state Python wrote, and Python one the CLI grew.
    fc("add", "--state", d / "py_state", "-f", d / "b1.bin", "-o", d / "r_cli")
    loaded = facecluster.FaceClusterer.load_state(d / "py_state")
    assert np.array_equal(loaded.labels_, labels(d / "r_cli"))
    c.partial_fit(x["b1"])
    assert np.array_equal(c.labels_, loaded.labels_)
    loaded.partial_fit(x["b2"])
    assert len(loaded.labels_) == 3000
    loaded.save_state(d / "py_state")  # replaces the state it was loaded from
    assert np.array_equal(facecluster.FaceClusterer.load_state(d / "py_state").labels_, loaded.labels_)
