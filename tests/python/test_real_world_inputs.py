"""Issue 38: real-world inputs that once gave wrong results with exit 0, lost work or unclear
messages. Each test failed on the build before the fix."""
import os
import resource
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import BUILD, fails


@pytest.fixture
def synth(fc, tmp_path):
    prefix = tmp_path / "s"
    fc("synth", "-o", prefix, "-n", 2000, "-d", 64, "--seed", 3)
    return prefix


def test_every_row_twice_gives_the_clusters_of_every_row_once(fc, tmp_path, synth):
    x = np.fromfile(f"{synth}.bin", dtype="<f4").reshape(-1, 64)
    np.concatenate([x, x]).astype("<f4").tofile(tmp_path / "twice.bin")
    fc("cluster", "-f", f"{synth}.bin", "-d", 64, "-k", 20, "-o", tmp_path / "once")
    fc("cluster", "-f", tmp_path / "twice.bin", "-d", 64, "-k", 20, "-o", tmp_path / "twice")
    assert "2000 of 4000 faces are copies" in (tmp_path / "twice" / "scores.json").read_text()
    once = np.loadtxt(tmp_path / "once" / "pred_labels.meta", dtype=np.int64)
    twice = np.loadtxt(tmp_path / "twice" / "pred_labels.meta", dtype=np.int64)
    assert (twice[:2000] == once).all() and (twice[2000:] == once).all()


def test_a_knn_cache_of_other_data_is_refused(fc, tmp_path, synth):
    other = tmp_path / "o"
    fc("synth", "-o", other, "-n", 2000, "-d", 64, "--seed", 4)
    fc("knn", "-f", f"{other}.bin", "-d", 64, "-k", 20, "-o", tmp_path / "other.npz")
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "-k", 20, "--knn", tmp_path / "other.npz",
          fragment=f"kNN cache {tmp_path / 'other.npz'} does not belong to features")
    # A cache whose ids are all 0.
    data = np.zeros((2000, 2, 20), dtype=np.float32)
    np.savez(tmp_path / "zeros.npz", data=data)
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "-k", 20, "--knn", tmp_path / "zeros.npz",
          fragment="does not belong to features")
    # The cache of the same features is accepted.
    fc("knn", "-f", f"{synth}.bin", "-d", 64, "-k", 20, "-o", tmp_path / "own.npz")
    fc("cluster", "-f", f"{synth}.bin", "-d", 64, "-k", 20, "--knn", tmp_path / "own.npz")


def test_a_config_without_feature_dim_does_not_guess_it(fc, tmp_path, synth):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"test_dataset_args:\n  feature_path: {synth}.bin\n")
    fails(fc, "cluster", "-c", cfg, "-o", tmp_path / "r", fragment="sets no feature_dim")
    fc("cluster", "-c", cfg, "-d", 64, "-k", 20, "-o", tmp_path / "r")


def test_a_npy_named_bin_is_refused(fc, tmp_path, synth):
    x = np.fromfile(f"{synth}.bin", dtype="<f4").reshape(-1, 64)
    np.save(tmp_path / "x.npy", x)
    os.rename(tmp_path / "x.npy", tmp_path / "x.bin")
    fails(fc, "cluster", "-f", tmp_path / "x.bin", "-d", 64, fragment="is a .npy file")


def test_an_empty_results_path_is_refused(fc, synth):
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "-o", "", fragment="empty path")


def test_a_cache_path_inside_the_results_is_refused(fc, tmp_path, synth):
    out = tmp_path / "r"
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "-k", 20, "--knn", out / "pred_labels.meta", "-o", out,
          fragment="is the results file")
    assert not out.exists()


def test_a_newline_in_a_path_cannot_forge_a_line(fc, tmp_path):
    bad = tmp_path / "x\nfacecluster: error: forged.bin"
    proc = fc("cluster", "-f", bad, "-d", 64, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len([l for l in lines if l.startswith("facecluster: error:")]) == 1, proc.stderr
    assert "\\x0a" in lines[-1]


def test_a_file_size_limit_is_a_clean_error(tmp_path, synth):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    out = tmp_path / "big.npz"
    proc = subprocess.run([str(BUILD / "facecluster"), "knn", "-f", f"{synth}.bin", "-d", "64", "-k", "20", "-o", str(out)],
                          capture_output=True, text=True, preexec_fn=limit)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stderr.strip().splitlines()[-1].startswith("facecluster: error: "), proc.stderr
    assert not out.exists()
    assert not any(".tmp." in n for n in os.listdir(tmp_path))


def test_the_temporary_sweep_keeps_user_files(fc, tmp_path, synth):
    # Names that look like a temporary of a finished process but are not the program's own.
    keep = ["knn.npz.tmp.1.backup", "knn.npz.tmp.1.abc.old", "knn.npz.tmp.1.0123456789", "knn.npz.tmp.1.ABCDEF01"]
    for name in keep:
        (tmp_path / name).write_text("mine")
    stale = tmp_path / "knn.npz.tmp.999999999.0badf00d"  # the program's pattern, no such process
    stale.write_text("left by a killed run")
    fc("knn", "-f", f"{synth}.bin", "-d", 64, "-k", 20, "-o", tmp_path / "knn.npz")
    for name in keep:
        assert (tmp_path / name).read_text() == "mine", name
    assert not stale.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_calibration_stops_it_promptly(fc, tmp_path, sig):
    # 4,000 faces at k 200: the calibration fits about 800K neighbour pairs, tens of seconds on 2
    # cores; the signal is sent once it has started (the stage line before it is printed).
    prefix = tmp_path / "c"
    fc("synth", "-o", prefix, "-n", 4000, "-d", 64, "--seed", 8)
    proc = subprocess.Popen([str(BUILD / "facecluster"), "cluster", "-f", f"{prefix}.bin", "-d", "64", "-k", "200",
                             "-o", str(tmp_path / "out")], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("[stage] validate graph"):
            break
    time.sleep(1.0)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    start = time.monotonic()
    proc.send_signal(sig)
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert time.monotonic() - start < 3.0, "the calibration did not stop promptly"
    assert not (tmp_path / "out").exists()


def test_python_save_report_is_atomic_checked_and_needs_a_fit(tmp_path):
    facecluster = pytest.importorskip("facecluster", reason="Python module not built (build/python on PYTHONPATH)")
    est = facecluster.FaceClusterer(k=20)
    with pytest.raises(RuntimeError, match="call fit"):
        est.save_report(tmp_path / "r.html")
    X, _ = facecluster.synth(n=500, dim=32, seed=2)
    est.fit(X)
    features = tmp_path / "features.npy"
    np.save(features, X)
    before = features.read_bytes()
    with pytest.raises(ValueError, match="not an HTML page"):
        est.save_report(features)
    assert features.read_bytes() == before
    est.save_report(tmp_path / "r.html")
    est.save_report(tmp_path / "r.html")  # an earlier report is replaced
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html")
    assert sorted(os.listdir(tmp_path)) == ["features.npy", "r.html"]
    with pytest.raises(ValueError, match="no-such-folder"):
        est.save_report(tmp_path / "no-such-folder" / "r.html")


def test_unclear_messages_name_the_real_problem(fc, tmp_path, synth):
    record = tmp_path / "record.npy"
    np.save(record, np.zeros(10, dtype=[("a", "<f4"), ("b", "<f4")]))
    fails(fc, "cluster", "-f", record, fragment="structured (record) arrays are not supported")
    deep = tmp_path / "deep.yaml"
    deep.write_text("cluster_args: {max_conn: " + "[" * 3000 + "1" + "]" * 3000 + "}\n")
    fails(fc, "cluster", "-c", deep, "-f", f"{synth}.bin", "-d", 64, fragment="YAML nested deeper than the parser allows")
    # A folder the system will not create (once "filesystem error: ..." without saying which option).
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "-k", 20, "-o", "/proc/facecluster-results",
          fragment="cannot create results folder /proc/facecluster-results: ")


def test_checks_come_before_the_knn_work(fc, tmp_path, synth):
    both = tmp_path / "same"
    line = fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "--knn", both, "-o", both,
                 fragment="is the results folder (-o) of this run")
    assert not both.exists(), line
    version = fc("--version").stdout
    if "libtorch" not in version:
        pytest.skip(f"built without libtorch: {version.strip()}")
    corrupt = tmp_path / "bad.fcmodel"
    corrupt.write_text("not a model")
    for model, fragment in [("default", "the model reads 256-d features but these have 64 dimensions"),
                            (corrupt, "bad.fcmodel is not a readable archive")]:
        proc = subprocess.run([str(BUILD / "facecluster"), "cluster", "-f", f"{synth}.bin", "-d", "64", "--model",
                               str(model), "-o", str(tmp_path / "out")], capture_output=True, text=True)
        assert proc.returncode == 1 and fragment in proc.stderr.splitlines()[-1], proc.stderr
        assert "[stage] knn" not in proc.stderr, proc.stderr


def test_python_integer_and_layout_errors(tmp_path):
    facecluster = pytest.importorskip("facecluster", reason="Python module not built (build/python on PYTHONPATH)")
    X, _ = facecluster.synth(n=300, dim=16, seed=1)
    with pytest.raises(ValueError, match=r"parameter k = 9223372036854775808 is out of range"):
        facecluster.cluster(X, k=2**63)
    nbrs, dists = facecluster.knn(X, k=10)
    with pytest.raises(TypeError, match="must be C-contiguous"):
        facecluster.cluster(nbrs=np.asfortranarray(nbrs), dists=dists)
    with pytest.raises(TypeError, match="got dtype float32"):
        facecluster.cluster(nbrs=nbrs.astype(np.float32), dists=dists)
    assert facecluster.cluster(nbrs=nbrs.astype(np.int64), dists=dists).shape == (300,)


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <string.h>
/* rename() fails with EBUSY for a target named scores.json: the third file of the results set. */
int rename(const char* from, const char* to) {
  const char* base = strrchr(to, '/');
  if (base && strcmp(base + 1, "scores.json") == 0) { errno = EBUSY; return -1; }
  int (*real)(const char*, const char*) = (int (*)(const char*, const char*))dlsym(RTLD_NEXT, "rename");
  return real(from, to);
}
"""


def test_a_rename_failing_midway_leaves_the_earlier_set(fc, tmp_path, synth):
    (tmp_path / "shim.c").write_text(SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "shim.so"), str(tmp_path / "shim.c"), "-ldl"],
                   check=True)
    out = tmp_path / "out"
    fc("cluster", "-f", f"{synth}.bin", "-d", 64, "-k", 20, "--tau", 0.6, "--calibrate", "off", "-o", out)
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    env = dict(os.environ, LD_PRELOAD=str(tmp_path / "shim.so"))
    proc = subprocess.run([str(BUILD / "facecluster"), "-q", "cluster", "-f", f"{synth}.bin", "-d", "64", "-k", "20",
                           "--tau", "0.8", "--calibrate", "off", "-o", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "scores.json: rename failed" in proc.stderr, proc.stderr
    # pred_labels.meta and density.txt had been replaced before scores.json failed: put back.
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before
    # And into a new folder: nothing of the half-written set stays.
    proc = subprocess.run([str(BUILD / "facecluster"), "-q", "cluster", "-f", f"{synth}.bin", "-d", "64", "-k", "20",
                           "-o", str(tmp_path / "fresh")], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and os.listdir(tmp_path / "fresh") == [], proc.stderr
