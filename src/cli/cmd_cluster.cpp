#include <cmath>
#include <cstdio>
#include <limits>
#include <filesystem>

#include "commands.h"
#include "facecluster/config.h"
#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/log.h"
#include "facecluster/pipeline.h"
#include "facecluster/synth.h"
#include "cluster_job.h"
#include "options.h"

namespace facecluster::cli {
namespace fs = std::filesystem;

namespace {

struct ClusterArgsCli {
  std::string config, features, labels, knn, out, tau_range, density, calibrate, select_by;
  int64_t dim = 0;
  double tau = std::numeric_limits<double>::quiet_NaN();
  bool reload = false, no_tpdi = false;
  int bins = 5;
  int k = 0;
  std::vector<std::string> sets;
  KnnOptions knn_opt;
  ModelUse model;
};

std::vector<double> parse_tau_range(const std::string& s) {
  ClusterArgs a;
  double start = 0, end = 0;
  int count = 0;
  FC_CHECK(std::sscanf(s.c_str(), "%lf:%lf:%d", &start, &end, &count) == 3,
           "--tau-range must be START:END:COUNT (numpy.linspace), got '" << s << "'");
  a.tau_start = start;
  a.tau_end = end;
  a.tau_step = count;
  return tau_values(a);
}

}  // namespace

std::function<void()> add_cluster(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "cluster", "cluster features: training-free (cosine distances, self-calibrated by default) or with a learned similarity (--model)");
  auto a = std::make_shared<ClusterArgsCli>();
  cmd->add_option("-c,--config", a->config, "release-style YAML config (test_dataset_args, density_args, cluster_args)");
  cmd->add_option("-f,--features", a->features, "features (.bin needs --dim, or .npy)");
  cmd->add_option("-d,--dim", a->dim, "feature dimension of a .bin file");
  cmd->add_option("-l,--labels", a->labels, "true labels (.meta): score each tau and pick the best");
  cmd->add_option("--knn", a->knn, "kNN cache (.npz): read if present, else built and written here");
  cmd->add_option("-k,--k", a->k, "neighbours per row (default 80, model_topk)");
  cmd->add_flag("--reload", a->reload, "rebuild the kNN cache even if it exists (is_reload)");
  cmd->add_option("-o,--out", a->out, "results folder (default: work_dir/results with -c, else none)");
  cmd->add_option("--tau", a->tau, "linking threshold (release default 0.7)");
  cmd->add_option("--tau-range", a->tau_range, "sweep tau as START:END:COUNT (numpy.linspace)");
  cmd->add_option("--density", a->density, "approximate_NDDe (release) or NDDe (paper's full diffusion)");
  cmd->add_flag("--no-tpdi", a->no_tpdi, "link by the graph distance instead of TPDi");
  cmd->add_option("--calibrate", a->calibrate, "auto: derive the scale from the data (the default without a model); off: the release's fixed constants (the default with --model)");
  cmd->add_option("--select-by", a->select_by, "pairwise or bcubed: the metric that picks the best tau");
  cmd->add_option("--bins", a->bins, "hard-cluster bins")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--set", a->sets, "override any config key: --set density_args.tpdi_sigma=0.1");
  cmd->add_option("--model", a->model.path,
                  "learned similarity: a checkpoint or model file from `facecluster train`, or 'default' (the shipped model)");
  cmd->add_option("--precision", a->model.precision, "model inference: fp32 or bf16")->capture_default_str();
  cmd->add_option("--batch-size", a->model.batch_size, "model inference: anchors per batch")->capture_default_str();
  add_knn_options(cmd, a->knn_opt);
  return [a] {
    Config cfg;
    if (!a->config.empty()) cfg = load_config(a->config);
    apply_sets(cfg, a->sets);
    DatasetArgs ds = cfg.test_dataset_args.feature_path.empty() && !cfg.dataset_args.feature_path.empty()
                         ? cfg.dataset_args
                         : cfg.test_dataset_args;
    if (ds.knn_path.empty() && !cfg.test_knn_path.empty()) ds.knn_path = cfg.test_knn_path;
    if (!a->features.empty()) ds.feature_path = a->features;
    if (a->dim > 0) ds.feature_dim = a->dim;
    if (!a->labels.empty()) ds.label_path = a->labels;
    if (!a->knn.empty()) ds.knn_path = a->knn;
    if (a->k > 0) ds.model_topk = a->k;
    if (a->knn_opt.index != "flat") ds.knn_index = a->knn_opt.index;
    FC_CHECK(!ds.feature_path.empty(), "cluster needs features: --features FILE or test_dataset_args.feature_path in a config");
    if (!a->density.empty()) cfg.graph.density = a->density;
    if (a->no_tpdi) cfg.graph.use_tpdi = false;
    if (!a->select_by.empty()) cfg.cluster_args.select_by = a->select_by;
    const std::string calibrate =
        resolve_calibration(a->calibrate.empty() ? cfg.cluster_args.calibrate : a->calibrate, !a->model.path.empty());
    // A tau the user gives wins over the calibrated one (the distances are still calibrated);
    // with calibration off the config's tau values apply.
    std::vector<double> taus;
    if (!std::isnan(a->tau)) taus = {a->tau};
    else if (!a->tau_range.empty()) taus = parse_tau_range(a->tau_range);
    else taus = config_taus(cfg.cluster_args, calibrate);
    std::string out = a->out;
    if (out.empty() && !a->config.empty()) out = (fs::path(cfg.work_dir) / "results").string();
    if (!out.empty() && !a->config.empty()) fs::create_directories(fs::path(out).parent_path());
    KnnOptions ko = a->knn_opt;
    ko.threads = cfg.threads;
    ClusterResult r = run_cluster(cfg, ds, ko, a->reload, calibrate, taus, a->bins, out, a->model);
    print_result(r);
    if (!out.empty()) std::printf("\nresults written to %s\n", out.c_str());
  };
}

std::function<void()> add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "the built-in default: synthesise faces, build the kNN graph, cluster without a model, score");
  struct Args {
    int64_t n = 20000, dim = 256;
    uint64_t seed = 42;
    std::string out = "facecluster-demo";
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("-n,--n", a->n, "faces")->capture_default_str();
  cmd->add_option("-d,--dim", a->dim, "dimension")->capture_default_str();
  cmd->add_option("--seed", a->seed, "seed")->capture_default_str();
  cmd->add_option("-o,--out", a->out, "folder for the generated data and the results")->capture_default_str();
  return [a] {
    fs::create_directories(a->out);
    const std::string prefix = (fs::path(a->out) / "synth").string();
    SynthOptions so;
    so.n = a->n;
    so.dim = a->dim;
    so.seed = a->seed;
    {
      StageTimer t("synth " + std::to_string(a->n) + " faces");
      SynthData d = make_synthetic(so);
      write_features_bin(prefix + ".bin", d.features);
      write_labels(prefix + ".meta", d.labels);
      std::printf("%s\n", format_synth_stats(measure_synthetic(d.features, d.labels)).c_str());
    }
    Config cfg;
    DatasetArgs ds;
    ds.feature_path = prefix + ".bin";
    ds.label_path = prefix + ".meta";
    ds.feature_dim = a->dim;
    ds.knn_path = prefix + "_knn_k80.npz";
    ClusterResult r = run_cluster(cfg, ds, KnnOptions{}, true, "auto", {}, 5, (fs::path(a->out) / "results").string());
    print_result(r);
    std::printf("\nresults written to %s/results\n", a->out.c_str());
  };
}

}  // namespace facecluster::cli
