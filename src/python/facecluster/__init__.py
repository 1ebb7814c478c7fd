"""facecluster: cluster face embeddings by identity.

The C++ engine (kNN graph, NDDE density, TPDi distance, density-peak linking) for numpy arrays.
Long calls release the GIL and stop with KeyboardInterrupt on Ctrl-C.

    import numpy as np, facecluster
    X, y = facecluster.synth(n=5000, dim=128, seed=1)     # or your own (N, D) float32 embeddings
    labels = facecluster.cluster(X)                        # training-free, self-calibrated
    print(facecluster.evaluate(labels, y)["pairwise_f"])
"""
from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["knn", "knn_recall", "cluster", "evaluate", "synth", "load_knn", "save_knn", "FaceClusterer", "set_verbose"]
__version__ = "0.1.0"


def set_verbose(verbose: bool = True) -> None:
    """Print one log line per stage (time and peak memory) to stderr."""
    _core.set_verbose(bool(verbose))


def knn(features, k=80, index="flat", *, normalize=True, nlist=0, nprobe=32, hnsw_m=32, ef_construction=80,
        ef_search=128, threads=0):
    """k nearest neighbours by cosine of each row, the row itself first.

    features: (N, D) float32, C-contiguous (read in place when rows are already unit length,
    else a normalised copy is made). index: "flat" (exact), "ivf" or "hnsw".
    Returns (nbrs int32 (N, k), dists float32 (N, k)) with dists = 1 - cosine, ascending;
    k is clamped to N. Approximate indexes may leave -1 entries at a row's end.
    """
    return _core.knn(features, int(k), str(index), bool(normalize), int(nlist), int(nprobe), int(hnsw_m),
                     int(ef_construction), int(ef_search), int(threads))


def knn_recall(features, nbrs, dists, sample=1000):
    """recall@k of a graph against exact search on `sample` random rows."""
    return _core.knn_recall(features, nbrs, dists, int(sample))


def _taus(tau):
    if tau is None:
        return []  # the calibrated tau, or the release default 0.7 with calibrate="off"
    if np.isscalar(tau):
        return [float(tau)]
    return [float(t) for t in tau]


def _cluster(features=None, *, nbrs=None, dists=None, k=80, index="flat", tau=None, calibrate="auto",
             density="approximate_NDDe", tpdi=True, ndde_k=20, ndde_sigma=0.5, tpdi_sigma=0.05, max_conn=1,
             gt=None, select_by="pairwise", threads=0):
    if (features is None) == (nbrs is None):
        raise ValueError("give either features or (nbrs, dists)")
    if features is not None:
        nbrs, dists = knn(features, k=k, index=index, threads=threads)
    elif dists is None:
        raise ValueError("nbrs needs dists")
    return _core.cluster_graph(nbrs, dists, _taus(tau), calibrate, density, bool(tpdi), int(ndde_k),
                               float(ndde_sigma), float(tpdi_sigma), int(max_conn), gt, select_by, int(threads))


def cluster(features=None, *, nbrs=None, dists=None, k=80, index="flat", tau=None, calibrate="auto",
            density="approximate_NDDe", tpdi=True, ndde_k=20, ndde_sigma=0.5, tpdi_sigma=0.05, max_conn=1,
            gt=None, select_by="pairwise", threads=0):
    """Cluster faces without a trained model; returns int64 labels (N,).

    Give features (N, D) float32, or a kNN graph as nbrs/dists (N, k) sorted ascending.
    calibrate="auto" (default) derives the distance scale from the data (docs/calibration.md);
    "off" runs the release's fixed constants. tau: one value or a list; with gt (true labels)
    each tau is scored and the best by select_by ("pairwise" or "bcubed") is returned.
    """
    return _cluster(features, nbrs=nbrs, dists=dists, k=k, index=index, tau=tau, calibrate=calibrate,
                    density=density, tpdi=tpdi, ndde_k=ndde_k, ndde_sigma=ndde_sigma, tpdi_sigma=tpdi_sigma,
                    max_conn=max_conn, gt=gt, select_by=select_by, threads=threads)["labels"]


def evaluate(pred, gt, features=None, bins=5):
    """Pairwise / BCubed precision, recall, F; NMI; ARI; cluster counts; and hard-cluster bins
    by size (and by sparsity when features are given). Returns a dict."""
    return _core.evaluate(np.asarray(pred), np.asarray(gt), features, int(bins))


def synth(n=20000, dim=256, *, identities=0, seed=42, cos_map="none", mislabel_share=0.01):
    """Synthetic face embeddings (float32 (n, dim'), unit rows) and labels (int64); see docs/synth.md."""
    return _core.synth(int(n), int(dim), int(identities), int(seed), str(cos_map), float(mislabel_share))


def load_knn(path, expected_n=-1):
    """Read a .npz kNN cache (array 'data' of shape (N, 2, k)) -> (nbrs, dists)."""
    return _core.load_knn(str(path), int(expected_n))


def save_knn(path, nbrs, dists, compress=False):
    """Write a .npz kNN cache that numpy.load reads (array 'data', float32, shape (N, 2, k))."""
    _core.save_knn(str(path), nbrs, dists, bool(compress))


class FaceClusterer:
    """scikit-learn style estimator: FaceClusterer(k=80).fit_predict(X) -> labels.

    After fit: labels_ (int64, N), density_ (float64, N), tau_ (the threshold used),
    notes_ (the automatically chosen values, one line each), knn_ ((nbrs, dists)).
    """

    def __init__(self, k=80, index="flat", tau=None, calibrate="auto", density="approximate_NDDe", tpdi=True,
                 ndde_k=20, ndde_sigma=0.5, tpdi_sigma=0.05, max_conn=1, threads=0):
        self.k = k
        self.index = index
        self.tau = tau
        self.calibrate = calibrate
        self.density = density
        self.tpdi = tpdi
        self.ndde_k = ndde_k
        self.ndde_sigma = ndde_sigma
        self.tpdi_sigma = tpdi_sigma
        self.max_conn = max_conn
        self.threads = threads

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in ("k", "index", "tau", "calibrate", "density", "tpdi", "ndde_k",
                                                        "ndde_sigma", "tpdi_sigma", "max_conn", "threads")}

    def set_params(self, **params):
        for name, value in params.items():
            if name not in self.get_params():
                raise ValueError(f"unknown parameter {name!r}")
            setattr(self, name, value)
        return self

    def fit(self, X, y=None):
        self.knn_ = knn(X, k=self.k, index=self.index, threads=self.threads)
        r = _cluster(nbrs=self.knn_[0], dists=self.knn_[1], tau=self.tau, calibrate=self.calibrate,
                     density=self.density, tpdi=self.tpdi, ndde_k=self.ndde_k, ndde_sigma=self.ndde_sigma,
                     tpdi_sigma=self.tpdi_sigma, max_conn=self.max_conn, threads=self.threads)
        self.labels_ = r["labels"]
        self.density_ = r["density"]
        self.tau_ = r["tau"]
        self.notes_ = list(r["notes"])
        return self

    def fit_predict(self, X, y=None):
        return self.fit(X).labels_
