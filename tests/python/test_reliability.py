"""A hostile but realistic user: inputs are never overwritten, nothing crashes, nothing is silently
wrong, and every failure is one line `facecluster: error: ...` with exit code 1."""
import os
import shutil
import signal
import stat
import subprocess
import time

import numpy as np
import pytest

from conftest import BUILD, ROOT, fails


@pytest.fixture
def synth(fc, tmp_path):
    prefix = tmp_path / "s"
    fc("synth", "-o", prefix, "-n", 3000, "-d", 64, "--seed", 3)
    return prefix


def no_temporaries(folder):
    return not any(".tmp." in name for name in os.listdir(folder))


# ---- data loss -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["knn_npy", "features_as_cache", "labels_as_cache", "labels_in_results"])
def test_an_output_that_is_an_input_is_refused(fc, tmp_path, synth, case):
    feats, meta = f"{synth}.bin", f"{synth}.meta"
    if case == "knn_npy":
        x = np.fromfile(feats, dtype="<f4").reshape(-1, 64)
        np.save(tmp_path / "s.npy", x)
        victim = tmp_path / "s.npy"
        args = ["knn", "-f", victim, "-o", victim]
    elif case == "features_as_cache":
        victim = pathlib_of(feats)
        args = ["cluster", "-f", feats, "-d", 64, "--knn", feats, "--reload"]
    elif case == "labels_as_cache":
        victim = pathlib_of(meta)
        args = ["cluster", "-f", feats, "-d", 64, "-l", meta, "--knn", meta, "--reload"]
    else:
        fc("cluster", "-f", feats, "-d", 64, "-k", 20, "-o", tmp_path / "r")
        shutil.copy(meta, tmp_path / "r" / "pred_labels.meta")  # the truth kept in the results folder
        victim = tmp_path / "r" / "pred_labels.meta"
        args = ["cluster", "-f", feats, "-d", 64, "-k", 20, "-l", victim, "-o", tmp_path / "r"]
    before = victim.read_bytes()
    fails(fc, *args, fragment="given as input")
    assert victim.read_bytes() == before


def pathlib_of(p):
    import pathlib
    return pathlib.Path(p)


def test_export_model_onto_its_checkpoint_is_refused(fc, tmp_path):
    if not (ROOT / "models" / "default.fcmodel").exists():
        pytest.skip("models/default.fcmodel not in the checkout")
    ck = tmp_path / "c.fcmodel"
    shutil.copy(ROOT / "models" / "default.fcmodel", ck)
    before = ck.read_bytes()
    fails(fc, "export-model", ck, ck, fragment="given as input")
    assert ck.read_bytes() == before


def test_a_target_that_is_not_a_regular_file_is_refused(fc, tmp_path, synth):
    # A named pipe stands in for /dev/null: the same refusal, and a regression cannot clobber
    # the machine's /dev/null when the suite runs as root (an earlier build did exactly that).
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    fails(fc, "knn", "-f", f"{synth}.bin", "-d", 64, "-k", 5, "-o", pipe, fragment="not a regular file")
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    (tmp_path / "folder").mkdir()
    fails(fc, "knn", "-f", f"{synth}.bin", "-d", 64, "-k", 5, "-o", tmp_path / "folder", fragment="is a folder")


def test_results_are_replaced_as_one_set(fc, fc_bin, tmp_path, synth):
    out = tmp_path / "r"
    base = ["cluster", "-f", f"{synth}.bin", "-d", 64, "-l", f"{synth}.meta", "-k", 20, "--calibrate", "off", "-o", out]
    fc(*base, "--tau", 0.3)
    old = {name: (out / name).read_bytes() for name in os.listdir(out)}
    assert len(old) == 5
    # A file-size limit that lets the first results file through and stops a later one: the
    # process dies of SIGXFSZ in the middle of writing the set.
    proc = subprocess.run(["bash", "-c", 'ulimit -f 20; exec "$@"', "_", fc_bin, "-q", *map(str, base), "--tau", "0.9"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert {name: (out / name).read_bytes() for name in os.listdir(out) if ".tmp." not in name} == old
    fc(*base, "--tau", 0.9)  # the next run sweeps the dead run's temporaries
    assert no_temporaries(out)
    assert (out / "pred_labels.meta").read_bytes() != old["pred_labels.meta"]


def test_sigterm_stops_cleanly_and_stale_temporaries_are_swept(fc_bin, tmp_path, synth):
    out = tmp_path / "r"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / f"pred_labels.meta.tmp.{dead.pid}.abc123"
    stale.write_text("left by a killed run")
    big = tmp_path / "big.bin"
    np.random.default_rng(0).standard_normal((150000, 64), dtype=np.float32).tofile(big)
    proc = subprocess.Popen([fc_bin, "-q", "cluster", "-f", str(big), "-d", "64", "-o", str(out)], stderr=subprocess.PIPE,
                            text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted" in err
    assert stale.exists()  # nothing was written yet, so nothing swept
    assert [n for n in os.listdir(out) if ".tmp." not in n] == []
    subprocess.run([fc_bin, "-q", "cluster", "-f", f"{synth}.bin", "-d", "64", "-k", "10", "-o", str(out)], check=True,
                   capture_output=True)
    assert not stale.exists()


# ---- crashes and hangs -----------------------------------------------------------------------

def test_non_finite_or_out_of_range_distances_are_refused(fc, tmp_path, synth):
    good = np.zeros((3000, 2, 10), np.float32)
    good[:, 0, :] = (np.arange(3000)[:, None] + np.arange(10)) % 3000
    good[:, 1, :] = np.linspace(0, 0.5, 10)
    for value, name in ((np.inf, "inf"), (1e6, "big")):
        bad = good.copy()
        bad[5, 1, 9] = value
        np.savez(tmp_path / f"{name}.npz", data=bad)
        fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "-k", 10, "--knn", tmp_path / f"{name}.npz",
              fragment="outside [0, 2]")


def test_absurd_threads_and_tau_counts_are_refused_quickly(fc, synth):
    fails(fc, "--threads", 100000, "cluster", "-f", f"{synth}.bin", "-d", 64, fragment="threads must be in [0, 1024]")
    start = time.monotonic()
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "--tau-range", "0.5:0.9:1000000000",
          fragment="number of tau values")
    assert time.monotonic() - start < 5


# ---- silent wrong results --------------------------------------------------------------------

def test_tiny_rows_are_refused(fc, tmp_path, synth):
    x = np.fromfile(f"{synth}.bin", dtype="<f4").reshape(-1, 64)
    (x * np.float32(1e-40)).tofile(tmp_path / "tiny.bin")
    fails(fc, "knn", "-f", tmp_path / "tiny.bin", "-d", 64, "-o", tmp_path / "k.npz", fragment="too small to normalise")
    assert not (tmp_path / "k.npz").exists()


def test_bad_index_parameters_are_refused(fc, tmp_path, synth):
    fails(fc, "knn", "-f", f"{synth}.bin", "-d", 64, "--index", "ivf", "--nprobe", 0, "-o", tmp_path / "k.npz",
          fragment="nprobe must be >= 1")
    fails(fc, "knn", "-f", f"{synth}.bin", "-d", 64, "--recall-sample", -1, "-o", tmp_path / "k.npz",
          fragment="--recall-sample")


def test_a_flipped_byte_in_an_npz_is_caught(fc, tmp_path, synth):
    fc("knn", "-f", f"{synth}.bin", "-d", 64, "-k", 10, "-o", tmp_path / "k.npz")
    data = bytearray((tmp_path / "k.npz").read_bytes())
    start = data.index(b"\x93NUMPY")
    header_len = int.from_bytes(data[start + 8:start + 10], "little")
    payload = start + 10 + header_len
    row, col = 1234, 7  # the lowest byte of one distance: still a valid, sorted value
    data[payload + (row * 20 + 10 + col) * 4] ^= 1
    (tmp_path / "k.npz").write_bytes(bytes(data))
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "-k", 10, "--knn", tmp_path / "k.npz", fragment="checksum")


def test_a_malformed_npy_shape_is_refused(fc, tmp_path):
    x = np.ones((30, 6), np.float32)
    np.save(tmp_path / "x.npy", x)
    raw = (tmp_path / "x.npy").read_bytes()
    assert b"(30, 6), }" in raw and b" \n" in raw
    raw = raw.replace(b"(30, 6), }", b"(30, 6A), }", 1).replace(b" \n", b"\n", 1)  # same header length
    (tmp_path / "bad.npy").write_bytes(raw)
    fails(fc, "knn", "-f", tmp_path / "bad.npy", "-o", tmp_path / "k.npz", fragment="malformed shape")


def test_hnsw_says_it_is_not_reproducible_with_threads(fc, tmp_path, synth):
    proc = fc("--threads", 2, "cluster", "-f", f"{synth}.bin", "-d", 64, "-k", 10, "--index", "hnsw")
    assert "--threads 1 makes them reproducible" in proc.stderr


@pytest.mark.parametrize("yaml_text, fragment", [
    ("cluster_args:\n  tau_step: 3\n  tau_step: 4\n", "given twice"),
    ("cluster_args:\n  tau_step: 0\n", "number of tau values"),
    ("cluster_args:\n  tau_start: 2\n", "tau must be in (0, 1]"),
    ("density_args:\n  ndde_max_iter: 1e12\n", "out of range"),
])
def test_config_values_are_checked_even_when_unused(fc, tmp_path, synth, yaml_text, fragment):
    (tmp_path / "c.yaml").write_text(yaml_text)
    fails(fc, "cluster", "-c", tmp_path / "c.yaml", "-f", f"{synth}.bin", "-d", 64, fragment=fragment)


def test_tau_nan_is_refused(fc, synth):
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "--tau", "nan", fragment="tau must be in (0, 1]")


def test_bogus_loss_is_refused_before_any_work(fc, tmp_path, synth):
    (tmp_path / "t.yaml").write_text(
        f"work_dir: {tmp_path}/w\ndataset_args:\n  feature_path: {synth}.bin\n  label_path: {synth}.meta\n"
        f"  feature_dim: 64\n  knn_path: {tmp_path}/knn.npz\nloss_list: [bogus]\n")
    fails(fc, "train", "-c", tmp_path / "t.yaml", fragment="unknown loss 'bogus'")
    assert not (tmp_path / "knn.npz").exists()


# ---- unclear errors --------------------------------------------------------------------------

def test_parse_errors_use_the_contract(fc):
    fails(fc, "cluster", "--bins", "abc", fragment="--bins")
    fails(fc, "cluster", "--no-such-flag", fragment="no-such-flag")


def test_folders_where_files_belong(fc, tmp_path, synth):
    (tmp_path / "d").mkdir()
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "-l", tmp_path / "d", fragment="is not a file")
    fails(fc, "cluster", "-c", tmp_path / "d", fragment="is not a file")
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "--model", tmp_path / "d", fragment="is not a file")


def test_relative_results_folder_with_a_config(fc, tmp_path, synth):
    (tmp_path / "c.yaml").write_text(f"test_dataset_args:\n  feature_path: {synth}.bin\n  feature_dim: 64\n"
                                     "  model_topk: 10\n")
    proc = subprocess.run([str(BUILD / "facecluster"), "-q", "cluster", "-c", "c.yaml", "-o", "res"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "res" / "pred_labels.meta").exists()


def test_raw_input_is_quoted_short_and_printable(fc, tmp_path, synth):
    (tmp_path / "bad.meta").write_bytes(b"1\n" + b"12abc\xff\x1b[31m" * 200000 + b"\n")
    line = fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "-l", tmp_path / "bad.meta",
                 fragment="is not an integer")
    assert "\x1b" not in line and "\x00" not in line


def test_huge_synth_is_refused_with_a_message(fc, tmp_path):
    line = fails(fc, "synth", "-o", tmp_path / "s", "-n", 1000000000000, "-d", 256, fragment="synth")
    assert "bad_alloc" not in line


def test_unwritable_results_folder_is_found_before_work(fc, tmp_path, synth):
    if os.geteuid() == 0:
        pytest.skip("root writes into any folder; the check is for ordinary users")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    fails(fc, "cluster", "-f", f"{synth}.bin", "-d", 64, "-o", locked / "r", fragment="not writable")


def test_folders_given_to_evaluate_and_knn(fc, tmp_path, synth):
    (tmp_path / "d").mkdir()
    fails(fc, "evaluate", "--pred", tmp_path / "d", "--gt", f"{synth}.meta", fragment="is not a file")
    fails(fc, "knn", "-f", tmp_path / "d", "-d", 64, "-o", tmp_path / "k.npz", fragment="is not a file")
    fails(fc, "evaluate", "--pred", f"{synth}.meta", "--gt", f"{synth}.meta", "--bins", 0, fragment="--bins must be in")


def test_ctrl_c_during_hnsw_insertion_stops_quickly(fc_bin, tmp_path):
    big = tmp_path / "big.bin"
    np.random.default_rng(1).standard_normal((60000, 128), dtype=np.float32).tofile(big)
    proc = subprocess.Popen([fc_bin, "-q", "--threads", "1", "knn", "-f", str(big), "-d", "128", "--index", "hnsw",
                             "--ef-construction", "200", "-o", str(tmp_path / "k.npz")], stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert time.monotonic() - start < 3.0, "the insertion did not stop promptly"
    assert not (tmp_path / "k.npz").exists() and no_temporaries(tmp_path)
