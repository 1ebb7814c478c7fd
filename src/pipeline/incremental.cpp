// Adding faces to an existing clustering (incremental.h, docs/incremental.md).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <filesystem>
#include <map>
#include <numeric>
#include <sstream>

#include "facecluster/build_info.h"
#include "facecluster/error.h"
#include "facecluster/incremental.h"
#include "facecluster/io.h"
#include "facecluster/log.h"
#include "facecluster/metrics.h"

namespace facecluster {
namespace fs = std::filesystem;

namespace {

constexpr char kStateFormatName[] = "facecluster clustering state";
constexpr char kCurrentFile[] = "CURRENT";
constexpr char kManifestFile[] = "state.yaml";
constexpr char kGenerationPrefix[] = "gen-";

std::string generation_name(int64_t g) {
  char b[32];
  std::snprintf(b, sizeof b, "%s%06" PRId64, kGenerationPrefix, g);
  return b;
}

std::string batch_file(size_t b) {
  char name[40];
  std::snprintf(name, sizeof name, "features-%06zu.npy", b);
  return name;
}

// The generation CURRENT names ("" when the folder holds no state), checked to be one.
std::string current_generation(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir / kCurrentFile, ec)) return "";
  std::string name = read_text_file((dir / kCurrentFile).string());
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  const bool well_formed = name.size() > std::strlen(kGenerationPrefix) && name.rfind(kGenerationPrefix, 0) == 0 &&
                           name.find_first_not_of("0123456789", std::strlen(kGenerationPrefix)) == std::string::npos;
  FC_CHECK(well_formed, "state " << dir.string() << ": " << kCurrentFile << " names " << quote_input(name)
                                 << ", not a generation folder (gen-NNNNNN)");
  FC_CHECK(fs::is_directory(dir / name, ec),
           "state " << dir.string() << ": " << kCurrentFile << " names " << name << ", which is missing");
  return name;
}

// Data and folder entries reach the disk before the rename that publishes them.
void sync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

template <class T>
void write_array(const fs::path& folder, const char* name, const std::vector<T>& v, std::vector<int64_t> shape) {
  const fs::path p = folder / name;
  write_npy_array(p.string(), v.data(), shape);
  sync_path(p);
}

template <class T>
std::vector<T> read_array(const fs::path& folder, const char* name, std::vector<int64_t> shape) {
  const fs::path p = folder / name;
  std::error_code ec;
  FC_CHECK(fs::is_regular_file(p, ec), "state file " << p.string() << " is missing");
  return read_npy_array<T>(p.string(), shape);
}

// Components (0..C-1) as clusters with ids that survive: a component keeps the id of the earlier
// cluster with most of its rows when that cluster has most of its own rows there; every other
// component gets a new id, in order of its first row.
struct StableIds {
  std::vector<int64_t> cluster_of;
  std::vector<ClusterChange> changes;
  int64_t next_id = 0;
};

StableIds stable_ids(const Labels& comp, const std::vector<int64_t>& earlier, int64_t next_id) {
  const int64_t n = static_cast<int64_t>(comp.size()), n0 = static_cast<int64_t>(earlier.size());
  const int64_t components = comp.empty() ? 0 : *std::max_element(comp.begin(), comp.end()) + 1;
  // (earlier id, component) -> rows, for the earlier rows.
  std::map<std::pair<int64_t, int64_t>, int64_t> count;
  for (int64_t i = 0; i < n0; ++i) ++count[{earlier[static_cast<size_t>(i)], comp[static_cast<size_t>(i)]}];
  std::map<int64_t, std::pair<int64_t, int64_t>> home;   // earlier id -> (rows, component) of its largest part
  std::vector<std::pair<int64_t, int64_t>> best(static_cast<size_t>(components), {0, -1});  // component -> (rows, earlier id)
  std::map<int64_t, std::vector<int64_t>> parts;         // earlier id -> its components
  for (const auto& [key, rows] : count) {
    const auto [id, c] = key;
    auto [it, fresh] = home.try_emplace(id, rows, c);
    if (!fresh && rows > it->second.first) it->second = {rows, c};
    auto& b = best[static_cast<size_t>(c)];
    if (rows > b.first) b = {rows, id};
    parts[id].push_back(c);
  }
  StableIds out;
  std::vector<int64_t> id_of(static_cast<size_t>(components), -1);
  for (int64_t c = 0; c < components; ++c) {
    const int64_t id = best[static_cast<size_t>(c)].second;
    if (id >= 0 && home.at(id).second == c) id_of[static_cast<size_t>(c)] = id;
  }
  for (int64_t c = 0; c < components; ++c)
    if (id_of[static_cast<size_t>(c)] < 0) id_of[static_cast<size_t>(c)] = next_id++;
  out.next_id = next_id;
  out.cluster_of.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.cluster_of[static_cast<size_t>(i)] = id_of[static_cast<size_t>(comp[static_cast<size_t>(i)])];
  // The changes: earlier clusters now in several clusters (split), and earlier clusters whole
  // inside a cluster with another id (merged into it).
  std::map<int64_t, std::vector<int64_t>> absorbed;
  for (const auto& [id, cs] : parts) {
    if (cs.size() > 1) {
      ClusterChange s;
      s.kind = ClusterChange::Kind::Split;
      s.id = id;
      for (int64_t c : cs) s.others.push_back(id_of[static_cast<size_t>(c)]);
      std::sort(s.others.begin(), s.others.end());
      out.changes.push_back(std::move(s));
    } else if (id_of[static_cast<size_t>(cs[0])] != id) {
      absorbed[id_of[static_cast<size_t>(cs[0])]].push_back(id);
    }
  }
  for (auto& [into, ids] : absorbed) {
    ClusterChange m;
    m.kind = ClusterChange::Kind::Merged;
    m.id = into;
    m.others = std::move(ids);
    out.changes.push_back(std::move(m));
  }
  std::stable_sort(out.changes.begin(), out.changes.end(),
                   [](const ClusterChange& a, const ClusterChange& b) { return a.id < b.id; });
  return out;
}

void emit_params(YAML::Emitter& y, const GraphParams& p) {
  y << YAML::Key << "graph" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "density" << YAML::Value << density_name(p.density);
  y << YAML::Key << "ndde_k" << YAML::Value << p.ndde_k;
  y << YAML::Key << "ndde_sigma" << YAML::Value << p.ndde_sigma;
  y << YAML::Key << "ndde_d" << YAML::Value << p.ndde_d;
  y << YAML::Key << "ndde_epsilon" << YAML::Value << p.ndde_epsilon;
  y << YAML::Key << "ndde_max_iter" << YAML::Value << p.ndde_max_iter;
  y << YAML::Key << "tpdi" << YAML::Value << p.use_tpdi;
  y << YAML::Key << "tpdi_sigma" << YAML::Value << p.tpdi_sigma;
  y << YAML::Key << "max_conn" << YAML::Value << p.max_conn;
  y << YAML::EndMap;
}

GraphParams read_params(const YAML::Node& g) {
  GraphParams p;
  p.density = parse_density(g["density"].as<std::string>());
  p.ndde_k = g["ndde_k"].as<int>();
  p.ndde_sigma = g["ndde_sigma"].as<double>();
  p.ndde_d = g["ndde_d"].as<double>();
  p.ndde_epsilon = g["ndde_epsilon"].as<double>();
  p.ndde_max_iter = g["ndde_max_iter"].as<int>();
  p.use_tpdi = g["tpdi"].as<bool>();
  p.tpdi_sigma = g["tpdi_sigma"].as<double>();
  p.max_conn = g["max_conn"].as<int>();
  return p;
}

// The mixture's fields by name, for the manifest.
std::vector<std::pair<const char*, double Mixture::*>> mixture_fields() {
  return {{"same_mean", &Mixture::same_mean},   {"same_sd", &Mixture::same_sd},     {"diff_mean", &Mixture::diff_mean},
          {"diff_sd", &Mixture::diff_sd},       {"same_weight", &Mixture::same_weight}, {"loose_mean", &Mixture::loose_mean},
          {"loose_sd", &Mixture::loose_sd},     {"loose_share", &Mixture::loose_share}, {"tail_mean", &Mixture::tail_mean},
          {"tail_sd", &Mixture::tail_sd},       {"tail_share", &Mixture::tail_share}};
}

std::string manifest_text(const ClusterState& s) {
  YAML::Emitter y;
  y.SetDoublePrecision(17);
  y << YAML::BeginMap;
  y << YAML::Key << "format" << YAML::Value << kStateFormatName;
  y << YAML::Key << "version" << YAML::Value << kStateFormatVersion;
  y << YAML::Key << "written_by" << YAML::Value << build_info_line();
  y << YAML::Key << "dim" << YAML::Value << s.dim;
  y << YAML::Key << "normalize" << YAML::Value << s.normalize;
  y << YAML::Key << "k" << YAML::Value << s.k;
  y << YAML::Key << "knn_index" << YAML::Value << s.knn_index;
  y << YAML::Key << "faces" << YAML::Value << s.faces();
  y << YAML::Key << "distinct" << YAML::Value << s.graph.n;
  y << YAML::Key << "tau" << YAML::Value << s.tau;
  y << YAML::Key << "tau_automatic" << YAML::Value << s.tau_automatic;
  y << YAML::Key << "calibrate" << YAML::Value << calibrate_name(s.auto_calibrate ? CalibrateMode::Auto : CalibrateMode::Off);
  y << YAML::Key << "calibrated_on" << YAML::Value << s.calibrated_on;
  y << YAML::Key << "next_id" << YAML::Value << s.next_id;
  y << YAML::Key << "bins" << YAML::Value << s.bins;
  y << YAML::Key << "labels" << YAML::Value << !s.truth.empty();
  emit_params(y, s.params);
  y << YAML::Key << "calibration" << YAML::Value;
  if (!s.calibrated) {
    y << YAML::Null;
  } else {
    y << YAML::BeginMap;
    for (const auto& [name, field] : mixture_fields()) y << YAML::Key << name << YAML::Value << s.calibration.similarity.*field;
    y << YAML::Key << "lo" << YAML::Value << s.calibration.lo;
    y << YAML::Key << "hi" << YAML::Value << s.calibration.hi;
    y << YAML::Key << "order_weight" << YAML::Value << s.calibration.order_weight;
    y << YAML::Key << "order_scale" << YAML::Value << s.calibration.order_scale;
    y << YAML::EndMap;
  }
  y << YAML::Key << "batches" << YAML::Value << YAML::BeginSeq;
  for (const StateBatch& b : s.batches)
    y << YAML::Flow << YAML::BeginMap << YAML::Key << "rows" << YAML::Value << b.rows << YAML::Key << "distinct"
      << YAML::Value << b.distinct << YAML::Key << "digest" << YAML::Value << b.digest << YAML::EndMap;
  y << YAML::EndSeq;
  y << YAML::EndMap;
  return std::string(y.c_str()) + "\n";
}

// The calibrated distances of the state's rows `rows` (every row when empty) into link_dists.
void calibrate_state_rows(ClusterState& s, const std::vector<int64_t>& rows) {
  s.link_dists.resize(s.graph.dists.size());
  std::vector<int64_t> all;
  if (rows.empty()) {
    all.resize(static_cast<size_t>(s.graph.n));
    std::iota(all.begin(), all.end(), 0);
  }
  calibrate_rows(s.graph, calibration_from_map(s.calibration), rows.empty() ? all : rows, s.link_dists);
}

// The state's graph with the distances the links are made on (calibrated, when the state is)
// in place of the kNN distances while it lives: no copy of the graph. The state's calibration
// must not change meanwhile.
class LinkingGraph {
 public:
  explicit LinkingGraph(ClusterState& s) : s_(s) { swap(); }
  ~LinkingGraph() { swap(); }
  LinkingGraph(const LinkingGraph&) = delete;
  LinkingGraph& operator=(const LinkingGraph&) = delete;
  const KnnGraph& graph() const { return s_.graph; }

 private:
  void swap() {
    if (s_.calibrated) s_.graph.dists.swap(s_.link_dists);
  }
  ClusterState& s_;
};

// A first run on fewer faces than k listed every face in every row (k clamped to the rows);
// with more faces the lists grow: each row gets empty places at its end, which the added faces
// then fill as exact search would.
void widen_lists(ClusterState& s, int k) {
  const int old_k = s.graph.k;
  KnnGraph g(s.graph.n, k);
  std::vector<float> link(s.calibrated ? g.dists.size() : 0);
  for (int64_t i = 0; i < g.n; ++i) {
    std::copy(s.graph.nbr_row(i), s.graph.nbr_row(i) + old_k, g.nbr_row(i));
    std::copy(s.graph.dist_row(i), s.graph.dist_row(i) + old_k, g.dist_row(i));
    std::fill(g.dist_row(i) + old_k, g.dist_row(i) + k, std::numeric_limits<float>::infinity());
    if (s.calibrated) std::copy(s.link_dists.begin() + i * old_k, s.link_dists.begin() + (i + 1) * old_k, link.begin() + i * k);
  }
  s.graph = std::move(g);
  s.link_dists = std::move(link);
}

// What an addition changes in a state, put back should it fail midway (an error, Ctrl-C in the
// search or in a refit's calibration): the earlier rows whose lists it replaces, the sizes it
// grows from, the arrays of a few bytes a row, and the few values. The features and the graph
// are not copied (except before widening the lists of a first run smaller than k: a small one),
// so an addition needs little memory beyond the state itself.
class AdditionUndo {
 public:
  explicit AdditionUndo(ClusterState& s)
      : s_(s), n_(s.graph.n), faces_(s.faces()), batches_(s.batches.size()), density_(s.density), links_(s.links),
        cluster_of_(s.cluster_of), truth_(s.truth), calibration_(s.calibration), calibrated_(s.calibrated),
        calibrated_on_(s.calibrated_on), next_id_(s.next_id), tau_(s.tau) {}
  AdditionUndo(const AdditionUndo&) = delete;
  AdditionUndo& operator=(const AdditionUndo&) = delete;
  ~AdditionUndo() {
    if (armed_) restore();
  }
  // Before the lists are widened: the whole graph.
  void keep_graph() {
    graph_ = s_.graph;
    link_ = s_.link_dists;
    whole_graph_ = whole_link_ = true;
  }
  // Before a refit recalibrates every row.
  void keep_link_dists() {
    if (whole_link_) return;
    link_ = s_.link_dists;
    whole_link_ = true;
  }
  // Before these earlier rows' lists are replaced.
  void keep_rows(const std::vector<int64_t>& rows) {
    if (whole_graph_) return;
    const int k = s_.graph.k;
    rows_ = rows;
    for (int64_t i : rows) {
      nbrs_.insert(nbrs_.end(), s_.graph.nbr_row(i), s_.graph.nbr_row(i) + k);
      dists_.insert(dists_.end(), s_.graph.dist_row(i), s_.graph.dist_row(i) + k);
      if (!s_.link_dists.empty()) row_link_.insert(row_link_.end(), s_.link_dists.begin() + i * k, s_.link_dists.begin() + (i + 1) * k);
    }
  }
  void done() { armed_ = false; }

 private:
  void restore() {
    if (whole_graph_) {
      s_.graph = std::move(graph_);
    } else {
      const int64_t k = s_.graph.k;
      for (size_t r = 0; r < rows_.size(); ++r) {
        const int64_t i = rows_[r], at = static_cast<int64_t>(r) * k;
        std::copy(nbrs_.begin() + at, nbrs_.begin() + at + k, s_.graph.nbr_row(i));
        std::copy(dists_.begin() + at, dists_.begin() + at + k, s_.graph.dist_row(i));
        if (!row_link_.empty()) std::copy(row_link_.begin() + at, row_link_.begin() + at + k, s_.link_dists.begin() + i * k);
      }
      s_.graph.n = n_;
      s_.graph.nbrs.resize(static_cast<size_t>(n_ * k));
      s_.graph.dists.resize(static_cast<size_t>(n_ * k));
    }
    if (whole_link_) s_.link_dists = std::move(link_);
    else if (!s_.link_dists.empty()) s_.link_dists.resize(s_.graph.dists.size());
    s_.features.rows = n_;
    s_.features.data.resize(static_cast<size_t>(n_ * s_.features.cols));
    s_.row_of.resize(static_cast<size_t>(faces_));
    s_.batches.resize(batches_);
    s_.density = std::move(density_);
    s_.links = std::move(links_);
    s_.cluster_of = std::move(cluster_of_);
    s_.truth = std::move(truth_);
    s_.calibration = calibration_;
    s_.calibrated = calibrated_;
    s_.calibrated_on = calibrated_on_;
    s_.next_id = next_id_;
    s_.tau = tau_;
  }

  ClusterState& s_;
  bool armed_ = true, whole_graph_ = false, whole_link_ = false;
  int64_t n_, faces_;
  size_t batches_;
  std::vector<double> density_;
  Links links_;
  std::vector<int64_t> cluster_of_;
  Labels truth_;
  DistanceMap calibration_;
  bool calibrated_;
  int64_t calibrated_on_, next_id_;
  double tau_;
  KnnGraph graph_;
  std::vector<float> link_;
  std::vector<int64_t> rows_;
  std::vector<int32_t> nbrs_;
  std::vector<float> dists_, row_link_;
};

}  // namespace

Labels ClusterState::labels() const {
  Labels out(row_of.size());
  for (size_t i = 0; i < row_of.size(); ++i) out[i] = cluster_of[static_cast<size_t>(row_of[i])];
  return out;
}

std::vector<double> ClusterState::face_density() const {
  std::vector<double> out(row_of.size());
  for (size_t i = 0; i < row_of.size(); ++i) out[i] = density[static_cast<size_t>(row_of[i])];
  return out;
}

std::string features_digest(const Matrix& x) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(x.row(0));
  const size_t bytes = static_cast<size_t>(x.rows * x.cols) * sizeof(float);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  char b[32];
  std::snprintf(b, sizeof b, "%016" PRIx64, h);
  return b;
}

ClusterState state_from_run(const RunPlan& plan, const Matrix& x, const ClusterReport& r, const Labels* truth) {
  FC_CHECK(plan.model.empty(), "--save-state: adding faces to a clustering made with a learned similarity (--model) is not "
                               "supported yet; cluster without --model to keep a state");
  FC_CHECK(r.graph.n > 0 && !r.labels.empty(), "internal: a state needs the run's graph and labels");
  ClusterState s;
  s.dim = x.cols;
  s.normalize = plan.normalize;
  s.k = plan.knn.k;
  s.knn_index = knn_index_name(resolve_knn_index(plan.knn.index, r.graph.n, x.cols, plan.knn.device));
  s.params = r.params;
  s.calibrated = r.calibration.has_value();
  if (s.calibrated) s.calibration = *r.calibration;
  s.calibrated_on = r.graph.n;
  s.auto_calibrate = plan.calibrate == CalibrateMode::Auto;
  s.tau_automatic = plan.tau_automatic;
  s.tau = r.chosen_tau();
  s.bins = plan.bins;
  const int64_t faces = static_cast<int64_t>(r.labels.size());
  std::vector<int64_t> kept;
  if (r.copies.row_of.empty()) {
    s.row_of.resize(static_cast<size_t>(faces));
    std::iota(s.row_of.begin(), s.row_of.end(), 0);
    kept = s.row_of;
  } else {
    s.row_of = r.copies.row_of;
    kept = r.copies.kept;
  }
  FC_CHECK(static_cast<int64_t>(kept.size()) == r.graph.n, "internal: " << kept.size() << " distinct faces for a graph of "
                                                                        << r.graph.n << " rows");
  s.features = kept.size() == static_cast<size_t>(x.rows) ? Matrix(x.rows, x.cols) : kept_rows(x, r.copies);
  if (kept.size() == static_cast<size_t>(x.rows))
    std::copy(x.row(0), x.row(0) + x.rows * x.cols, s.features.data.begin());
  s.graph = r.graph;
  s.density.resize(kept.size());
  s.cluster_of.resize(kept.size());
  for (size_t d = 0; d < kept.size(); ++d) {
    s.density[d] = r.density[static_cast<size_t>(kept[d])];
    s.cluster_of[d] = r.labels[static_cast<size_t>(kept[d])];
  }
  s.links = r.links;
  s.next_id = *std::max_element(s.cluster_of.begin(), s.cluster_of.end()) + 1;
  if (truth) s.truth = *truth;
  s.batches.push_back({faces, r.graph.n, features_digest(x)});
  if (s.calibrated) calibrate_state_rows(s, {});
  return s;
}

StateLock::StateLock(const std::string& dir) {
  std::error_code ec;
  FC_CHECK(fs::is_directory(dir, ec), "state folder " << dir << (fs::exists(dir, ec) ? " is not a folder" : " does not exist"));
  const std::string path = (fs::path(dir) / "lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  FC_CHECK(fd_ >= 0, "cannot open " << path << ": " << std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd_);
    FC_FAIL("state folder " << dir << " is in use by another facecluster (adding faces to it); wait for it to finish");
  }
}

StateLock::~StateLock() {
  if (fd_ >= 0) ::close(fd_);
}

bool holds_state(const std::string& dir) {
  std::error_code ec;
  return fs::exists(fs::path(dir) / kCurrentFile, ec);
}

void save_state(const std::string& dir_name, const ClusterState& s, bool fresh) {
  StageTimer t("write state " + dir_name);
  const fs::path dir(dir_name);
  std::error_code ec;
  FC_CHECK(!fs::exists(dir, ec) || fs::is_directory(dir, ec), "state folder " << dir_name << " exists and is not a folder");
  make_folders(dir_name, "state folder");
  const std::string current = current_generation(dir);
  FC_CHECK(!fresh || current.empty(), "state folder " << dir_name << " already holds a clustering state (" << current
                                                      << "); add faces to it with `facecluster add --state " << dir_name
                                                      << "`, or remove it to start over");
  FC_CHECK(fresh || !current.empty(), "state folder " << dir_name << " holds no state to replace");
  const int64_t next =
      current.empty() ? 0 : std::stoll(current.substr(std::strlen(kGenerationPrefix))) + 1;
  const std::string name = generation_name(next);
  // Leftovers of a save that was killed: any generation CURRENT does not name.
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string entry = e.path().filename().string();
    if (entry.rfind(kGenerationPrefix, 0) == 0 && entry != current) fs::remove_all(e.path(), ec);
  }
  const fs::path tmp = dir / (name + ".partial");
  fs::create_directory(tmp, ec);
  FC_CHECK(!ec, "cannot create " << tmp.string() << ": " << ec.message());
  try {
    const int64_t n = s.graph.n, k = s.graph.k, mc = s.links.max_conn;
    int64_t first = 0;
    for (size_t b = 0; b < s.batches.size(); ++b) {
      const int64_t rows = s.batches[b].distinct;
      const fs::path target = tmp / batch_file(b);
      bool linked = false;
      if (!current.empty() && fs::exists(dir / current / batch_file(b), ec)) {
        fs::create_hard_link(dir / current / batch_file(b), target, ec);
        linked = !ec;
        if (!linked) linked = fs::copy_file(dir / current / batch_file(b), target, ec) && !ec;
      }
      if (!linked) {
        write_npy_array(target.string(), s.features.row(first), {rows, s.dim});
        sync_path(target);
      }
      first += rows;
    }
    write_array(tmp, "knn_ids.npy", s.graph.nbrs, {n, k});
    write_array(tmp, "knn_dists.npy", s.graph.dists, {n, k});
    if (s.calibrated) write_array(tmp, "link_dists.npy", s.link_dists, {n, k});
    write_array(tmp, "density.npy", s.density, {n});
    write_array(tmp, "parents.npy", s.links.parent, {n, mc});
    write_array(tmp, "parent_dists.npy", s.links.dist, {n, mc});
    write_array(tmp, "cluster_of.npy", s.cluster_of, {n});
    write_array(tmp, "row_of.npy", s.row_of, {s.faces()});
    if (!s.truth.empty()) write_array(tmp, "truth.npy", s.truth, {s.faces()});
    write_text_file((tmp / kManifestFile).string(), manifest_text(s));
    sync_path(tmp / kManifestFile);
    sync_path(tmp);
    check_interrupt();
    fs::rename(tmp, dir / name, ec);
    FC_CHECK(!ec, "cannot publish the state in " << dir_name << ": " << ec.message());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  sync_path(dir);
  // The one step that makes the new generation the state.
  write_text_file((dir / kCurrentFile).string(), name + "\n");
  sync_path(dir);
  if (!current.empty()) fs::remove_all(dir / current, ec);
}

ClusterState load_state(const std::string& dir_name) {
  StageTimer t("read state " + dir_name);
  const fs::path dir(dir_name);
  std::error_code ec;
  FC_CHECK(fs::exists(dir, ec), "state folder " << dir_name << " does not exist");
  FC_CHECK(fs::is_directory(dir, ec), "state folder " << dir_name << " is not a folder");
  const std::string current = current_generation(dir);
  FC_CHECK(!current.empty(), "state folder " << dir_name << " holds no clustering state (no " << kCurrentFile
                                             << "; `facecluster cluster --save-state " << dir_name << "` writes one)");
  const fs::path gen = dir / current;
  const std::string manifest = (gen / kManifestFile).string();
  YAML::Node y;
  try {
    y = YAML::LoadFile(manifest);
  } catch (const YAML::Exception& e) {
    FC_FAIL("state manifest " << manifest << " cannot be read: " << e.msg);
  }
  ClusterState s;
  try {
    FC_CHECK(y.IsMap() && y["format"] && y["format"].as<std::string>() == kStateFormatName,
             "state manifest " << manifest << " is not a facecluster state");
    const int version = y["version"].as<int>();
    FC_CHECK(version == kStateFormatVersion, "state " << dir_name << " is in format version " << version << " (written by "
                                                      << y["written_by"].as<std::string>("?") << "); this facecluster ("
                                                      << build_info_line() << ") reads version " << kStateFormatVersion);
    s.dim = y["dim"].as<int64_t>();
    s.normalize = y["normalize"].as<bool>();
    s.k = y["k"].as<int>();
    s.knn_index = y["knn_index"].as<std::string>();
    s.tau = y["tau"].as<double>();
    s.tau_automatic = y["tau_automatic"].as<bool>();
    s.auto_calibrate = parse_calibrate(y["calibrate"].as<std::string>()) == CalibrateMode::Auto;
    s.calibrated_on = y["calibrated_on"].as<int64_t>();
    s.next_id = y["next_id"].as<int64_t>();
    s.bins = y["bins"].as<int>();
    s.params = read_params(y["graph"]);
    s.calibrated = y["calibration"] && !y["calibration"].IsNull();
    if (s.calibrated) {
      const YAML::Node c = y["calibration"];
      for (const auto& [name, field] : mixture_fields()) s.calibration.similarity.*field = c[name].as<double>();
      s.calibration.lo = c["lo"].as<double>();
      s.calibration.hi = c["hi"].as<double>();
      s.calibration.order_weight = c["order_weight"].as<double>();
      s.calibration.order_scale = c["order_scale"].as<double>();
      s.calibration.params = s.params;
    }
    for (const auto& b : y["batches"])
      s.batches.push_back({b["rows"].as<int64_t>(), b["distinct"].as<int64_t>(), b["digest"].as<std::string>()});
    const bool labelled = y["labels"].as<bool>();
    const int64_t faces = y["faces"].as<int64_t>(), n = y["distinct"].as<int64_t>();
    int64_t sum_rows = 0, sum_distinct = 0;
    for (const auto& b : s.batches) sum_rows += b.rows, sum_distinct += b.distinct;
    FC_CHECK(!s.batches.empty() && sum_rows == faces && sum_distinct == n && s.dim > 0 && n > 0 && s.k > 0,
             "state manifest " << manifest << " is inconsistent: its batches hold " << sum_rows << " faces (" << sum_distinct
                               << " distinct), it says " << faces << " (" << n << ")");
    s.features = Matrix(n, s.dim);
    int64_t first = 0;
    for (size_t b = 0; b < s.batches.size(); ++b) {
      const auto part = read_array<float>(gen, batch_file(b).c_str(), {s.batches[b].distinct, s.dim});
      std::copy(part.begin(), part.end(), s.features.row(first));
      first += s.batches[b].distinct;
    }
    std::vector<int64_t> shape{n, -1};
    s.graph.nbrs = read_array<int32_t>(gen, "knn_ids.npy", {n, -1});
    s.graph.n = n;
    s.graph.k = static_cast<int>(s.graph.nbrs.size() / static_cast<size_t>(n));
    s.graph.dists = read_array<float>(gen, "knn_dists.npy", {n, s.graph.k});
    if (s.calibrated) s.link_dists = read_array<float>(gen, "link_dists.npy", {n, s.graph.k});
    s.density = read_array<double>(gen, "density.npy", {n});
    s.links.max_conn = s.params.max_conn;
    s.links.parent = read_array<int32_t>(gen, "parents.npy", {n, s.params.max_conn});
    s.links.dist = read_array<float>(gen, "parent_dists.npy", {n, s.params.max_conn});
    s.cluster_of = read_array<int64_t>(gen, "cluster_of.npy", {n});
    s.row_of = read_array<int64_t>(gen, "row_of.npy", {faces});
    if (labelled) s.truth = read_array<int64_t>(gen, "truth.npy", {faces});
  } catch (const YAML::Exception& e) {
    FC_FAIL("state manifest " << manifest << " is missing a value or has a wrong one: " << e.msg);
  }
  const int64_t n = s.graph.n;
  for (int32_t j : s.graph.nbrs) FC_CHECK(j >= -1 && j < n, "state " << dir_name << ": knn_ids.npy names row " << j << " of " << n);
  for (int32_t j : s.links.parent) FC_CHECK(j >= -1 && j < n, "state " << dir_name << ": parents.npy names row " << j << " of " << n);
  for (int64_t d : s.row_of) FC_CHECK(d >= 0 && d < n, "state " << dir_name << ": row_of.npy names row " << d << " of " << n);
  for (int64_t c : s.cluster_of)
    FC_CHECK(c >= 0 && c < s.next_id, "state " << dir_name << ": cluster id " << c << " is not below next_id " << s.next_id);
  return s;
}

ClusterReport add_faces(ClusterState& s, Matrix x, const Labels* truth, const std::string& source, bool recalibrate) {
  FC_CHECK(x.rows > 0, source << ": no faces to add");
  FC_CHECK(x.cols == s.dim, source << ": the new faces have " << x.cols << " dimensions, the clustering's have " << s.dim);
  FC_CHECK(!truth || static_cast<int64_t>(truth->size()) == x.rows,
           "labels of " << source << " have " << (truth ? truth->size() : 0) << " rows but it has " << x.rows << " faces");
  if (s.normalize) normalize_rows(x, source);
  else check_finite_rows(x, source);
  const std::string digest = features_digest(x);
  for (size_t b = 0; b < s.batches.size(); ++b)
    FC_CHECK(s.batches[b].digest != digest, source << ": these faces were added already (batch " << b
                                                   << " of the state has the same features)");
  const int64_t n0 = s.graph.n, m = x.rows, faces0 = s.faces();
  AdditionUndo undo(s);
  if (const int k = static_cast<int>(std::min<int64_t>(s.k, n0 + m)); s.graph.k < k) {
    undo.keep_graph();
    widen_lists(s, k);
  }

  // Neighbours among old and new faces; a new face within copy distance of an earlier one is a
  // copy of it (as a whole run groups copies under their first face) and gets no row of its own.
  KnnExtension e;
  {
    StageTimer st("knn of " + std::to_string(m) + " added faces among " + std::to_string(n0 + m));
    e = extend_knn(s.graph, s.features, x);
  }
  std::vector<int64_t> face_row(static_cast<size_t>(m), -1);  // a copy's distinct row (>= n0: new row index + n0, for now)
  std::vector<int64_t> distinct_new;
  for (int64_t j = 0; j < m; ++j) {
    const int32_t* nb = e.added.nbr_row(j);
    for (int a = 0; a < e.added.k; ++a) {
      if (!lists_a_copy(e.added, j, a, n0 + j) || nb[a] > n0 + j) continue;
      face_row[static_cast<size_t>(j)] = nb[a] < n0 ? nb[a] : face_row[static_cast<size_t>(nb[a] - n0)];
      break;
    }
    if (face_row[static_cast<size_t>(j)] < 0) {
      face_row[static_cast<size_t>(j)] = n0 + static_cast<int64_t>(distinct_new.size());
      distinct_new.push_back(j);
    }
  }
  // face_row of a copy of a new face pointed at that face's final row already (assigned above).
  const int64_t copies = m - static_cast<int64_t>(distinct_new.size());
  Matrix fresh;
  if (copies == 0) {
    fresh = std::move(x);
  } else {
    fresh = Matrix(static_cast<int64_t>(distinct_new.size()), x.cols);
    for (size_t t = 0; t < distinct_new.size(); ++t)
      std::copy(x.row(distinct_new[t]), x.row(distinct_new[t]) + x.cols, fresh.row(static_cast<int64_t>(t)));
    StageTimer st("knn of the " + std::to_string(fresh.rows) + " distinct added faces");
    e = extend_knn(s.graph, s.features, fresh);
  }

  const bool grown = kRecalibrateEvery * (n0 + fresh.rows - s.calibrated_on) >= s.calibrated_on;
  undo.keep_rows(e.changed);
  if (s.auto_calibrate && (recalibrate || grown)) undo.keep_link_dists();
  GraphResult gr{std::move(s.density), std::move(s.links)};
  std::vector<int64_t> recomputed;
  std::vector<std::string> decisions, notes;
  if (fresh.rows > 0) {
    apply_extension(s.graph, e);
    s.features.data.insert(s.features.data.end(), fresh.row(0), fresh.row(0) + fresh.rows * fresh.cols);
    s.features.rows += fresh.rows;
  }
  if (s.auto_calibrate && (recalibrate || grown) &&
      (s.calibrated || neighbour_pairs(s.graph) >= kMinCalibrationPairs)) {  // as a whole run needs them
    // The whole graph stage again, on a calibration of all faces: what a run from scratch does.
    Calibration cal;
    {
      StageTimer st("calibrate (fitted again on all " + std::to_string(s.graph.n) + " faces)");
      cal = calibrate_graph(s.graph, s.params);
    }
    char why[200];
    if (s.calibrated)
      std::snprintf(why, sizeof why, "calibration fitted again on all %" PRId64 " distinct faces (%s; it was fitted on %" PRId64 ")",
                    s.graph.n, recalibrate ? "asked for" : "they grew by a tenth or more", s.calibrated_on);
    else
      std::snprintf(why, sizeof why, "calibration fitted on all %" PRId64 " distinct faces (the first run had too few to fit it)",
                    s.graph.n);
    decisions.push_back(why);
    decisions.push_back(cal.decision);
    notes = cal.notes;
    s.calibration = distance_map(cal);
    s.calibrated = true;
    s.calibrated_on = s.graph.n;
    calibrate_state_rows(s, {});
    gr = run_graph_stage(LinkingGraph(s).graph(), s.params);
    recomputed.resize(static_cast<size_t>(s.graph.n));
    std::iota(recomputed.begin(), recomputed.end(), 0);
    if (s.tau_automatic) {
      std::string reading, note;
      StageTimer st("choose tau");
      s.tau = likelihood_tau(cut_evidence(gr.links, cal, &reading), &note);
      notes.push_back(reading);
      decisions.push_back(note);
    }
  } else if (fresh.rows > 0) {
    if (s.calibrated) {
      std::vector<int64_t> rows = e.changed;
      for (int64_t i = n0; i < s.graph.n; ++i) rows.push_back(i);
      calibrate_state_rows(s, rows);
    }
    recomputed = update_graph_stage(LinkingGraph(s).graph(), e.changed, s.params, gr);
  }
  s.density = std::move(gr.density);
  s.links = std::move(gr.links);
  const Labels components = link_components(s.links, s.tau);
  const std::vector<int64_t> earlier = s.cluster_of;
  StableIds ids = stable_ids(components, earlier, s.next_id);
  s.cluster_of = std::move(ids.cluster_of);
  s.next_id = ids.next_id;
  s.row_of.insert(s.row_of.end(), face_row.begin(), face_row.end());
  s.batches.push_back({m, fresh.rows, digest});
  const bool scored = truth && (!s.truth.empty() || faces0 == 0);
  if (!truth && !s.truth.empty()) log_warn(source + ": no labels for the added faces; the state keeps no labels from now on");
  if (truth && s.truth.empty()) log_warn(source + ": labels given, but the earlier faces had none; nothing is scored");
  if (scored) s.truth.insert(s.truth.end(), truth->begin(), truth->end());
  else s.truth.clear();
  undo.done();

  ClusterReport r;
  char line[512];
  r.plan = {{"state", "faces " + std::to_string(faces0) + " + " + std::to_string(m) + " added"},
            {"knn", std::string("exact search for the added faces (the first run's lists: ") + s.knn_index + ")"},
            {"k", std::to_string(s.graph.k)},
            {"calibration", s.calibrated ? "fitted on " + std::to_string(s.calibrated_on) + " distinct faces"
                                         : "off (cosine distances)"}};
  std::snprintf(line, sizeof line, "%.6g (%s)", s.tau,
                s.tau_automatic && s.calibrated ? "the likelihood cut when the calibration was fitted" : "fixed");
  r.plan.push_back({"tau", line});
  r.params = s.params;
  const Labels labels = s.labels();
  {
    std::vector<int64_t> seen = earlier, started;
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    int64_t joined = 0;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t id = labels[static_cast<size_t>(faces0 + j)];
      if (std::binary_search(seen.begin(), seen.end(), id)) ++joined;
      else started.push_back(id);
    }
    std::sort(started.begin(), started.end());
    started.erase(std::unique(started.begin(), started.end()), started.end());
    std::snprintf(line, sizeof line,
                  "%" PRId64 " faces added (%" PRId64 " copies of earlier faces): %" PRId64 " joined earlier clusters, %" PRId64
                  " are in %zu new ones; %zu earlier cluster(s) changed; they entered the neighbour lists of %zu earlier "
                  "faces, parents recomputed for %zu of %" PRId64 " distinct faces",
                  m, copies, joined, m - joined, started.size(), ids.changes.size(), e.changed.size(), recomputed.size(),
                  s.graph.n);
    r.decisions.push_back(line);
  }
  r.decisions.insert(r.decisions.end(), decisions.begin(), decisions.end());
  r.notes = std::move(notes);
  r.changes = std::move(ids.changes);
  SweepEntry entry;
  entry.tau = s.tau;
  {
    std::vector<int64_t> distinct_ids = labels;
    std::sort(distinct_ids.begin(), distinct_ids.end());
    entry.clusters = std::unique(distinct_ids.begin(), distinct_ids.end()) - distinct_ids.begin();
  }
  if (scored) {
    entry.scored = true;
    entry.scores = evaluate(labels, s.truth);
    r.scored = true;
  }
  r.sweep.push_back(entry);
  r.chosen = 0;
  r.labels = labels;
  r.density = s.face_density();
  r.links = s.links;
  r.link_summary = summarize_links(r.links);
  if (scored) {
    StageTimer st("hard-cluster bins");
    r.true_sizes = class_sizes(s.truth);
    r.size_bins = evaluate_by_size(labels, s.truth, s.bins);
    Matrix all(s.faces(), s.dim);
    for (int64_t i = 0; i < s.faces(); ++i)
      std::copy(s.features.row(s.row_of[static_cast<size_t>(i)]), s.features.row(s.row_of[static_cast<size_t>(i)]) + s.dim,
                all.row(i));
    r.sparsity_bins = evaluate_by_sparsity(labels, s.truth, all, s.bins);
  }
  return r;
}

}  // namespace facecluster
