// The facecluster engine for numpy users (thin pybind11 layer; the Python API is in __init__.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>

#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/knn.h"
#include "facecluster/log.h"
#include "facecluster/metrics.h"
#include "facecluster/pipeline.h"
#include "facecluster/synth.h"

namespace py = pybind11;
using namespace facecluster;

namespace {

using F32 = py::array_t<float, py::array::c_style>;
using I32 = py::array_t<int32_t, py::array::c_style>;
using I64 = py::array_t<int64_t, py::array::c_style>;

// Called from the thread that released the GIL: take it back briefly and ask Python whether
// Ctrl-C was pressed.
bool python_interrupted() {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) {
    PyErr_Clear();
    return true;
  }
  return false;
}

// Validates a 2-D float32 C-contiguous array (no silent conversion: a clear TypeError instead).
Matrix features_view(const py::array& a, const char* name) {
  if (!py::isinstance<F32>(a) || !(a.flags() & py::array::c_style))
    throw py::type_error(std::string(name) + " must be a C-contiguous float32 array (got dtype " +
                         py::str(a.dtype()).cast<std::string>() + (a.flags() & py::array::c_style ? "" : ", not C-contiguous") +
                         "); use np.ascontiguousarray(x, dtype=np.float32)");
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D (N x D), got " + std::to_string(a.ndim()) + "-D");
  if (a.shape(0) < 1 || a.shape(1) < 1) throw py::value_error(std::string(name) + " is empty");
  return Matrix::borrow(static_cast<const float*>(a.data()), a.shape(0), a.shape(1));
}

// Unit rows: the input itself when it already is normalised (zero-copy), else a normalised copy.
Matrix normalized(const Matrix& view, bool normalize) {
  bool unit = true;
  for (int64_t i = 0; i < view.rows && unit; ++i) {
    double s = 0;
    const float* r = view.row(i);
    for (int64_t c = 0; c < view.cols; ++c) s += double(r[c]) * r[c];
    unit = std::fabs(s - 1.0) < 1e-4;
  }
  if (!normalize || unit) {
    check_finite_rows(view, "features");
    return view;
  }
  Matrix m(view.rows, view.cols);
  std::copy(view.row(0), view.row(0) + view.rows * view.cols, m.data.begin());
  normalize_rows(m, "features");
  return m;
}

KnnGraph graph_from_arrays(const py::array& nbrs, const py::array& dists) {
  if (!py::isinstance<I32>(nbrs) && !py::isinstance<I64>(nbrs))
    throw py::type_error("nbrs must be an int32 or int64 array of shape (N, k)");
  if (!py::isinstance<F32>(dists)) throw py::type_error("dists must be a float32 array of shape (N, k)");
  if (nbrs.ndim() != 2 || dists.ndim() != 2 || nbrs.shape(0) != dists.shape(0) || nbrs.shape(1) != dists.shape(1))
    throw py::value_error("nbrs and dists must both have shape (N, k)");
  KnnGraph g(nbrs.shape(0), static_cast<int>(nbrs.shape(1)));
  auto d = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(dists);
  std::copy(d.data(), d.data() + d.size(), g.dists.begin());
  auto n64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(nbrs);
  for (py::ssize_t e = 0; e < n64.size(); ++e) {
    const int64_t v = n64.data()[e];
    if (v < -1 || v >= g.n)
      throw py::value_error("nbrs row " + std::to_string(e / g.k) + " has index " + std::to_string(v) + ", outside [0, " +
                            std::to_string(g.n) + ")");
    g.nbrs[e] = static_cast<int32_t>(v);
  }
  return g;
}

py::tuple graph_to_arrays(const KnnGraph& g) {
  I32 nb({g.n, static_cast<int64_t>(g.k)});
  F32 d({g.n, static_cast<int64_t>(g.k)});
  std::copy(g.nbrs.begin(), g.nbrs.end(), nb.mutable_data());
  std::copy(g.dists.begin(), g.dists.end(), d.mutable_data());
  return py::make_tuple(nb, d);
}

Labels labels_from(const py::array& a, const char* name) {
  auto l = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!l || l.ndim() != 1) throw py::value_error(std::string(name) + " must be a 1-D integer array");
  return Labels(l.data(), l.data() + l.size());
}

py::dict scores_dict(const Scores& s) {
  py::dict d;
  d["n"] = s.n;
  d["true_clusters"] = s.true_clusters;
  d["pred_clusters"] = s.pred_clusters;
  d["true_singletons"] = s.true_singletons;
  d["pred_singletons"] = s.pred_singletons;
  d["pairwise_precision"] = s.pairwise_p;
  d["pairwise_recall"] = s.pairwise_r;
  d["pairwise_f"] = s.pairwise_f;
  d["bcubed_precision"] = s.bcubed_p;
  d["bcubed_recall"] = s.bcubed_r;
  d["bcubed_f"] = s.bcubed_f;
  d["nmi"] = s.nmi;
  d["ari"] = s.ari;
  return d;
}

py::list bins_list(const std::vector<BinScores>& bins) {
  py::list out;
  for (const auto& b : bins) {
    py::dict d = scores_dict(b.scores);
    d["by"] = b.by;
    d["bin"] = b.bin;
    d["classes"] = b.classes;
    d["rows"] = b.rows;
    d["key_min"] = b.key_min;
    d["key_max"] = b.key_max;
    out.append(d);
  }
  return out;
}

KnnOptions knn_options(int k, const std::string& index, int nlist, int nprobe, int hnsw_m, int ef_construction,
                       int ef_search, int threads) {
  KnnOptions o;
  o.k = k;
  o.index = index;
  o.ivf_nlist = nlist;
  o.ivf_nprobe = nprobe;
  o.hnsw_m = hnsw_m;
  o.hnsw_ef_construction = ef_construction;
  o.hnsw_ef_search = ef_search;
  o.threads = threads;
  return o;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "facecluster C++ engine (use the facecluster package, not this module)";
  set_interrupt_hook(&python_interrupted);
  set_log_level(0);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Interrupted&) {
      PyErr_SetNone(PyExc_KeyboardInterrupt);
    } catch (const Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("set_verbose", [](bool v) { set_log_level(v ? 1 : 0); });

  m.def(
      "knn",
      [](const py::array& features, int k, const std::string& index, bool normalize, int nlist, int nprobe, int hnsw_m,
         int ef_construction, int ef_search, int threads) {
        const Matrix view = features_view(features, "features");
        KnnGraph g;
        {
          py::gil_scoped_release release;
          const Matrix x = normalized(view, normalize);
          g = build_knn(x, knn_options(k, index, nlist, nprobe, hnsw_m, ef_construction, ef_search, threads));
        }
        return graph_to_arrays(g);
      },
      py::arg("features"), py::arg("k"), py::arg("index"), py::arg("normalize"), py::arg("nlist"), py::arg("nprobe"),
      py::arg("hnsw_m"), py::arg("ef_construction"), py::arg("ef_search"), py::arg("threads"));

  m.def(
      "knn_recall",
      [](const py::array& features, const py::array& nbrs, const py::array& dists, int64_t sample) {
        const Matrix view = features_view(features, "features");
        const KnnGraph g = graph_from_arrays(nbrs, dists);
        py::gil_scoped_release release;
        const Matrix x = normalized(view, true);
        return knn_recall(x, g, sample);
      },
      py::arg("features"), py::arg("nbrs"), py::arg("dists"), py::arg("sample"));

  m.def(
      "cluster_graph",
      [](const py::array& nbrs, const py::array& dists, std::vector<double> taus, const std::string& calibrate,
         const std::string& density, bool tpdi, int ndde_k, double ndde_sigma, double tpdi_sigma, int max_conn,
         py::object gt, const std::string& select_by, int threads) {
        const KnnGraph g = graph_from_arrays(nbrs, dists);
        GraphParams p;
        p.density = density;
        p.use_tpdi = tpdi;
        p.ndde_k = ndde_k;
        p.ndde_sigma = ndde_sigma;
        p.tpdi_sigma = tpdi_sigma;
        p.max_conn = max_conn;
        p.threads = threads;
        Labels truth;
        if (!gt.is_none()) truth = labels_from(gt.cast<py::array>(), "gt");
        ClusterResult r;
        {
          py::gil_scoped_release release;
          r = cluster_graph(g, p, taus, truth.empty() ? nullptr : &truth, select_by, calibrate);
        }
        py::dict out;
        I64 labels(static_cast<py::ssize_t>(r.labels.size()));
        std::copy(r.labels.begin(), r.labels.end(), labels.mutable_data());
        py::array_t<double> dens(static_cast<py::ssize_t>(r.density.size()));
        std::copy(r.density.begin(), r.density.end(), dens.mutable_data());
        out["labels"] = labels;
        out["density"] = dens;
        out["tau"] = r.sweep[r.chosen].tau;
        out["notes"] = r.notes;
        py::list sweep;
        for (const auto& e : r.sweep) {
          py::dict d;
          d["tau"] = e.tau;
          d["clusters"] = e.clusters;
          if (e.scored) d["scores"] = scores_dict(e.scores);
          sweep.append(d);
        }
        out["sweep"] = sweep;
        return out;
      },
      py::arg("nbrs"), py::arg("dists"), py::arg("taus"), py::arg("calibrate"), py::arg("density"), py::arg("tpdi"),
      py::arg("ndde_k"), py::arg("ndde_sigma"), py::arg("tpdi_sigma"), py::arg("max_conn"), py::arg("gt"),
      py::arg("select_by"), py::arg("threads"));

  m.def(
      "evaluate",
      [](const py::array& pred, const py::array& gt, py::object features, int bins) {
        const Labels p = labels_from(pred, "pred"), g = labels_from(gt, "gt");
        py::dict out;
        Scores s;
        std::vector<BinScores> by_size, by_sparsity;
        Matrix view;
        if (!features.is_none()) view = features_view(features.cast<py::array>(), "features");
        {
          py::gil_scoped_release release;
          s = evaluate(p, g);
          by_size = evaluate_by_size(p, g, bins);
          if (view.rows > 0) by_sparsity = evaluate_by_sparsity(p, g, normalized(view, true), bins);
        }
        out = scores_dict(s);
        out["size_bins"] = bins_list(by_size);
        if (!by_sparsity.empty()) out["sparsity_bins"] = bins_list(by_sparsity);
        return out;
      },
      py::arg("pred"), py::arg("gt"), py::arg("features"), py::arg("bins"));

  m.def(
      "synth",
      [](int64_t n, int64_t dim, int64_t identities, uint64_t seed, const std::string& cos_map, double mislabel_share) {
        SynthOptions o;
        o.n = n;
        o.dim = dim;
        o.identities = identities;
        o.seed = seed;
        o.cos_map = cos_map;
        o.mislabel_share = mislabel_share;
        SynthData d;
        {
          py::gil_scoped_release release;
          d = make_synthetic(o);
        }
        F32 x({d.features.rows, d.features.cols});
        std::copy(d.features.data.begin(), d.features.data.end(), x.mutable_data());
        I64 l(static_cast<py::ssize_t>(d.labels.size()));
        std::copy(d.labels.begin(), d.labels.end(), l.mutable_data());
        return py::make_tuple(x, l);
      },
      py::arg("n"), py::arg("dim"), py::arg("identities"), py::arg("seed"), py::arg("cos_map"), py::arg("mislabel_share"));

  m.def(
      "load_knn",
      [](const std::string& path, int64_t expected_n) { return graph_to_arrays(read_knn_npz(path, expected_n)); },
      py::arg("path"), py::arg("expected_n"));
  m.def(
      "save_knn",
      [](const std::string& path, const py::array& nbrs, const py::array& dists, bool compress) {
        write_knn_npz(path, graph_from_arrays(nbrs, dists), compress);
      },
      py::arg("path"), py::arg("nbrs"), py::arg("dists"), py::arg("compress"));
}
