"""The facecluster program as a user meets it: outputs, bad input, exit codes, no partial files."""
import json
import os

import numpy as np
import pytest

from conftest import ROOT, SHARED


def write_synth(fc, tmp_path, n=1500, dim=32, seed=1):
    prefix = tmp_path / "s"
    fc("synth", "-o", prefix, "-n", n, "-d", dim, "--seed", seed)
    return prefix


def test_synth_is_deterministic_and_numpy_readable(fc, tmp_path):
    a = write_synth(fc, tmp_path)
    x = np.fromfile(f"{a}.bin", dtype="<f4").reshape(-1, 32)
    labels = np.loadtxt(f"{a}.meta", dtype=np.int64)
    assert x.shape == (1500, 32) and labels.shape == (1500,)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    (tmp_path / "b").mkdir()
    fc("synth", "-o", tmp_path / "b" / "s", "-n", 1500, "-d", 32, "--seed", 1)
    assert (tmp_path / "b" / "s.bin").read_bytes() == a.with_suffix(".bin").read_bytes()


def test_knn_cache_is_numpy_compatible(fc, tmp_path):
    prefix = write_synth(fc, tmp_path)
    fc("knn", "-f", f"{prefix}.bin", "-d", 32, "-k", 10, "-o", tmp_path / "knn.npz")
    data = np.load(tmp_path / "knn.npz")["data"]
    assert data.shape == (1500, 2, 10) and data.dtype == np.float32
    x = np.fromfile(f"{prefix}.bin", dtype="<f4").reshape(-1, 32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    exact = np.sort(1 - sims, axis=1)[:, :10]
    np.testing.assert_allclose(data[:, 1, :], np.maximum(exact, 0), atol=2e-5)
    assert (data[:, 0, 0] == np.arange(1500)).all()


def test_cluster_reads_numpy_written_cache_and_scores(fc, tmp_path):
    prefix = write_synth(fc, tmp_path)
    x = np.fromfile(f"{prefix}.bin", dtype="<f4").reshape(-1, 32).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :20]
    dist = 1 - np.take_along_axis(sims, order, 1)
    np.savez_compressed(tmp_path / "np_knn.npz", data=np.stack([order.astype(np.float64), dist], axis=1))
    out = tmp_path / "out"
    fc("cluster", "-f", f"{prefix}.bin", "-d", 32, "-l", f"{prefix}.meta", "--knn", tmp_path / "np_knn.npz",
       "-k", 20, "-o", out, "--tau-range", "0.5:0.9:3")
    scores = json.loads((out / "scores.json").read_text())
    assert len(scores["sweep"]) == 3
    pred = np.loadtxt(out / "pred_labels.meta", dtype=np.int64)
    assert pred.shape == (1500,)
    ev = fc("evaluate", "--pred", out / "pred_labels.meta", "--gt", f"{prefix}.meta", "--json")
    got = json.loads(ev.stdout)["scores"]
    best = max(scores["sweep"], key=lambda e: e["scores"]["pairwise_f"])
    assert abs(got["pairwise_f"] - best["scores"]["pairwise_f"]) < 1e-6
    assert len(np.loadtxt(out / "density.txt")) == 1500


def test_evaluate_table_and_bins(fc, tmp_path):
    (tmp_path / "gt.meta").write_text("1\n1\n2\n2\n2\n")
    (tmp_path / "pred.meta").write_text("0\n0\n1\n1\n0\n")
    out = fc("evaluate", "--pred", tmp_path / "pred.meta", "--gt", tmp_path / "gt.meta", "--bins", 2).stdout
    assert "pairwise" in out and "bcubed" in out and "bin 1 = smallest" in out


@pytest.mark.parametrize("case", ["bad_size", "no_dim", "nan_row", "zero_row", "meta_text", "meta_count",
                                  "npz_truncated", "npz_no_data", "npz_shape", "npz_range", "yaml_key",
                                  "yaml_type", "out_folder", "empty", "tau", "npz_rows"])
def test_bad_input_fails_clearly_and_leaves_nothing(fc, tmp_path, case):
    prefix = write_synth(fc, tmp_path, n=300, dim=8)
    feats, meta = f"{prefix}.bin", f"{prefix}.meta"
    out = tmp_path / "out"
    args = ["cluster", "-f", feats, "-d", 8, "-l", meta, "-k", 10, "-o", out]
    fragment = None
    if case == "bad_size":
        (tmp_path / "odd.bin").write_bytes(b"\0" * 30)
        args[2], fragment = tmp_path / "odd.bin", "not a multiple of 4 x 8"
    elif case == "no_dim":
        args = ["knn", "-f", feats, "-o", out]  # a .bin without its dimension
        fragment = "dimension must be given"
    elif case in ("nan_row", "zero_row"):
        x = np.fromfile(feats, dtype="<f4").reshape(-1, 8)
        x[5] = np.nan if case == "nan_row" else 0
        x.tofile(tmp_path / "bad.bin")
        args[2], fragment = tmp_path / "bad.bin", "row 5"
    elif case == "meta_text":
        (tmp_path / "bad.meta").write_text("1\nx\n")
        args[6], fragment = tmp_path / "bad.meta", "line 2 is not an integer"
    elif case == "meta_count":
        (tmp_path / "bad.meta").write_text("1\n2\n")
        args[6], fragment = tmp_path / "bad.meta", "have 2 rows"
    elif case.startswith("npz"):
        good = np.zeros((300, 2, 10), np.float32)
        good[:, 0, :] = (np.arange(300)[:, None] + np.arange(10)) % 300
        good[:, 1, :] = np.linspace(0, 0.5, 10)
        path = tmp_path / "bad.npz"
        if case == "npz_truncated":
            np.savez(path, data=good)
            path.write_bytes(path.read_bytes()[:500])
            fragment = "bad.npz"
        elif case == "npz_no_data":
            np.savez(path, nbrs=good)
            fragment = "no array 'data'"
        elif case == "npz_shape":
            np.savez(path, data=good[:, :1, :])
            fragment = "(N, 2, k)"
        elif case == "npz_range":
            good[7, 0, 3] = 300
            np.savez(path, data=good)
            fragment = "row 7 neighbour 3 has index 300"
        else:
            np.savez(path, data=good[:200])
            fragment = "has 200 rows but the features have 300"
        args += ["--knn", path]
    elif case in ("yaml_key", "yaml_type"):
        cfg = tmp_path / "c.yaml"
        cfg.write_text("cluster_args:\n  tua_start: 0.5\n" if case == "yaml_key" else "cluster_args:\n  tau_step: many\n")
        args += ["-c", cfg]
        fragment = "unknown key 'cluster_args.tua_start'" if case == "yaml_key" else "'cluster_args.tau_step' must be an integer"
    elif case == "out_folder":
        args[-1] = tmp_path / "missing" / "out"
        fragment = "does not exist"
    elif case == "empty":
        (tmp_path / "empty.bin").write_bytes(b"")
        args[2], fragment = tmp_path / "empty.bin", "empty"
    elif case == "tau":
        args += ["--tau", 1.5]
        fragment = "tau must be in (0, 1]"
    before = set(os.listdir(tmp_path))
    proc = fc(*args, check=False)
    assert proc.returncode != 0
    assert fragment in proc.stderr, proc.stderr
    assert "error:" in proc.stderr
    left = set(os.listdir(tmp_path)) - before
    assert not any(".tmp." in name for name in os.listdir(tmp_path)), left
    assert not out.exists() or not any(out.iterdir())


def test_knn_recall_sample_and_approximate_index(fc, tmp_path):
    prefix = write_synth(fc, tmp_path, n=3000, dim=32)
    proc = fc("knn", "-f", f"{prefix}.bin", "-d", 32, "-k", 20, "--index", "hnsw", "--recall-sample", 200,
              "-o", tmp_path / "h.npz")
    recall = float(proc.stdout.split("recall@20 on 200 sampled rows: ")[1].split()[0])
    assert recall >= 0.97


def test_help_and_unknown_subcommand(fc):
    assert "cluster" in fc("--help").stdout
    assert fc("nonsense", check=False).returncode != 0


def test_release_style_config_on_celeba299(fc, tmp_path):
    src = SHARED / "celeba299" / "celeba299_mfn128.bin"
    if not src.exists():
        pytest.skip("../shared/data/celeba299 not found")
    text = (ROOT / "configs" / "cluster_celeba299.yaml").read_text()
    text = text.replace("../shared/data", str(SHARED)).replace("./save", str(tmp_path / "save"))
    (tmp_path / "c.yaml").write_text(text)
    out = fc("cluster", "-c", tmp_path / "c.yaml").stdout
    scores = json.loads((tmp_path / "save" / "celeba299" / "results" / "scores.json").read_text())
    # Each automatic choice is said once, in one line; the fit in full goes to scores.json only.
    decisions = [line for line in out.splitlines() if line.startswith("auto:")]
    assert [d.removeprefix("auto: ") for d in decisions] == scores["decisions"]
    assert decisions[0].startswith("auto: distances calibrated") and decisions[1].startswith("auto: tau ")
    assert "pair mixture" in scores["notes"][0] and "pair mixture" not in out
    assert scores["sweep"][0]["scores"]["pairwise_f"] > 0.9
    assert (tmp_path / "save" / "knns" / "celeba299" / "faiss_k_80.npz").exists()
