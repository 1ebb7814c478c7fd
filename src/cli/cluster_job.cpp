#include "cluster_job.h"

#include <cstdio>
#include <filesystem>

#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/log.h"
#ifdef FC_WITH_TORCH
#include "facecluster/model.h"
#endif

namespace facecluster::cli {
namespace fs = std::filesystem;

namespace {

KnnGraph apply_model(const Config& cfg, const DatasetArgs& ds, const ModelUse& use, const Matrix& x, const KnnGraph& g) {
#ifdef FC_WITH_TORCH
  const std::string path = use.path == "default" ? default_model_path() : use.path;
  const ModelSpec expected = ModelSpec::from_config(cfg.model_args, ds.feature_dim);
  const PairModel m = PairModel::load(path, use.check_config_arch ? &expected : nullptr);
  log_info("model " + path + ": " + m.spec().describe() + ", trained " + std::to_string(m.epoch()) + " epoch(s)");
  InferenceOptions o;
  o.batch_size = use.batch_size;
  o.precision = use.precision;
  o.threads = cfg.threads;
  return learned_graph(m, x, g, o);
#else
  (void)cfg, (void)ds, (void)x, (void)g;
  FC_FAIL("this build has no model support (built without libtorch); cannot use model " << use.path);
#endif
}

}  // namespace

SplitData read_split(const DatasetArgs& ds) {
  SplitData s;
  {
    StageTimer t("read " + ds.feature_path);
    s.x = read_features(ds.feature_path, ds.feature_dim);
    if (ds.is_norm_feat) normalize_rows(s.x, ds.feature_path);
    else check_finite_rows(s.x, ds.feature_path);
  }
  if (!ds.label_path.empty()) {
    s.labels = read_labels(ds.label_path);
    FC_CHECK(static_cast<int64_t>(s.labels.size()) == s.x.rows, "labels " << ds.label_path << " have " << s.labels.size()
                                                                          << " rows but features " << ds.feature_path
                                                                          << " have " << s.x.rows);
  }
  return s;
}

std::string resolve_calibration(const std::string& configured, bool with_model) {
  if (configured != "default") return configured;
  return with_model ? "off" : "auto";
}

std::vector<double> config_taus(const ClusterArgs& a, const std::string& calibrate) {
  if (calibrate == "auto" && a.tau_step <= 1) return {};
  return tau_values(a);
}

void apply_sets(Config& cfg, const std::vector<std::string>& sets) {
  for (const auto& s : sets) {
    const size_t eq = s.find('=');
    FC_CHECK(eq != std::string::npos, "--set needs KEY=VALUE, got '" << s << "'");
    set_config_value(cfg, s.substr(0, eq), s.substr(eq + 1));
  }
}

void print_result(const ClusterResult& r) {
  for (const auto& line : r.notes) std::printf("auto: %s\n", line.c_str());
  std::printf("%s", format_sweep_table(r).c_str());
  if (!r.sweep.empty() && r.sweep[r.chosen].scored) {
    std::printf("\nscores at tau %.4f\n%s", r.sweep[r.chosen].tau, format_scores_table(r.sweep[r.chosen].scores).c_str());
    if (!r.size_bins.empty()) std::printf("\n%s", format_bins_table(r.size_bins).c_str());
    if (!r.sparsity_bins.empty()) std::printf("\n%s", format_bins_table(r.sparsity_bins).c_str());
  }
}

ClusterResult run_cluster(const Config& cfg, const DatasetArgs& ds, const KnnOptions& knn_opt, bool reload,
                          const std::string& calibrate, const std::vector<double>& taus, int bins,
                          const std::string& out_dir, const ModelUse& model) {
  if (!out_dir.empty()) {
    const fs::path parent = fs::path(out_dir).parent_path();
    FC_CHECK(parent.empty() || fs::is_directory(parent),
             "cannot write results to " << out_dir << ": folder " << parent.string() << " does not exist");
  }
  SplitData split = read_split(ds);
  const Matrix& x = split.x;
  const Labels& gt = split.labels;
  KnnGraph g = knn_for_dataset(x, ds, knn_opt, reload);
  if (!model.path.empty()) g = apply_model(cfg, ds, model, x, g);
  GraphParams gp = cfg.graph;
  gp.max_conn = cfg.cluster_args.max_conn;
  gp.threads = cfg.threads;
  ClusterResult r = cluster_graph(g, gp, taus, gt.empty() ? nullptr : &gt, cfg.cluster_args.select_by, calibrate);
  if (!gt.empty()) {
    StageTimer t("hard-cluster bins");
    r.size_bins = evaluate_by_size(r.labels, gt, bins);
    r.sparsity_bins = evaluate_by_sparsity(r.labels, gt, x, bins);
  }
  if (!out_dir.empty()) {
    StageTimer t("write results to " + out_dir);
    write_cluster_results(out_dir, r);
  }
  return r;
}

}  // namespace facecluster::cli
