#include "facecluster/plan.h"

#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "facecluster/error.h"
#include "facecluster/incremental.h"
#include "facecluster/io.h"
#include "facecluster/report.h"
#include "facecluster/log.h"

namespace facecluster {
namespace fs = std::filesystem;

CalibrateMode parse_calibrate(const std::string& name) {
  if (name == "auto") return CalibrateMode::Auto;
  if (name == "off") return CalibrateMode::Off;
  FC_FAIL("unknown calibrate " << quote_input(name) << "; expected auto or off (or default: auto without a model, off with one)");
}
const char* calibrate_name(CalibrateMode m) { return m == CalibrateMode::Auto ? "auto" : "off"; }

SelectBy parse_select_by(const std::string& name) {
  if (name == "pairwise") return SelectBy::Pairwise;
  if (name == "bcubed") return SelectBy::BCubed;
  FC_FAIL("unknown select_by " << quote_input(name) << "; expected pairwise or bcubed");
}
const char* select_by_name(SelectBy s) { return s == SelectBy::Pairwise ? "pairwise" : "bcubed"; }

std::vector<double> tau_linspace(double start, double end, int64_t count) {
  FC_CHECK(count >= 1 && count <= 10000, "the number of tau values must be in [1, 10000], got " << count);
  std::vector<double> v;
  for (int64_t i = 0; i < count; ++i)
    v.push_back(count == 1 ? start : start + (end - start) * double(i) / double(count - 1));
  for (double t : v) FC_CHECK(t > 0 && t <= 1, "tau must be in (0, 1], got " << t);
  return v;
}

std::vector<double> parse_tau_range(const std::string& text) {
  auto bad = [&]() { FC_FAIL("--tau-range must be START:END:COUNT (numpy.linspace), got " << quote_input(text)); };
  std::vector<std::string> parts;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ':')) parts.push_back(item);
  if (parts.size() != 3 || text.back() == ':') bad();
  auto number = [&](const std::string& s) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !std::isfinite(v)) bad();
    return v;
  };
  const double start = number(parts[0]), end = number(parts[1]), count = number(parts[2]);
  if (count != std::floor(count)) bad();
  return tau_linspace(start, end, static_cast<int64_t>(count));
}

namespace {

// Keys that change what a job does. Every other key a config sets is reported as having no
// effect. The model's keys matter to eval (its architecture is checked against the checkpoint).
bool key_has_effect(const std::string& key, Job job, const std::string& split, bool with_model) {
  static const std::set<std::string> split_keys = {"feature_path", "label_path", "knn_path", "feature_dim",
                                                   "model_topk", "is_norm_feat", "is_reload", "knn_index"};
  const size_t dot = key.find('.');
  const std::string block = dot == std::string::npos ? "" : key.substr(0, dot);
  const std::string name = dot == std::string::npos ? key : key.substr(dot + 1);
  // An eval config is the training config (as in the release): its training keys serve `train`.
  static const std::set<std::string> train_keys = {"epochs", "start_epoch", "reload", "learning_rate", "weight_decay",
                                                   "clip_max_norm", "batch_size", "seed", "save_interval",
                                                   "print_interval", "inference_interval", "augment_rotation", "precision",
                                                   "loss_list", "lambdas.pair", "train_knn_path"};
  if (job == Job::Eval && (block == "dataset_args" || train_keys.count(key))) return true;
  if (job == Job::Train) {
    if (block == "dataset_args" || block == "test_dataset_args") return split_keys.count(name) > 0;
    return block == "model_args" || train_keys.count(key) || key == "work_dir" || key == "threads" ||
           key == "test_knn_path" || key == "test_batch_size" || key == "device";
  }
  if (block == "dataset_args" || block == "test_dataset_args") return block == split && split_keys.count(name);
  if (block == "density_args") return true;
  if (block == "cluster_args")
    return name == "max_conn" || name == "tau_start" || name == "tau_end" || name == "tau_step" ||
           name == "select_by" || name == "calibrate";
  if (block == "model_args") return job == Job::Eval;
  static const std::set<std::string> top = {"work_dir", "threads"};
  if (top.count(key)) return true;
  if (key == "device") return true;  // the model's and the exact kNN's
  if (key == "test_batch_size") return job == Job::Eval || with_model;  // the model's inference batch
  if (job == Job::Eval) return key == "eval_epoch";
  return key == "test_knn_path" && split == "test_dataset_args";
}

void check_input_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  FC_CHECK(fs::exists(path, ec), what << " " << path << " does not exist");
  FC_CHECK(fs::is_regular_file(path, ec), what << " " << path << " is not a file");
}

// The folder that will hold `path` must exist (or be creatable when create_parents) and be
// writable; throws otherwise.
void check_writable_target(const std::string& path, const std::string& what, bool create_parents) {
  std::error_code ec;
  fs::path target = fs::absolute(fs::path(path), ec);
  fs::path parent = target.parent_path();
  if (!create_parents)
    FC_CHECK(fs::is_directory(parent, ec), "cannot write " << what << " " << path << ": folder " << parent.string()
                                                            << " does not exist");
  fs::path probe = parent;
  while (!probe.empty() && !fs::exists(probe, ec)) probe = probe.parent_path();
  FC_CHECK(fs::is_directory(probe, ec), "cannot write " << what << " " << path << ": " << probe.string() << " is not a folder");
  FC_CHECK(::access(probe.c_str(), W_OK) == 0, "cannot write " << what << " " << path << ": folder " << probe.string()
                                                                << " is not writable");
}

int plan_threads(int64_t requested) {
  FC_CHECK(requested >= 0 && requested <= 1024, "threads must be in [0, 1024] (0: all cores), got " << requested);
  if (requested > 0) return static_cast<int>(requested);
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

template <class T>
T pick(const std::optional<T>& flag, const T& config_value) {
  return flag ? *flag : config_value;
}

// cluster reads test_dataset_args, or dataset_args when only that one names features.
bool clusters_the_training_split(const Config& cfg, Job job) {
  return job == Job::Cluster && cfg.test_dataset_args.feature_path.empty() && !cfg.dataset_args.feature_path.empty();
}

// Inputs and kNN options of one split: the config's dataset keys, then the request's flags.
void fill_inputs(RunPlan& p, const Config& cfg, const DatasetArgs& ds, const std::string& knn_fallback,
                 const PlanRequest& req, const std::string& where, Job job, bool have_config) {
  // Inputs.
  p.features = pick(req.features, ds.feature_path);
  // feature_dim's release default (256) belongs to configs; from flags a .bin needs --dim.
  p.feature_dim = pick(req.dim, have_config ? ds.feature_dim : int64_t(0));
  p.normalize = ds.is_norm_feat;
  p.labels = pick(req.labels, ds.label_path);
  p.knn_cache = pick(req.knn_cache, ds.knn_path.empty() ? knn_fallback : ds.knn_path);
  p.rebuild_knn = pick(req.rebuild_knn, ds.is_reload);
  if (!req.features_in_memory) {
    FC_CHECK(!p.features.empty(), (job == Job::Eval ? where + "eval needs test_dataset_args.feature_path"
                                                    : std::string("cluster needs features: --features FILE or "
                                                                  "test_dataset_args.feature_path in a config")));
    check_input_file(p.features, "features");
    const bool npy = fs::path(p.features).extension() == ".npy";
    FC_CHECK(npy || p.feature_dim > 0, "features " << p.features << " is raw float32 (.bin): its dimension must be given "
                                                   "(--dim or feature_dim), got " << p.feature_dim);
    // The release's default feature_dim (256) would read any .bin whose size happens to divide.
    const char* section = &ds == &cfg.test_dataset_args ? "test_dataset_args" : &ds == &cfg.dataset_args ? "dataset_args" : nullptr;
    FC_CHECK(npy || req.dim || !have_config || !section || cfg.keys_set.count(std::string(section) + ".feature_dim"),
             where << section << " sets no feature_dim for the raw float32 features " << p.features
                   << " (a .bin has no header to read it from): set feature_dim or give --dim");
    if (npy) p.feature_dim = 0;
  }
  if (!p.labels.empty()) check_input_file(p.labels, "labels");
  if (!p.knn_cache.empty()) {
    std::error_code ec;
    if (fs::exists(p.knn_cache, ec)) FC_CHECK(fs::is_regular_file(p.knn_cache, ec), "kNN cache " << p.knn_cache << " is not a file");
    check_writable_target(p.knn_cache, "kNN cache", true);
  }

  // kNN.
  const KnnOptions knn_defaults;
  const int64_t k = pick(req.k, int64_t(ds.model_topk));
  FC_CHECK(k >= 1 && k <= 100000, "k must be in [1, 100000], got " << k);
  p.knn.k = static_cast<int>(k);
  p.knn.index = parse_knn_index(pick(req.index, ds.knn_index));
  const int64_t nlist = pick(req.nlist, int64_t(knn_defaults.ivf_nlist));
  const int64_t nprobe = pick(req.nprobe, int64_t(knn_defaults.ivf_nprobe));
  const int64_t hnsw_m = pick(req.hnsw_m, int64_t(knn_defaults.hnsw_m));
  const int64_t efc = pick(req.ef_construction, int64_t(knn_defaults.hnsw_ef_construction));
  const int64_t efs = pick(req.ef_search, int64_t(knn_defaults.hnsw_ef_search));
  const int64_t probe = pick(req.probe, int64_t(knn_defaults.blocked_probe));
  FC_CHECK(probe >= 0 && probe <= 4096, "probe must be in [0, 4096] (0: by the products' precision), got " << probe);
  const int64_t refine = pick(req.refine, int64_t(knn_defaults.blocked_refine));
  FC_CHECK(refine >= 0 && refine <= 4096, "refine must be in [0, 4096] (0: off), got " << refine);
  FC_CHECK(nlist >= 0 && nlist <= (int64_t{1} << 30), "nlist must be >= 0 (0: about 4 sqrt(N)), got " << nlist);
  FC_CHECK(nprobe >= 1 && nprobe <= (int64_t{1} << 30), "nprobe must be >= 1, got " << nprobe);
  FC_CHECK(hnsw_m >= 2 && hnsw_m <= 1024, "hnsw_m must be in [2, 1024], got " << hnsw_m);
  FC_CHECK(efc >= 1 && efc <= 100000, "ef_construction must be in [1, 100000], got " << efc);
  FC_CHECK(efs >= 1 && efs <= 100000, "ef_search must be in [1, 100000], got " << efs);
  p.knn.ivf_nlist = static_cast<int>(nlist);
  p.knn.ivf_nprobe = static_cast<int>(nprobe);
  p.knn.hnsw_m = static_cast<int>(hnsw_m);
  p.knn.hnsw_ef_construction = static_cast<int>(efc);
  p.knn.hnsw_ef_search = static_cast<int>(efs);
  p.knn.blocked_probe = static_cast<int>(probe);
  p.knn.blocked_refine = static_cast<int>(refine);
  p.knn.precision = parse_knn_precision(pick(req.knn_precision, std::string(knn_precision_name(knn_defaults.precision))));
  p.threads = plan_threads(pick(req.threads, int64_t(cfg.threads)));
  p.knn.threads = p.threads;
}

}  // namespace

std::vector<std::string> unused_config_keys(const Config& cfg, Job job, bool with_model) {
  const std::string split = clusters_the_training_split(cfg, job) ? "dataset_args" : "test_dataset_args";
  std::vector<std::string> out;
  for (const auto& key : cfg.keys_set)
    if (!key_has_effect(key, job, split, with_model)) out.push_back(key);
  return out;
}

std::string no_effect_warning(const std::string& source, Job job, const std::vector<std::string>& keys) {
  std::string list;
  for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
  const char* name = job == Job::Eval ? "eval" : job == Job::Train ? "train" : "cluster";
  return source + ": keys with no effect on " + name + ": " + list;
}

RunPlan resolve_split(const Config& cfg, const DatasetArgs& ds, const std::string& knn_fallback, const std::string& what) {
  RunPlan p;
  fill_inputs(p, cfg, ds, knn_fallback, PlanRequest{}, what + ": ", Job::Cluster, true);
  return p;
}

RunPlan resolve_plan(Job job, const PlanRequest& req) {
  FC_CHECK(job != Job::Train, "internal: the train job has no run plan (train_model reads its config)");
  Config cfg;
  if (req.config) cfg = load_config(*req.config);
  apply_config_sets(cfg, req.sets);
  RunPlan p;
  p.job = job;

  const bool train_split = clusters_the_training_split(cfg, job);
  const DatasetArgs& ds = train_split ? cfg.dataset_args : cfg.test_dataset_args;
  const std::string knn_fallback = train_split ? "" : cfg.test_knn_path;
  const std::string where = req.config ? *req.config + ": " : std::string();
  fill_inputs(p, cfg, ds, knn_fallback, req, where, job, req.config.has_value());

  // The learned similarity.
  p.model = pick(req.model, std::string());
#ifndef FC_WITH_TORCH
  FC_CHECK(p.model.empty() && job != Job::Eval,
           "this build has no model support (built without libtorch); cannot use a learned similarity");
#else
  if (job == Job::Eval && p.model.empty()) {
    p.model = checkpoint_path(cfg.work_dir, cfg.eval_epoch);
    std::error_code ec;
    if (!fs::exists(p.model, ec)) {
      const std::string last = latest_checkpoint(cfg.work_dir);
      FC_FAIL(where << "no checkpoint " << p.model << " (eval_epoch " << cfg.eval_epoch << ")"
                    << (last.empty() ? std::string("; work_dir holds none") : "; the latest is " + last)
                    << " (set eval_epoch or pass --model)");
    }
  }
  p.check_model_arch = job == Job::Eval && p.model != "default";
  if (p.model == "default") p.model = default_model_path();
  if (!p.model.empty()) check_input_file(p.model, "model");
#endif
  p.model_args = cfg.model_args;
  if (req.precision) p.inference.precision = parse_precision(*req.precision);
  const int64_t batch = pick(req.batch_size, int64_t(cfg.test_batch_size));
  FC_CHECK(batch >= 1 && batch <= 1000000, "batch_size must be in [1, 1000000], got " << batch);
  p.inference.batch_size = static_cast<int>(batch);
  // Where the model and the exact kNN run, decided here once: "cpu" or "cuda:N" (a GPU asked of
  // a build or machine without one is refused now, before any work). The graph stage stays on
  // the CPU; so do the approximate indexes.
  const std::string device = pick(req.device, cfg.device);
#ifdef FC_WITH_TORCH
  p.inference.device = resolve_device(device);
#else
  FC_CHECK(device == "auto" || device == "cpu",
           "device " << quote_input(device) << ": this build has no libtorch, so everything runs on the CPU");
  p.inference.device = "cpu";
#endif
  const bool exact_on_device = p.knn.index == KnnIndex::Flat || p.knn.index == KnnIndex::Auto;
  p.knn.device = exact_on_device ? p.inference.device : "cpu";
  if (p.inference.device != "cpu" && !exact_on_device)
    p.warnings.push_back(std::string("the ") + knn_index_name(p.knn.index) + " index runs on the CPU; only exact kNN (flat) runs on " +
                         p.inference.device);
  p.inference.threads = p.threads;

  // The graph stage. Calibration "default": auto without a model, off with one (a model's
  // distances are calibrated by its training).
  const std::string calibrate = pick(req.calibrate, cfg.cluster_args.calibrate);
  p.calibrate = calibrate == "default" ? (p.model.empty() ? CalibrateMode::Auto : CalibrateMode::Off)
                                       : parse_calibrate(calibrate);
  const DensityArgs& da = cfg.density_args;
  p.graph.density = parse_density(pick(req.density, da.density_type));
  p.graph.use_tpdi = pick(req.tpdi, da.tpdi);
  const int64_t ndde_k = pick(req.ndde_k, int64_t(da.ndde_k));
  FC_CHECK(ndde_k >= 1 && ndde_k <= 100000, "ndde_k must be in [1, 100000], got " << ndde_k);
  p.graph.ndde_k = static_cast<int>(ndde_k);
  p.graph.ndde_sigma = pick(req.ndde_sigma, da.ndde_sigma);
  p.graph.tpdi_sigma = pick(req.tpdi_sigma, da.tpdi_sigma);
  FC_CHECK(p.graph.ndde_sigma > 0 && std::isfinite(p.graph.ndde_sigma), "ndde_sigma must be > 0, got " << p.graph.ndde_sigma);
  FC_CHECK(p.graph.tpdi_sigma > 0 && std::isfinite(p.graph.tpdi_sigma), "tpdi_sigma must be > 0, got " << p.graph.tpdi_sigma);
  p.graph.ndde_d = da.ndde_d;
  p.graph.ndde_epsilon = da.ndde_epsilon;
  FC_CHECK(da.ndde_d >= 0 && da.ndde_d < 1, "density_args.ndde_d must be in [0, 1), got " << da.ndde_d);
  FC_CHECK(da.ndde_epsilon > 0, "density_args.ndde_epsilon must be > 0, got " << da.ndde_epsilon);
  FC_CHECK(da.ndde_max_iter >= 1 && da.ndde_max_iter <= 1000000,
           "density_args.ndde_max_iter must be in [1, 1000000], got " << da.ndde_max_iter);
  p.graph.ndde_max_iter = da.ndde_max_iter;
  const int64_t max_conn = pick(req.max_conn, int64_t(cfg.cluster_args.max_conn));
  FC_CHECK(max_conn >= 1 && max_conn <= 1000, "max_conn must be in [1, 1000], got " << max_conn);
  p.graph.max_conn = static_cast<int>(max_conn);
  p.graph.threads = p.threads;

  // The cut. A tau the user gives always wins (on calibrated distances when calibrating); a
  // config sweep (tau_step > 1) runs as written; otherwise auto calibration chooses tau and the
  // release's single tau applies only with calibration off.
  const ClusterArgs& ca = cfg.cluster_args;
  p.select_by = parse_select_by(pick(req.select_by, ca.select_by));
  // The config's tau keys are checked even when they are not used: a typo should not wait.
  const std::vector<double> config_taus = tau_linspace(ca.tau_start, ca.tau_end, ca.tau_step);
  std::vector<std::string> ignored;
  if (req.taus) {
    FC_CHECK(!req.taus->empty(), "tau list is empty");
    for (double t : *req.taus) FC_CHECK(t > 0 && t <= 1, "tau must be in (0, 1], got " << t);
    p.taus = *req.taus;
    p.tau_automatic = false;
    for (const char* key : {"cluster_args.tau_start", "cluster_args.tau_end", "cluster_args.tau_step"})
      if (cfg.keys_set.count(key)) ignored.push_back(std::string(key) + " (a tau was given)");
  } else if (p.calibrate == CalibrateMode::Auto && ca.tau_step == 1) {
    p.tau_automatic = true;
    for (const char* key : {"cluster_args.tau_start", "cluster_args.tau_end", "cluster_args.tau_step"})
      if (cfg.keys_set.count(key)) ignored.push_back(std::string(key) + " (calibrate auto chooses tau; give tau_step > 1 for a sweep, or calibrate: off)");
  } else {
    p.taus = config_taus;
    p.tau_automatic = false;
  }
  const int64_t bins = pick(req.bins, int64_t{kDefaultBins});
  FC_CHECK(bins >= 1 && bins <= 1000, "bins must be in [1, 1000], got " << bins);
  p.bins = static_cast<int>(bins);
  p.halo_mib = pick(req.halo_mib, kDefaultHaloMib);
  FC_CHECK(p.halo_mib >= 1, "halo-mib must be >= 1, got " << p.halo_mib);

  // Outputs: a results folder; with a config, work_dir/results unless one is given.
  FC_CHECK(!req.out_dir || !req.out_dir->empty(), "the results folder (-o) is an empty path; name a folder");
  p.out_dir = pick(req.out_dir, std::string());
  const bool default_out = p.out_dir.empty() && (req.config.has_value() || job == Job::Eval);
  if (default_out) p.out_dir = (fs::path(cfg.work_dir) / "results").string();
  p.create_out_parents = default_out;
  if (!p.out_dir.empty()) {
    std::error_code ec;
    if (fs::exists(p.out_dir, ec)) FC_CHECK(fs::is_directory(p.out_dir, ec), "output path " << p.out_dir << " exists and is not a folder");
    check_writable_target(p.out_dir, "results to", default_out);
  }

  // A state for adding faces later (incremental.h): a folder of its own, not holding one yet.
  FC_CHECK(!req.state_dir || !req.state_dir->empty(), "the state folder (--save-state) is an empty path; name a folder");
  p.state_dir = pick(req.state_dir, std::string());
  if (!p.state_dir.empty()) {
    FC_CHECK(job == Job::Cluster, "--save-state is for `facecluster cluster`");
    FC_CHECK(p.model.empty(), "--save-state: adding faces to a clustering made with a learned similarity (--model) is not "
                              "supported yet; cluster without --model to keep a state");
    std::error_code ec;
    if (fs::exists(p.state_dir, ec)) FC_CHECK(fs::is_directory(p.state_dir, ec), "state folder (--save-state) " << p.state_dir << " exists and is not a folder");
    FC_CHECK(!holds_state(p.state_dir), "state folder (--save-state) " << p.state_dir
                                            << " already holds a clustering state; add faces to it with `facecluster add --state "
                                            << p.state_dir << "`, or remove it to start over");
    check_writable_target(p.state_dir, "the state to", false);
  }

  if (p.knn.index == KnnIndex::Hnsw && p.threads > 1)
    p.warnings.push_back("hnsw with " + std::to_string(p.threads) +
                         " threads inserts in a different order each run, so the graph and the labels can differ "
                         "between runs; --threads 1 makes them reproducible (flat and ivf are)");

  // Inputs are never overwritten: no output may be one of them.
  {
    std::error_code ec;
    const bool cache_is_read = !p.knn_cache.empty() && fs::exists(p.knn_cache, ec) && !p.rebuild_knn;
    std::vector<NamedPath> inputs = {{"features", p.features}, {"labels", p.labels}, {"model", p.model}};
    if (!cache_is_read && !p.knn_cache.empty()) check_not_an_input(p.knn_cache, inputs);
    if (cache_is_read) inputs.push_back({"kNN cache", p.knn_cache});
    // A cache written by this run would be overwritten by the results a moment later.
    const fs::path cache = p.knn_cache.empty() ? fs::path() : fs::weakly_canonical(p.knn_cache, ec);
    FC_CHECK(cache.empty() || p.out_dir.empty() || fs::weakly_canonical(p.out_dir, ec) != cache,
             "kNN cache " << p.knn_cache << " is the results folder (-o) of this run; choose another path for one of them");
    if (!p.out_dir.empty())
      for (const auto& name : result_file_names()) {
        const fs::path result = fs::path(p.out_dir) / name;
        check_not_an_input(result.string(), inputs);
        FC_CHECK(cache.empty() || fs::weakly_canonical(result, ec) != cache,
                 "kNN cache " << p.knn_cache << " is the results file " << result.string()
                              << " of this run; choose another path for one of them");
      }
  }

  // Keys accepted from the config that change nothing in this job.
  for (const auto& key : unused_config_keys(cfg, job, !p.model.empty())) ignored.push_back(key);
  if (!ignored.empty()) p.warnings.push_back(no_effect_warning(req.config ? *req.config : "config", job, ignored));
  return p;
}

std::vector<std::pair<std::string, std::string>> describe_plan(const RunPlan& p) {
  std::vector<std::pair<std::string, std::string>> d;
  auto num = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.6g", v);
    return std::string(b);
  };
  d.emplace_back("features", p.features.empty() ? "(in memory)" : p.features);
  d.emplace_back("labels", p.labels.empty() ? "(none)" : p.labels);
  std::string knn = std::string(knn_index_name(p.knn.index)) + ", k " + std::to_string(p.knn.k);
  if (p.knn.index == KnnIndex::Ivf)
    knn += ", nlist " + (p.knn.ivf_nlist ? std::to_string(p.knn.ivf_nlist) : std::string("auto")) + ", nprobe " +
           std::to_string(p.knn.ivf_nprobe);
  if (p.knn.index == KnnIndex::Auto) {
    char limit[120];
    std::snprintf(limit, sizeof limit, " (flat while rows^2 x dim <= %.0e, else blocked", kExactSearchMaxMultiplyAdds);
    knn += limit;
  }
  if (p.knn.index == KnnIndex::Blocked || p.knn.index == KnnIndex::Auto)
    knn += ", lists " + (p.knn.ivf_nlist ? std::to_string(p.knn.ivf_nlist) : std::string("auto")) + ", probe " +
           std::to_string(blocked_probe_for(p.knn)) + (p.knn.blocked_probe ? "" : " (by the products)") + ", refine " + std::to_string(p.knn.blocked_refine) + ", products " +
           (knn_uses_bf16(p.knn.precision) ? "bf16 re-ranked in fp32" : "fp32") +
           (p.knn.precision == KnnPrecision::Auto ? " (auto)" : "") + (p.knn.index == KnnIndex::Auto ? ")" : "");
  if (p.knn.index == KnnIndex::Hnsw)
    knn += ", M " + std::to_string(p.knn.hnsw_m) + ", ef_construction " + std::to_string(p.knn.hnsw_ef_construction) +
           ", ef_search " + std::to_string(p.knn.hnsw_ef_search);
  if (!p.knn_cache.empty()) knn += ", cache " + p.knn_cache + (p.rebuild_knn ? " (rebuilt)" : "");
  if (p.knn.device != "cpu") knn += ", on " + p.knn.device;
  d.emplace_back("knn", knn);
  d.emplace_back("similarity", p.model.empty() ? "cosine (training-free)"
                                               : p.model + " (" + precision_name(p.inference.precision) + ", batch " +
                                                     std::to_string(p.inference.batch_size) + ", " + p.inference.device + ")");
  d.emplace_back("calibrate", calibrate_name(p.calibrate));
  d.emplace_back("density", std::string(density_name(p.graph.density)) + ", ndde_k " + std::to_string(p.graph.ndde_k) +
                                ", ndde_sigma " + num(p.graph.ndde_sigma));
  d.emplace_back("linking", std::string(p.graph.use_tpdi ? "TPDi, tpdi_sigma " + num(p.graph.tpdi_sigma) : "graph distance") +
                                ", max_conn " + std::to_string(p.graph.max_conn));
  std::string taus;
  if (p.tau_automatic) taus = "automatic (maximum likelihood)";
  else if (p.taus.size() == 1) taus = num(p.taus[0]);
  else taus = std::to_string(p.taus.size()) + " values " + num(p.taus.front()) + " .. " + num(p.taus.back()) +
              ", best by " + select_by_name(p.select_by);
  d.emplace_back("tau", taus);
  d.emplace_back("threads", std::to_string(p.threads));
  if (!p.state_dir.empty()) d.emplace_back("state", p.state_dir + " (for adding faces later)");
  return d;
}

const std::vector<Parameter>& run_parameters() {
  static const std::vector<Parameter> params = [] {
    const Config c;
    const KnnOptions ko;
    const InferenceOptions io;
    return std::vector<Parameter>{
        {"k", int64_t(c.test_dataset_args.model_topk), "neighbours per row, the row itself included"},
        {"index", std::string(c.test_dataset_args.knn_index), "kNN index: auto (flat while exact search is affordable, blocked above), flat (exact), ivf, hnsw, blocked"},
        {"nlist", int64_t(ko.ivf_nlist), "ivf and blocked: coarse lists (0: ivf about 4 sqrt(N), blocked about N / 256)"},
        {"nprobe", int64_t(ko.ivf_nprobe), "IVF lists probed per query"},
        {"hnsw_m", int64_t(ko.hnsw_m), "HNSW links per node"},
        {"ef_construction", int64_t(ko.hnsw_ef_construction), "HNSW build beam"},
        {"ef_search", int64_t(ko.hnsw_ef_search), "HNSW search beam (raised to k)"},
        {"probe", int64_t(ko.blocked_probe), "blocked: lists each row is compared with, nearest centroids (0: 128 with bf16 products, 64 with fp32)"},
        {"refine", int64_t(ko.blocked_refine), "blocked: at most this many extra lists per row and round, voted by its neighbours' neighbours (0: off)"},
        {"knn_precision", std::string(knn_precision_name(ko.precision)), "blocked: auto (bf16 products re-ranked in fp32 where the CPU has AVX512-BF16 or AMX-BF16, else fp32), fp32 or bf16"},
        {"model", std::monostate{}, "learned similarity: a model file, or 'default' (the shipped model); None: cosine"},
        {"precision", std::string(precision_name(io.precision)), "model inference: fp32 or bf16"},
        {"batch_size", int64_t(c.test_batch_size), "model inference: anchors per batch"},
        {"device", std::string(c.device), "where the model runs: cpu, cuda, cuda:N or auto (a CUDA GPU when libtorch sees one)"},
        {"calibrate", std::monostate{}, "auto or off; None: auto without a model, off with one"},
        {"tau", std::monostate{}, "linking threshold(s); None: automatic with calibrate auto, else 0.7"},
        {"select_by", std::string(c.cluster_args.select_by), "pairwise or bcubed: picks the best tau when labels are given"},
        {"density", std::string(c.density_args.density_type), "approximate_NDDe (release) or NDDe (full diffusion)"},
        {"tpdi", c.density_args.tpdi, "link by TPDi (else by the graph distance)"},
        {"ndde_k", int64_t(c.density_args.ndde_k), "neighbours used for the density"},
        {"ndde_sigma", c.density_args.ndde_sigma, "density temperature"},
        {"tpdi_sigma", c.density_args.tpdi_sigma, "TPDi temperature"},
        {"max_conn", int64_t(c.cluster_args.max_conn), "parents per face"},
        {"bins", int64_t{kDefaultBins}, "hard-cluster bins (by size and by sparsity) when labels are given"},
        {"threads", int64_t(c.threads), "worker threads (0: all cores)"},
    };
  }();
  return params;
}

void set_parameter(PlanRequest& r, const std::string& name, const ParamValue& v) {
  if (std::holds_alternative<std::monostate>(v)) return;  // unset: the plan decides
  auto integer = [&]() -> int64_t {
    if (const auto* i = std::get_if<int64_t>(&v)) return *i;
    FC_FAIL("parameter " << name << " must be an integer");
  };
  auto real = [&]() -> double {
    if (const auto* d = std::get_if<double>(&v)) return *d;
    if (const auto* i = std::get_if<int64_t>(&v)) return double(*i);
    FC_FAIL("parameter " << name << " must be a number");
  };
  auto text = [&]() -> std::string {
    if (const auto* s = std::get_if<std::string>(&v)) return *s;
    FC_FAIL("parameter " << name << " must be a string");
  };
  auto flag = [&]() -> bool {
    if (const auto* b = std::get_if<bool>(&v)) return *b;
    FC_FAIL("parameter " << name << " must be True or False");
  };
  using Setter = std::function<void()>;
  const std::map<std::string, Setter> setters = {
      {"k", [&] { r.k = integer(); }},
      {"index", [&] { r.index = text(); }},
      {"nlist", [&] { r.nlist = integer(); }},
      {"nprobe", [&] { r.nprobe = integer(); }},
      {"hnsw_m", [&] { r.hnsw_m = integer(); }},
      {"ef_construction", [&] { r.ef_construction = integer(); }},
      {"ef_search", [&] { r.ef_search = integer(); }},
      {"probe", [&] { r.probe = integer(); }},
      {"refine", [&] { r.refine = integer(); }},
      {"knn_precision", [&] { r.knn_precision = text(); }},
      {"model", [&] { r.model = text(); }},
      {"precision", [&] { r.precision = text(); }},
      {"batch_size", [&] { r.batch_size = integer(); }},
      {"device", [&] { r.device = text(); }},
      {"calibrate", [&] { r.calibrate = text(); }},
      {"tau",
       [&] {
         if (const auto* list = std::get_if<std::vector<double>>(&v)) r.taus = *list;
         else r.taus = std::vector<double>{real()};
       }},
      {"select_by", [&] { r.select_by = text(); }},
      {"density", [&] { r.density = text(); }},
      {"tpdi", [&] { r.tpdi = flag(); }},
      {"ndde_k", [&] { r.ndde_k = integer(); }},
      {"ndde_sigma", [&] { r.ndde_sigma = real(); }},
      {"tpdi_sigma", [&] { r.tpdi_sigma = real(); }},
      {"max_conn", [&] { r.max_conn = integer(); }},
      {"bins", [&] { r.bins = integer(); }},
      {"threads", [&] { r.threads = integer(); }},
  };
  auto it = setters.find(name);
  FC_CHECK(it != setters.end(), "unknown parameter " << quote_input(name));
  it->second();
}

}  // namespace facecluster
