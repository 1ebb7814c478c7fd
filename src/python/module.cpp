// The facecluster engine for numpy users (thin pybind11 layer; the Python API is in __init__.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <variant>

#include "facecluster/build_info.h"
#include "facecluster/error.h"
#include "facecluster/incremental.h"
#include "facecluster/io.h"
#include "facecluster/knn.h"
#include "facecluster/log.h"
#include "facecluster/metrics.h"
#include "facecluster/pipeline.h"
#include "facecluster/plan.h"
#include "facecluster/report.h"
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
  const char kind = nbrs.dtype().kind();
  if (kind != 'i' || (nbrs.itemsize() != 4 && nbrs.itemsize() != 8))
    throw py::type_error("nbrs must be an int32 or int64 array of shape (N, k), got dtype " +
                         py::str(nbrs.dtype()).cast<std::string>());
  if (!py::isinstance<I32>(nbrs) && !py::isinstance<I64>(nbrs))
    throw py::type_error("nbrs must be C-contiguous (row-major): pass np.ascontiguousarray(nbrs)");
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

// A Python value as a plan parameter: None, bool, int (numpy integers too), float, str, or a
// sequence of numbers.
ParamValue param_from(const std::string& name, const py::handle& v) {
  if (v.is_none()) return std::monostate{};
  PyObject* o = v.ptr();
  if (PyBool_Check(o)) return v.cast<bool>();
  if (PyFloat_Check(o)) return v.cast<double>();
  if (PyIndex_Check(o)) {
    int overflow = 0;
    const long long value = PyLong_AsLongLongAndOverflow(py::reinterpret_steal<py::object>(PyNumber_Index(o)).ptr(), &overflow);
    if (overflow != 0 || (value == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      throw py::value_error("parameter " + name + " = " + py::str(v).cast<std::string>() + " is out of range");
    }
    return static_cast<int64_t>(value);
  }
  if (py::isinstance<py::str>(v)) return v.cast<std::string>();
  if (py::isinstance<py::sequence>(v) || py::isinstance<py::array>(v)) {
    std::vector<double> list;
    for (const auto& item : v) list.push_back(item.cast<double>());
    return list;
  }
  throw py::type_error("parameter " + name + " has an unsupported type " + py::str(v.get_type()).cast<std::string>());
}

py::object param_to_python(const ParamValue& v) {
  if (std::holds_alternative<std::monostate>(v)) return py::none();
  if (const auto* b = std::get_if<bool>(&v)) return py::bool_(*b);
  if (const auto* i = std::get_if<int64_t>(&v)) return py::int_(*i);
  if (const auto* d = std::get_if<double>(&v)) return py::float_(*d);
  if (const auto* s = std::get_if<std::string>(&v)) return py::str(*s);
  return py::cast(std::get<std::vector<double>>(v));
}

RunPlan plan_from(const py::dict& params) {
  PlanRequest req;
  req.features_in_memory = true;
  for (const auto& item : params) {
    const std::string name = item.first.cast<std::string>();
    set_parameter(req, name, param_from(name, item.second));
  }
  return resolve_plan(Job::Cluster, req);
}

I64 int64_array(const std::vector<int64_t>& v) {
  I64 a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

py::array_t<double> double_array(const std::vector<double>& v) {
  py::array_t<double> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

// A result of adding faces, as the run's tuple has it: (report JSON, labels, density, HTML).
py::tuple report_tuple(const ClusterReport& r) {
  return py::make_tuple(render_json(r), int64_array(r.labels), double_array(r.density), render_html(r));
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
  m.def("write_text_file", [](const std::string& path, const std::string& text) {
    py::gil_scoped_release unlocked;
    write_text_file(path, text);
  });
  m.def("build_info", [] {
    py::dict out;
    for (const auto& [key, value] : build_info()) out[py::str(key)] = value;
    return out;
  });

  m.def(
      "parameters",
      [] {
        py::list out;
        for (const auto& p : run_parameters()) out.append(py::make_tuple(p.name, param_to_python(p.default_value), p.help));
        return out;
      },
      "the clustering parameters: (name, default, help), defaults as the C++ plan has them");

  m.def(
      "synth_defaults",
      [] {
        const SynthOptions o;
        py::dict d;
        d["n"] = o.n;
        d["dim"] = o.dim;
        d["identities"] = o.identities;
        d["seed"] = o.seed;
        d["cos_map"] = o.cos_map;
        d["mislabel_share"] = o.mislabel_share;
        d["centre_dim"] = o.centre_dim;
        return d;
      },
      "synth()'s defaults, as the C++ generator has them");

  m.def(
      "knn",
      [](const py::array& features, bool normalize, const py::dict& params) {
        const RunPlan plan = plan_from(params);
        const Matrix view = features_view(features, "features");
        KnnGraph g;
        {
          py::gil_scoped_release release;
          const Matrix x = normalized(view, normalize);
          g = build_knn(x, plan.knn);
        }
        return graph_to_arrays(g);
      },
      py::arg("features"), py::arg("normalize"), py::arg("params"));

  m.def(
      "knn_recall",
      [](const py::array& features, const py::array& nbrs, const py::array& dists, int64_t sample) {
        if (sample < 1) throw py::value_error("sample must be >= 1, got " + std::to_string(sample));
        const Matrix view = features_view(features, "features");
        const KnnGraph g = graph_from_arrays(nbrs, dists);
        py::gil_scoped_release release;
        const Matrix x = normalized(view, true);
        return knn_recall(x, g, sample);
      },
      py::arg("features"), py::arg("nbrs"), py::arg("dists"), py::arg("sample"));

  m.def(
      "run",
      [](py::object features, py::object nbrs, py::object dists, py::object gt, const py::dict& params) {
        const RunPlan plan = plan_from(params);
        Matrix view, x;
        KnnGraph given;
        Labels truth;
        PipelineInput in;
        if (!features.is_none()) view = features_view(features.cast<py::array>(), "features");
        if (!nbrs.is_none()) {
          if (dists.is_none()) throw py::value_error("nbrs needs dists");
          given = graph_from_arrays(nbrs.cast<py::array>(), dists.cast<py::array>());
          in.graph = &given;
        }
        if (!gt.is_none()) {
          truth = labels_from(gt.cast<py::array>(), "y");
          in.labels = &truth;
        }
        ClusterReport r;
        // What partial_fit needs: kept for runs on features without a model.
        std::unique_ptr<ClusterState> state;
        {
          py::gil_scoped_release release;
          if (view.rows > 0) {
            x = normalized(view, true);
            in.features = &x;
          }
          if (in.labels && static_cast<int64_t>(truth.size()) != (in.graph ? given.n : x.rows))
            throw Error("y has " + std::to_string(truth.size()) + " labels but there are " +
                        std::to_string(in.graph ? given.n : x.rows) + " faces");
          r = run_pipeline(plan, in);
          if (in.features && !in.graph && plan.model.empty())
            state = std::make_unique<ClusterState>(state_from_run(plan, x, r, in.labels));
        }
        py::object kept = state ? py::cast(std::move(state)) : py::none();
        return py::make_tuple(render_json(r), int64_array(r.labels), double_array(r.density), graph_to_arrays(r.graph),
                              render_html(r), kept);
      },
      py::arg("features"), py::arg("nbrs"), py::arg("dists"), py::arg("gt"), py::arg("params"));

  py::class_<ClusterState>(m, "State", "what adding faces to a clustering needs (incremental.h)")
      .def_property_readonly("faces", &ClusterState::faces)
      .def_property_readonly("dim", [](const ClusterState& s) { return s.dim; })
      .def_property_readonly("tau", [](const ClusterState& s) { return s.tau; })
      .def("labels", [](const ClusterState& s) { return int64_array(s.labels()); })
      .def("density", [](const ClusterState& s) { return double_array(s.face_density()); })
      .def(
          "add",
          [](ClusterState& s, const py::array& features, py::object gt, bool recalibrate) {
            const Matrix view = features_view(features, "X_new");
            Labels truth;
            if (!gt.is_none()) truth = labels_from(gt.cast<py::array>(), "y");
            ClusterReport r;
            {
              py::gil_scoped_release release;
              Matrix x(view.rows, view.cols);
              std::copy(view.row(0), view.row(0) + view.rows * view.cols, x.data.begin());
              // add_faces puts the state back should it fail midway.
              r = add_faces(s, std::move(x), gt.is_none() ? nullptr : &truth, "X_new", recalibrate);
            }
            return report_tuple(r);
          },
          py::arg("features"), py::arg("gt"), py::arg("recalibrate"))
      .def(
          "save",
          [](const ClusterState& s, const std::string& dir) {
            py::gil_scoped_release release;
            save_state(dir, s, !holds_state(dir));
          },
          py::arg("dir"));
  m.def(
      "load_state",
      [](const std::string& dir) {
        py::gil_scoped_release release;
        return std::make_unique<ClusterState>(load_state(dir));
      },
      py::arg("dir"));

  m.def(
      "evaluate",
      [](const py::array& pred, const py::array& gt, py::object features, int bins) {
        const Labels p = labels_from(pred, "pred"), g = labels_from(gt, "gt");
        if (bins < 1) throw py::value_error("bins must be >= 1, got " + std::to_string(bins));
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
        return evaluation_to_json(s, by_size, by_sparsity);
      },
      py::arg("pred"), py::arg("gt"), py::arg("features"), py::arg("bins"));

  m.def(
      "synth",
      [](int64_t n, int64_t dim, int64_t identities, uint64_t seed, const std::string& cos_map, double mislabel_share,
         double centre_dim) {
        SynthOptions o;
        o.n = n;
        o.dim = dim;
        o.identities = identities;
        o.seed = seed;
        o.cos_map = cos_map;
        o.mislabel_share = mislabel_share;
        o.centre_dim = centre_dim;
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
      py::arg("n"), py::arg("dim"), py::arg("identities"), py::arg("seed"), py::arg("cos_map"), py::arg("mislabel_share"),
      py::arg("centre_dim"));

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
