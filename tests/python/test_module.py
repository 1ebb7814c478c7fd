"""The Python module: same results as the CLI, numpy-friendly errors, GIL and Ctrl-C behaviour."""
import os
import signal
import threading
import time

import numpy as np
import pytest

from conftest import BUILD, run

facecluster = pytest.importorskip("facecluster", reason="Python module not built (build/python on PYTHONPATH)")


@pytest.fixture(scope="module")
def data():
    return facecluster.synth(n=4000, dim=64, seed=3)


def test_synth_shapes_and_seed(data):
    X, y = data
    assert X.dtype == np.float32 and X.shape == (4000, 64) and X.flags.c_contiguous
    assert y.dtype == np.int64 and y.shape == (4000,)
    X2, y2 = facecluster.synth(n=4000, dim=64, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)


def test_knn_matches_numpy_brute_force(data):
    X, _ = data
    nbrs, dists = facecluster.knn(X[:800], k=10)
    sims = X[:800].astype(np.float64) @ X[:800].T.astype(np.float64)
    ref = np.sort(1 - sims, axis=1)[:, :10]
    np.testing.assert_allclose(dists, np.maximum(ref, 0), atol=2e-5)
    assert (nbrs[:, 0] == np.arange(800)).all()


def test_same_labels_as_cli(data, tmp_path, fc_bin):
    X, y = data
    X.tofile(tmp_path / "x.bin")
    np.savetxt(tmp_path / "y.meta", y, fmt="%d")
    run(fc_bin, "cluster", "-f", tmp_path / "x.bin", "-d", 64, "--knn", tmp_path / "knn.npz", "-o", tmp_path / "out")
    cli = np.loadtxt(tmp_path / "out" / "pred_labels.meta", dtype=np.int64)
    nbrs, dists = facecluster.load_knn(tmp_path / "knn.npz", expected_n=4000)
    py = facecluster.cluster(nbrs=nbrs, dists=dists)
    assert np.array_equal(cli, py)
    assert np.array_equal(facecluster.cluster(X), py)  # features in: same graph, same labels
    cli_scores = run(fc_bin, "evaluate", "--pred", tmp_path / "out" / "pred_labels.meta", "--gt", tmp_path / "y.meta",
                     "--json").stdout
    import json
    assert abs(json.loads(cli_scores)["scores"]["bcubed_f"] - facecluster.evaluate(py, y)["scores"]["bcubed_f"]) < 1e-6


def test_npz_round_trip_with_numpy(tmp_path, data):
    X, _ = data
    nbrs, dists = facecluster.knn(X, k=12)
    np.savez(tmp_path / "np.npz", data=np.stack([nbrs.astype(np.float64), dists.astype(np.float64)], axis=1))
    n2, d2 = facecluster.load_knn(tmp_path / "np.npz")
    assert np.array_equal(n2, nbrs) and np.allclose(d2, dists)
    facecluster.save_knn(tmp_path / "fc.npz", nbrs, dists, compress=True)
    arr = np.load(tmp_path / "fc.npz")["data"]
    assert arr.shape == (4000, 2, 12) and arr.dtype == np.float32
    assert np.array_equal(arr[:, 0].astype(np.int32), nbrs)


def test_labels_stable_and_estimator(data):
    X, y = data
    a = facecluster.FaceClusterer(k=40).fit_predict(X)
    est = facecluster.FaceClusterer(k=40)
    b = est.fit_predict(X)
    assert np.array_equal(a, b)
    assert est.labels_.shape == (4000,) and est.density_.shape == (4000,)
    assert est.notes_ and 0 < est.tau_ <= 1
    assert len(est.decisions_) == 2 and est.decisions_[1].startswith(f"tau {est.tau_:.3f}")
    assert facecluster.evaluate(b, y)["scores"]["pairwise_f"] > 0.5
    assert est.set_params(tau=0.5).get_params()["tau"] == 0.5


def test_sweep_with_gt_returns_best(data):
    X, y = data
    nbrs, dists = facecluster.knn(X, k=30)
    best = facecluster.cluster(nbrs=nbrs, dists=dists, tau=[0.3, 0.5, 0.7, 0.9], gt=y, calibrate="off")
    scores = [facecluster.evaluate(facecluster.cluster(nbrs=nbrs, dists=dists, tau=t, calibrate="off"), y)["scores"]
              ["pairwise_f"] for t in (0.3, 0.5, 0.7, 0.9)]
    assert abs(facecluster.evaluate(best, y)["scores"]["pairwise_f"] - max(scores)) < 1e-12


@pytest.mark.parametrize("bad, exc", [
    (np.zeros((10, 4), np.float64), TypeError),
    (np.zeros((10, 8), np.float32)[:, ::2], TypeError),
    (np.zeros(10, np.float32), ValueError),
    (np.zeros((0, 4), np.float32), ValueError),
])
def test_dtype_and_shape_errors(bad, exc):
    with pytest.raises(exc):
        facecluster.knn(bad, k=3)


def test_bad_graph_and_values():
    with pytest.raises(ValueError, match="outside"):
        facecluster.cluster(nbrs=np.array([[0, 5]], np.int32), dists=np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="not sorted"):
        facecluster.cluster(nbrs=np.array([[0, 1], [1, 0]], np.int32), dists=np.array([[0.5, 0.1], [0, 0.1]], np.float32))
    with pytest.raises(ValueError, match="tau"):
        facecluster.cluster(nbrs=np.array([[0, 1], [1, 0]], np.int32), dists=np.array([[0, 0.1], [0, 0.1]], np.float32),
                            tau=2.0)
    with pytest.raises(ValueError):
        facecluster.evaluate([1, 2, 3], [1, 2])
    y = np.array([0, 0, 1, 1])
    with pytest.raises(TypeError, match="integer labels"):
        facecluster.evaluate(y.astype(float) + 0.5, y)


def test_ctrl_c_interrupts_a_long_call():
    X = np.random.default_rng(0).standard_normal((120000, 256), dtype=np.float32)
    # Python raises KeyboardInterrupt on SIGINT only when it installed its handler at start-up; a
    # process started in the background by a non-interactive shell inherits SIGINT ignored and
    # never sees Ctrl-C (that, not the module, failed this test in background runs). Install it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
        start = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            facecluster.knn(X, k=80)
        assert time.monotonic() - start < 15.0  # exact search of 120K x 256 takes ~40 s here
    finally:
        signal.signal(signal.SIGINT, previous)


def test_gil_is_released(data):
    X, _ = data
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    big = np.ascontiguousarray(np.tile(X, (5, 1)))
    facecluster.knn(big, k=80)
    stop.set()
    t.join()
    assert len(ticks) > 20


def _cpp_defaults():
    return {name: default for name, default, _ in facecluster._core.parameters()}


def test_python_defaults_are_the_cpp_plans():
    import inspect
    sig = inspect.signature(facecluster.FaceClusterer)
    python = {name: p.default for name, p in sig.parameters.items()}
    assert python == _cpp_defaults()
    assert python["k"] == 80 and python["tau"] is None and python["calibrate"] is None and python["model"] is None
    # get_params comes from the signature
    assert set(facecluster.FaceClusterer().get_params()) == set(python)
    assert inspect.signature(facecluster.evaluate).parameters["bins"].default == _cpp_defaults()["bins"]
    synth_sig = inspect.signature(facecluster.synth).parameters
    assert {k: synth_sig[k].default for k in facecluster._core.synth_defaults()} == facecluster._core.synth_defaults()
    knn_sig = inspect.signature(facecluster.knn).parameters
    for name in ("k", "index", "nlist", "nprobe", "hnsw_m", "ef_construction", "ef_search", "probe", "refine", "knn_precision", "threads"):
        assert knn_sig[name].default == _cpp_defaults()[name], name


def test_type_stub_names_the_same_parameters():
    # The .pyi stub is written by hand: every public signature must name the parameters the
    # module really takes, in the same order.
    import ast
    import inspect
    from conftest import ROOT
    stub = ast.parse((ROOT / "src" / "python" / "facecluster" / "__init__.pyi").read_text())

    def params(fn):
        a = fn.args
        return [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg != "self"]

    defs = {n.name: n for n in stub.body if isinstance(n, ast.FunctionDef)}
    cls = next(n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "FaceClusterer")
    defs["FaceClusterer"] = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    for name in ("knn", "knn_recall", "evaluate", "synth", "load_knn", "save_knn", "set_verbose", "FaceClusterer"):
        runtime = [p for p in inspect.signature(getattr(facecluster, name)).parameters if p != "params"]
        assert params(defs[name]) == runtime, name


def test_cluster_is_the_estimator(data):
    X, _ = data
    kw = dict(k=30, calibrate="off", tau=0.6)
    assert np.array_equal(facecluster.cluster(X, **kw), facecluster.FaceClusterer(**kw).fit(X).labels_)
    with pytest.raises(ValueError, match="unknown parameter"):
        facecluster.FaceClusterer().set_params(kk=3)
    with pytest.raises(ValueError, match="unknown knn index 'hnws'"):
        facecluster.cluster(X, index="hnws")
    with pytest.raises(ValueError, match="threads must be"):
        facecluster.cluster(X, threads=-1)


def _shape(obj):
    """Keys and nesting of a JSON value (list items by their first element)."""
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items() if k != "plan"}
    if isinstance(obj, list):
        return [_shape(obj[0])] if obj else []
    return type(obj).__name__ if not isinstance(obj, (int, float)) else "number"


def test_report_dict_has_the_cli_json_keys_and_bins(data, tmp_path, fc_bin):
    X, y = data
    X.tofile(tmp_path / "x.bin")
    np.savetxt(tmp_path / "y.meta", y, fmt="%d")
    run(fc_bin, "cluster", "-f", tmp_path / "x.bin", "-d", 64, "-l", tmp_path / "y.meta", "-o", tmp_path / "out")
    import json
    cli = json.loads((tmp_path / "out" / "scores.json").read_text())
    est = facecluster.FaceClusterer().fit(X, y)
    assert _shape(est.report_) == _shape(cli)
    assert np.array_equal(est.labels_, np.loadtxt(tmp_path / "out" / "pred_labels.meta", dtype=np.int64))
    assert len(est.report_["size_bins"]) == 5 and len(est.report_["sparsity_bins"]) == 5
    assert est.report_["size_bins"][0]["scores"]["pairwise_f"] == cli["size_bins"][0]["scores"]["pairwise_f"]
    est.save_report(tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text().count("<svg") >= 4


def test_model_stage_from_python_matches_the_cli(tmp_path, fc_bin):
    X, y = facecluster.synth(n=600, dim=256, seed=5)
    X.tofile(tmp_path / "x.bin")
    np.savetxt(tmp_path / "y.meta", y, fmt="%d")
    run(fc_bin, "cluster", "-f", tmp_path / "x.bin", "-d", 256, "-l", tmp_path / "y.meta", "--model", "default",
        "-o", tmp_path / "out")
    est = facecluster.FaceClusterer(model="default").fit(X, y)
    assert "default.fcmodel" in est.report_["plan"]["similarity"]
    assert est.report_["plan"]["calibrate"] == "off"  # the release's constants with a model
    assert np.array_equal(est.labels_, np.loadtxt(tmp_path / "out" / "pred_labels.meta", dtype=np.int64))
    # the learned graph differs from the cosine one
    nbrs, dists = facecluster.knn(X)
    assert not np.allclose(est.knn_[1], dists)
    assert est.report_["size_bins"]


def test_bad_values_from_python_are_refused(data):
    X, _ = data
    nbrs = np.array([[0, 1], [1, 0]], np.int32)
    with pytest.raises(ValueError, match=r"outside \[0, 2\]"):
        facecluster.cluster(nbrs=nbrs, dists=np.array([[0, np.inf], [0, 0.1]], np.float32))
    with pytest.raises(ValueError, match=r"outside \[0, 2\]"):
        facecluster.cluster(nbrs=nbrs, dists=np.array([[0, 1e6], [0, 0.1]], np.float32))
    for kw in (dict(threads=100000), dict(threads=-1)):
        with pytest.raises(ValueError, match="threads must be"):
            facecluster.knn(X[:100], k=5, **kw)
    with pytest.raises(ValueError, match="nlist must be"):
        facecluster.knn(X[:100], k=5, index="ivf", nlist=-5)
    with pytest.raises(ValueError, match="ef_search must be"):
        facecluster.knn(X[:100], k=5, index="hnsw", ef_search=-1)
    nb, d = facecluster.knn(X[:100], k=5)
    with pytest.raises(ValueError, match="sample must be"):
        facecluster.knn_recall(X[:100], nb, d, sample=-1)
    with pytest.raises(ValueError, match="mislabel_share"):
        facecluster.synth(n=100, dim=8, mislabel_share=2.0)
    with pytest.raises(ValueError, match="centre_dim must be"):
        facecluster.synth(n=100, dim=8, centre_dim=9)


def test_synth_centre_dim_crowds_strangers():
    # Random directions in C dimensions have cos^2 averaging 1 / C, so crowding the centres into
    # 8 of 128 dimensions raises the strangers' cosine spread several-fold (docs/synth.md).
    def stranger_cos_sd(centre_dim):
        X, y = facecluster.synth(n=3000, dim=128, seed=11, mislabel_share=0.0, centre_dim=centre_dim)
        rng = np.random.default_rng(0)
        i, j = rng.integers(0, len(y), 20000), rng.integers(0, len(y), 20000)
        keep = y[i] != y[j]
        return float(np.std(np.einsum("ij,ij->i", X[i[keep]], X[j[keep]])))
    assert stranger_cos_sd(8) > 2.5 * stranger_cos_sd(0)


def test_device_is_checked_and_cpu_gives_the_default_result(data):
    X, _ = data
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        facecluster.cluster(X[:500], device="gpu")
    assert facecluster.DEFAULTS["device"] == "auto"
    auto = facecluster.FaceClusterer().fit(X[:2000])
    if "cuda" not in auto.report_["plan"]["knn"]:  # auto is the CPU on a machine without a GPU
        np.testing.assert_array_equal(facecluster.cluster(X[:2000], device="cpu"), auto.labels_)
