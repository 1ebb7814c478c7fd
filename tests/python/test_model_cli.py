"""The learned similarity from the command line: train, resume, eval, cluster --model, and bad input."""
import json
import os

import numpy as np
import pytest

from conftest import ROOT, fails

DIM, K = 16, 10


def chosen_f(scores):
    return next(e for e in scores["sweep"] if e["tau"] == scores["chosen_tau"])["scores"]["pairwise_f"]


def tiny_config(tmp_path, prefix, val_prefix=None, epochs=2, extra=""):
    val = ""
    if val_prefix:
        val = f"""test_dataset_args:
  feature_path: {val_prefix}.bin
  label_path: {val_prefix}.meta
  feature_dim: *feature_dim
  model_topk: *model_topk
  knn_path: {tmp_path}/val_knn.npz
"""
    text = f"""seed: 3
work_dir: {tmp_path}/work
print_interval: 5
save_interval: 1
batch_size: 32
test_batch_size: 64
dataset_args:
  feature_path: {prefix}.bin
  label_path: {prefix}.meta
  feature_dim: &feature_dim {DIM}
  model_topk: &model_topk {K}
  knn_path: {tmp_path}/train_knn.npz
{val}epochs: {epochs}
learning_rate: 0.003
weight_decay: 0.0
eval_epoch: 2
model_args:
  d_model: *feature_dim
  nhead: 2
  dim_feedforward: 32
  dropout: 0.1
  num_of_feats: *model_topk
cluster_args:
  tau_start: 0.3
  tau_end: 0.9
  tau_step: 4
{extra}"""
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def splits(fc, tmp_path):
    fc("synth", "-o", tmp_path / "tr", "-n", 600, "-d", DIM, "--seed", 1)
    fc("synth", "-o", tmp_path / "va", "-n", 300, "-d", DIM, "--seed", 2)
    return tmp_path / "tr", tmp_path / "va"


def test_train_resume_and_eval(fc, tmp_path, splits):
    tr, va = splits
    cfg = tiny_config(tmp_path, tr, va)
    proc = fc("train", "-c", cfg)
    work = tmp_path / "work"
    assert {"epoch_1.ckpt", "epoch_2.ckpt", "model.fcmodel", "train_log.json"} <= set(os.listdir(work))
    assert not any(".tmp." in n for n in os.listdir(work))
    log = json.loads((work / "train_log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2]
    assert 0 < log[-1]["val_pair_accuracy"] <= 1 and log[-1]["loss"] > 0
    assert "val-acc" in proc.stdout

    # Resume to epoch 3 from the latest checkpoint.
    proc = fc("train", "-c", cfg, "--reload", "--set", "epochs=3")
    assert (work / "epoch_3.ckpt").exists()
    # The log keeps the first run's epochs (issue 38: it once held only the resumed ones).
    resumed = json.loads((work / "train_log.json").read_text())
    assert [e["epoch"] for e in resumed] == [1, 2, 3] and resumed[:2] == log
    # A fresh run into the same work_dir would mix with these checkpoints: refused, nothing changed.
    before = {n: (work / n).stat().st_mtime_ns for n in os.listdir(work)}
    fails(fc, "train", "-c", cfg, fragment="holds checkpoints of an earlier run (latest epoch_3.ckpt)")
    assert {n: (work / n).stat().st_mtime_ns for n in os.listdir(work)} == before

    # Eval (eval_epoch 2) on the validation split: results and scores like the release's eval.py.
    proc = fc("eval", "-c", cfg)
    res = work / "results"
    labels = np.loadtxt(res / "pred_labels.meta", dtype=np.int64)
    assert labels.shape == (300,)
    scores = json.loads((res / "scores.json").read_text())
    assert len(scores["sweep"]) == 4 and 0 < chosen_f(scores) <= 1

    # cluster --model takes the weights-only file too and gives the same labels at the same tau.
    out = tmp_path / "cm"
    fc("cluster", "-c", cfg, "--model", work / "epoch_2.ckpt", "-o", out)
    same = np.loadtxt(out / "pred_labels.meta", dtype=np.int64)
    assert (same == labels).all()


def test_model_bad_input(fc, tmp_path, splits):
    tr, va = splits
    cfg = tiny_config(tmp_path, tr, va, epochs=1)
    # Training without labels.
    nolab = tmp_path / "nolab.yaml"
    nolab.write_text(cfg.read_text().replace(f"  label_path: {tr}.meta\n", ""))
    proc = fc("train", "-c", nolab, check=False)
    assert proc.returncode != 0 and "label_path" in proc.stderr, proc.stderr
    # A key of the wrong type.
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text().replace("epochs: 1", "epochs: many"))
    proc = fc("train", "-c", bad, check=False)
    assert proc.returncode != 0 and "epochs" in proc.stderr and "bad.yaml" in proc.stderr
    # eval before any training: names the checkpoint it looked for.
    proc = fc("eval", "-c", cfg, check=False)
    assert proc.returncode != 0 and "epoch_2.ckpt" in proc.stderr, proc.stderr
    fc("train", "-c", cfg)
    ckpt = tmp_path / "work" / "epoch_1.ckpt"
    # Truncated checkpoint.
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    proc = fc("cluster", "-f", f"{va}.bin", "-d", DIM, "-k", K, "--model", cut, check=False)
    assert proc.returncode != 0 and str(cut) in proc.stderr, proc.stderr
    # A checkpoint of another architecture for this config.
    other = tmp_path / "other.yaml"
    other.write_text(cfg.read_text().replace("dim_feedforward: 32", "dim_feedforward: 64"))
    proc = fc("eval", "-c", other, "--model", ckpt, check=False)
    assert proc.returncode != 0 and "dim_feedforward 32" in proc.stderr, proc.stderr
    # Features of another dimension.
    fc("synth", "-o", tmp_path / "wide", "-n", 200, "-d", 24, "--seed", 5)
    proc = fc("cluster", "-f", tmp_path / "wide.bin", "-d", 24, "-k", K, "--model", ckpt, check=False)
    assert proc.returncode != 0 and "16-d" in proc.stderr, proc.stderr
    assert not any(".tmp." in n for n in os.listdir(tmp_path / "work"))


def test_cluster_with_the_shipped_model(fc, tmp_path):
    if not (ROOT / "models" / "default.fcmodel").exists():
        pytest.skip("models/default.fcmodel not in this checkout")
    fc("synth", "-o", tmp_path / "s", "-n", 400, "-d", 256, "--seed", 9)
    out = tmp_path / "out"
    fc("cluster", "-f", tmp_path / "s.bin", "-d", 256, "-l", tmp_path / "s.meta", "--model", "default", "-o", out)
    scores = json.loads((out / "scores.json").read_text())
    assert chosen_f(scores) > 0.5


def test_a_bad_architecture_is_refused_before_the_knn_work(fc, tmp_path, splits):
    tr, va = splits
    cfg = tiny_config(tmp_path, tr, va, epochs=1)
    cfg.write_text(cfg.read_text().replace("  nhead: 2\n", "  nhead: 3\n"))
    fails(fc, "train", "-c", cfg, fragment="model_args.d_model (16) must be a multiple of nhead (3)")
    assert not (tmp_path / "train_knn.npz").exists() and not (tmp_path / "val_knn.npz").exists()
