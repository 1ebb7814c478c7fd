// The clustering job shared by `cluster`, `eval` and `demo` (private to the CLI).
#pragma once

#include <string>
#include <vector>

#include "facecluster/config.h"
#include "facecluster/knn.h"
#include "facecluster/pipeline.h"

namespace facecluster::cli {

struct ModelUse {
  std::string path;                // "" = training-free (cosine distances); "default" = the shipped model
  bool check_config_arch = false;  // refuse a model whose architecture differs from cfg.model_args
  int batch_size = 512;
  std::string precision = "fp32";
};

// Features, labels and graph in (the graph replaced by the model's learned one when a model is
// given); clustered, scored and written to out_dir (when not empty).
ClusterResult run_cluster(const Config& cfg, const DatasetArgs& ds, const KnnOptions& knn_opt, bool reload,
                          const std::string& calibrate, const std::vector<double>& taus, int bins,
                          const std::string& out_dir, const ModelUse& model = {});

void print_result(const ClusterResult& r);

// A split's features (normalised per is_norm_feat) and, when label_path is set, its labels
// (checked to match the rows).
struct SplitData {
  Matrix x;
  Labels labels;
};
SplitData read_split(const DatasetArgs& ds);

// The calibration to run: "default" means auto without a model and off with one (a model's
// distances are calibrated by training).
std::string resolve_calibration(const std::string& configured, bool with_model);
// The config's tau sweep, or empty (the calibrated tau) when auto calibration keeps one value.
std::vector<double> config_taus(const ClusterArgs& a, const std::string& calibrate);

// Applies --set KEY=VALUE overrides.
void apply_sets(Config& cfg, const std::vector<std::string>& sets);

}  // namespace facecluster::cli
