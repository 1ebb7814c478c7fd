// The clustering job end to end: features -> kNN graph -> graph stage -> labels (-> scores),
// shared by the CLI and the Python module.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "facecluster/config.h"
#include "facecluster/graph.h"
#include "facecluster/knn.h"
#include "facecluster/metrics.h"

namespace facecluster {

struct SweepEntry {
  double tau = 0;
  int64_t clusters = 0;
  bool scored = false;
  Scores scores;
};

struct ClusterResult {
  GraphParams params;             // what actually ran (after calibration)
  std::vector<std::string> notes; // one line per automatically chosen value, and why
  std::vector<double> density;
  Links links;
  std::vector<SweepEntry> sweep;
  size_t chosen = 0;  // index into sweep of the labels returned
  Labels labels;
  std::vector<BinScores> size_bins, sparsity_bins;
};

// Clusters a graph whose distances are already the ones to link by (cosine or learned).
// calibrate "auto" first rescales the distances (calibrate.h), "off" uses them as they are.
// taus: the values to link with; empty means the calibrated tau with "auto", the release's
// default (0.7) with "off". With gt, each tau is scored and the best by select_by ("pairwise"
// or "bcubed") is chosen; without, the first tau is used. The graph is validated first.
ClusterResult cluster_graph(const KnnGraph& g, const GraphParams& params, const std::vector<double>& taus,
                            const Labels* gt = nullptr, const std::string& select_by = "pairwise",
                            const std::string& calibrate = "off");

// Loads (or builds and caches) the kNN graph of normalised features per the dataset args.
KnnGraph knn_for_dataset(const Matrix& normalized, const DatasetArgs& a, const KnnOptions& base, bool reload);

// Writes pred_labels.meta, density.txt, scores.json and scores.txt into `dir` (created if its
// parent exists). Scores and bins are written only when they were computed.
void write_cluster_results(const std::string& dir, const ClusterResult& r);

std::string format_sweep_table(const ClusterResult& r);
std::string cluster_result_json(const ClusterResult& r);

}  // namespace facecluster
