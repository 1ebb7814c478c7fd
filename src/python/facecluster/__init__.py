"""facecluster: cluster face embeddings by identity.

The C++ engine (kNN graph, NDDE density, TPDi distance, density-peak linking) for numpy arrays.
A thin scikit-learn style layer: the defaults, the validation and the whole pipeline are the C++
run plan's, the same as the command line's. Long calls release the GIL and stop with
KeyboardInterrupt on Ctrl-C.

    import numpy as np, facecluster
    X, y = facecluster.synth(n=5000, dim=128, seed=1)     # or your own (N, D) float32 embeddings
    labels = facecluster.cluster(X)                        # training-free, self-calibrated
    print(facecluster.evaluate(labels, y)["scores"]["pairwise_f"])
"""
from __future__ import annotations

import inspect
import os
import json

import numpy as np

from . import _core

__all__ = ["knn", "knn_recall", "cluster", "evaluate", "synth", "load_knn", "save_knn", "FaceClusterer", "set_verbose",
           "DEFAULTS"]
__version__ = _core.build_info()["version"]


def build_info() -> dict:
    """How this module was built: version, commit, compiler, build type, optional parts."""
    return dict(_core.build_info())

#: The clustering parameters' defaults, as the C++ run plan has them (None: the plan decides).
DEFAULTS = {name: default for name, default, _help in _core.parameters()}
_D = DEFAULTS
_S = _core.synth_defaults()


def set_verbose(verbose: bool = True) -> None:
    """Print one log line per stage (time and peak memory) to stderr."""
    _core.set_verbose(bool(verbose))


class FaceClusterer:
    """scikit-learn style estimator: FaceClusterer(k=80).fit(X).labels_.

    fit(X, y=None): X (N, D) float32 embeddings; y, when given, are true labels: every tau is
    scored, the best kept, and hard-cluster bins are computed. Instead of X a kNN graph may be
    given as nbrs=/dists= (N, k), sorted ascending.

    After fit: labels_ (int64, N), density_ (float64, N), tau_ (the threshold used), decisions_
    (each automatic choice in one line: what was chosen, on what evidence), notes_ (the evidence
    in full: the fitted mixture and the cut), report_ (a dict with the keys and nesting of the
    CLI's scores.json: plan, decisions, notes, sweep, scores and bins when y is given, ...),
    knn_ ((nbrs, dists): the graph that was linked, learned distances with a model).
    save_report(path) writes the HTML report.

    Adding faces later (docs/incremental.md): partial_fit(X_new, y=None) adds faces to the
    clustering of the last fit: labels_ then covers every face so far (the fitted ones first, then
    each batch in order), cluster ids survive, and changes_ lists the earlier clusters the batch
    merged or split. save_state(path) keeps the clustering in a folder (what `facecluster cluster
    --save-state` writes), FaceClusterer.load_state(path) reads it back (also one the CLI's `add`
    grew). Kept for fits on X without a model.

    model: None (training-free, cosine distances), "default" (the shipped model) or a model file.
    calibrate: None chooses "auto" without a model and "off" with one.
    """

    def __init__(self, k=_D["k"], index=_D["index"], tau=_D["tau"], calibrate=_D["calibrate"], model=_D["model"],
                 precision=_D["precision"], batch_size=_D["batch_size"], device=_D["device"], select_by=_D["select_by"],
                 density=_D["density"], tpdi=_D["tpdi"], ndde_k=_D["ndde_k"], ndde_sigma=_D["ndde_sigma"],
                 tpdi_sigma=_D["tpdi_sigma"], max_conn=_D["max_conn"], nlist=_D["nlist"], nprobe=_D["nprobe"],
                 hnsw_m=_D["hnsw_m"], ef_construction=_D["ef_construction"], ef_search=_D["ef_search"],
                 probe=_D["probe"], refine=_D["refine"], knn_precision=_D["knn_precision"], bins=_D["bins"],
                 threads=_D["threads"]):
        for name in self._param_names():
            setattr(self, name, locals()[name])

    @classmethod
    def _param_names(cls):
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        names = self._param_names()
        for name, value in params.items():
            if name not in names:
                raise ValueError(f"unknown parameter {name!r}; expected one of {', '.join(names)}")
            setattr(self, name, value)
        return self

    def fit(self, X=None, y=None, *, nbrs=None, dists=None):
        if (X is None) == (nbrs is None):
            raise ValueError("give either X (features) or nbrs and dists (a kNN graph)")
        if y is not None:
            y = np.asarray(y)
            if y.dtype.kind not in "iu":
                raise TypeError(f"y must hold integer labels, got dtype {y.dtype}")
        report, labels, density, graph, html, state = _core.run(X, nbrs, dists, y, self.get_params())
        self._take(report, labels, density, html)
        self.knn_ = graph
        self._state = state
        return self

    def _take(self, report, labels, density, html):
        self.report_ = json.loads(report)
        self.labels_ = labels
        self.density_ = density
        self.tau_ = self.report_["chosen_tau"]
        self.decisions_ = list(self.report_["decisions"])
        self.notes_ = list(self.report_["notes"])
        self.changes_ = list(self.report_["changes"])
        self._html = html

    def partial_fit(self, X_new, y=None, *, recalibrate=False):
        """Add faces (M, D) to the clustering of the last fit or load_state; returns self.

        New faces get their neighbours among all faces so far; the rows whose lists they enter
        are updated; the calibration and tau stay until the faces have grown by a tenth since
        they were fitted (or recalibrate=True), then both are fitted again on all faces. labels_
        covers every face so far; ids of clusters the batch did not merge or split stay;
        changes_ lists those it did (dicts: kind "merged" or "split", id, others, text). y: the
        batch's true labels (scored with the earlier ones when every batch had them). On an
        error nothing changes.
        """
        state = getattr(self, "_state", None)
        if state is None:
            raise RuntimeError("partial_fit: no clustering to add to; call fit(X) first (on features, without a "
                               "model) or FaceClusterer.load_state(path)")
        if y is not None:
            y = np.asarray(y)
            if y.dtype.kind not in "iu":
                raise TypeError(f"y must hold integer labels, got dtype {y.dtype}")
        self._take(*state.add(X_new, y, bool(recalibrate)))
        return self

    def save_state(self, path):
        """Keep the clustering in folder `path` for adding faces later (here or with `facecluster add`).

        A folder that holds a state already is replaced by this one in one step (a kill leaves
        the old or the new one); any other existing folder gets the state beside its files.
        """
        state = getattr(self, "_state", None)
        if state is None:
            raise RuntimeError("save_state: nothing to keep; call fit(X) first (on features, without a model)")
        state.save(os.fspath(path))

    @classmethod
    def load_state(cls, path):
        """A FaceClusterer holding the clustering kept in folder `path`: labels_, density_ and
        tau_ of every face so far, ready for partial_fit."""
        self = cls()
        self._state = _core.load_state(os.fspath(path))
        self.labels_ = self._state.labels()
        self.density_ = self._state.density()
        self.tau_ = self._state.tau
        return self

    def fit_predict(self, X=None, y=None, **kw):
        return self.fit(X, y, **kw).labels_

    def save_report(self, path):
        """Write the HTML report of the last fit (one self-contained page), atomically.

        An existing file is replaced only if it is an HTML page (an earlier report); any other
        file (features, labels, a script) is refused with ValueError.
        """
        if not hasattr(self, "_html"):
            raise RuntimeError("save_report: nothing to report yet, call fit() first")
        path = os.fspath(path)
        if os.path.lexists(path):
            if not os.path.isfile(path):
                raise ValueError(f"save_report: {path!r} exists and is not a file")
            with open(path, "rb") as f:
                head = f.read(64).lstrip().lower()
            if not (head.startswith(b"<!doctype html") or head.startswith(b"<html")):
                raise ValueError(f"save_report: {path!r} exists and is not an HTML page; "
                                 "not overwriting it (remove it or choose another path)")
        _core.write_text_file(path, self._html)


def cluster(features=None, *, nbrs=None, dists=None, gt=None, **params):
    """Cluster faces; returns int64 labels (N,). FaceClusterer(**params).fit(features, gt).labels_.

    Give features (N, D) float32, or a kNN graph as nbrs/dists (N, k) sorted ascending. With gt
    (true labels) each tau is scored and the best by select_by is returned.
    """
    return FaceClusterer(**params).fit(features, gt, nbrs=nbrs, dists=dists).labels_


def knn(features, k=_D["k"], index=_D["index"], *, normalize=True, nlist=_D["nlist"], nprobe=_D["nprobe"],
        hnsw_m=_D["hnsw_m"], ef_construction=_D["ef_construction"], ef_search=_D["ef_search"],
        probe=_D["probe"], refine=_D["refine"], knn_precision=_D["knn_precision"], threads=_D["threads"]):
    """k nearest neighbours by cosine of each row, the row itself first.

    features: (N, D) float32, C-contiguous (read in place when rows are already unit length,
    else a normalised copy is made). index: "auto" (exact up to rows^2 x dim = 1e13, blocked
    above), "flat" (exact), "ivf", "hnsw" or "blocked". knn_precision (blocked): "auto" (bf16
    products re-ranked in fp32 where the CPU has AVX512-BF16 or AMX-BF16, else fp32), "fp32", "bf16".
    Returns (nbrs int32 (N, k), dists float32 (N, k)) with dists = 1 - cosine, ascending;
    k is clamped to N. Approximate indexes may leave -1 entries at a row's end.
    """
    params = dict(k=k, index=index, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_construction=ef_construction,
                  ef_search=ef_search, probe=probe, refine=refine, knn_precision=knn_precision, threads=threads)
    return _core.knn(features, bool(normalize), params)


def knn_recall(features, nbrs, dists, sample=1000):
    """recall@k of a graph against exact search on `sample` random rows."""
    return _core.knn_recall(features, nbrs, dists, int(sample))


def evaluate(pred, gt, features=None, bins=_D["bins"]):
    """Scores of predicted labels against true ones, as `facecluster evaluate --json` prints them:
    {"scores": {pairwise / BCubed precision, recall, F; NMI; ARI; cluster counts},
     "size_bins": [...], "sparsity_bins": [...] (when features are given)}."""
    arrays = []
    for name, a in (("pred", pred), ("gt", gt)):
        a = np.asarray(a)
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer labels, got dtype {a.dtype}")
        arrays.append(a)
    return json.loads(_core.evaluate(arrays[0], arrays[1], features, int(bins)))


def synth(n=_S["n"], dim=_S["dim"], *, identities=_S["identities"], seed=_S["seed"], cos_map=_S["cos_map"],
          mislabel_share=_S["mislabel_share"], centre_dim=_S["centre_dim"]):
    """Synthetic face embeddings (float32 (n, dim'), unit rows) and labels (int64); see docs/synth.md.
    centre_dim crowds the identity centres into that many effective dimensions (0: all of dim)."""
    return _core.synth(int(n), int(dim), int(identities), int(seed), str(cos_map), float(mislabel_share),
                       float(centre_dim))


def load_knn(path, expected_n=-1):
    """Read a .npz kNN cache (array 'data' of shape (N, 2, k)) -> (nbrs, dists)."""
    return _core.load_knn(str(path), int(expected_n))


def save_knn(path, nbrs, dists, compress=False):
    """Write a .npz kNN cache that numpy.load reads (array 'data', float32, shape (N, 2, k))."""
    _core.save_knn(str(path), nbrs, dists, bool(compress))
