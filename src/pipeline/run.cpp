#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "facecluster/calibrate.h"
#include "facecluster/error.h"
#include "facecluster/incremental.h"
#include "facecluster/io.h"
#include "facecluster/log.h"
#include "facecluster/pipeline.h"

namespace facecluster {
namespace fs = std::filesystem;

ClusterReport cluster_graph(const RunPlan& plan, const KnnGraph& g, const Labels* gt) {
  return cluster_graph(plan, KnnGraph(g), gt);
}

ClusterReport cluster_graph(const RunPlan& plan, KnnGraph&& g, const Labels* gt, const DuplicateGroups* copies) {
  const int64_t rows = copies ? static_cast<int64_t>(copies->row_of.size()) : g.n;
  FC_CHECK(!copies || static_cast<int64_t>(copies->kept.size()) == g.n,
           "internal: a graph of " << g.n << " rows for " << copies->kept.size() << " distinct rows");
  FC_CHECK(!gt || static_cast<int64_t>(gt->size()) == rows,
           "labels have " << (gt ? gt->size() : 0) << " rows but the graph has " << rows);
  {
    StageTimer t("validate graph");
    validate_graph(g, "kNN graph");
  }
  if (const int64_t pairs = plan.calibrate == CalibrateMode::Auto ? neighbour_pairs(g) : kMinCalibrationPairs;
      pairs < kMinCalibrationPairs) {
    // Nothing to fit a pair mixture on (a handful of distinct faces): the release's constants.
    RunPlan fixed = plan;
    fixed.calibrate = CalibrateMode::Off;
    if (fixed.tau_automatic) fixed.tau_automatic = false, fixed.taus = {ClusterArgs{}.tau_start};
    const std::string note = "only " + std::to_string(pairs) + " neighbour pairs among " +
                             std::to_string(g.n) + " distinct faces, too few to calibrate on (" +
                             std::to_string(kMinCalibrationPairs) + " needed): cosine distances and the release's constants";
    ClusterReport r = cluster_graph(fixed, std::move(g), gt, copies);
    r.decisions.insert(r.decisions.begin(), note);
    return r;
  }
  ClusterReport r;
  r.plan = describe_plan(plan);
  r.warnings = plan.warnings;
  r.params = plan.graph;
  // Calibration rewrites the distances in place; the graph's own distances come back into the
  // report afterwards (one n x k array of floats aside instead of a second graph).
  std::vector<float> own_dists;
  Calibration cal;
  if (plan.calibrate == CalibrateMode::Auto) {
    StageTimer t("calibrate");
    cal = calibrate_graph(g, plan.graph);
    own_dists = g.dists;
    calibrate_distances(g, cal);
    r.params = cal.params;
    r.calibration = distance_map(cal);
    r.decisions.push_back(cal.decision);
    r.notes = cal.notes;
  }
  GraphResult gr = run_graph_stage(g, r.params);
  r.density = copies ? spread_to_rows(gr.density, *copies) : std::move(gr.density);
  r.links = std::move(gr.links);
  if (plan.calibrate == CalibrateMode::Auto) g.dists = std::move(own_dists);
  r.graph = std::move(g);
  cut_and_score(plan, cal, gt, r, copies);
  if (copies) r.copies = *copies;
  return r;
}

std::vector<double> taus_to_run(const RunPlan& plan, const Calibration& cal, ClusterReport& r) {
  if (!plan.tau_automatic) return plan.taus;
  FC_CHECK(plan.calibrate == CalibrateMode::Auto, "internal: automatic tau needs calibrated distances");
  std::string reading, note;
  StageTimer t("choose tau");
  const double tau = likelihood_tau(cut_evidence(r.links, cal, &reading), &note);
  r.notes.push_back(reading);
  r.decisions.push_back(note);
  return {tau};
}

void record_tau(const RunPlan& plan, size_t index, double tau, Labels&& labels, const Labels* gt, ClusterReport& r) {
  FC_CHECK(index == r.sweep.size(), "internal: tau " << index << " recorded out of order");
  SweepEntry e;
  e.tau = tau;
  e.clusters = labels.empty() ? 0 : *std::max_element(labels.begin(), labels.end()) + 1;
  r.scored = gt != nullptr;
  auto f_of = [&](const Scores& s) { return plan.select_by == SelectBy::BCubed ? s.bcubed_f : s.pairwise_f; };
  if (gt) {
    e.scores = evaluate(labels, *gt);
    e.scored = true;
    if (index == 0 || f_of(e.scores) > f_of(r.sweep[r.chosen].scores)) {
      r.chosen = index;
      r.labels = std::move(labels);
    }
  } else if (index == 0) {
    r.chosen = 0;
    r.labels = std::move(labels);
  }
  r.sweep.push_back(e);
}

void cut_and_score(const RunPlan& plan, const Calibration& cal, const Labels* gt, ClusterReport& r,
                   const DuplicateGroups* copies) {
  r.link_summary = summarize_links(r.links);
  const std::vector<double> taus = taus_to_run(plan, cal, r);
  StageTimer t("link + score " + std::to_string(taus.size()) + " tau value(s)");
  for (size_t i = 0; i < taus.size(); ++i) {
    check_interrupt();
    Labels labels = link_components(r.links, taus[i]);
    record_tau(plan, i, taus[i], copies ? spread_to_rows(labels, *copies) : std::move(labels), gt, r);
  }
}

namespace {

// A cache of other data with the same row count reads like any other: checks what is cheap to
// check on a sample of rows. Each row lists itself (or a copy of itself) first, and the listed
// distances are the features' cosine distances (to float rounding: bf16 products are re-ranked
// in fp32).
// `kept`: the feature row of each graph row when the cache holds the distinct rows only.
void check_cache_matches(const RunPlan& plan, const Matrix& x, const KnnGraph& g, const std::vector<int64_t>* kept) {
  auto feature_row = [&](int64_t r) { return x.row(kept ? (*kept)[static_cast<size_t>(r)] : r); };
  constexpr int64_t kRowsChecked = 256;
  constexpr double kTolerance = 1e-3;
  const int64_t step = std::max<int64_t>(1, g.n / kRowsChecked);
  for (int64_t i = 0; i < g.n; i += step) {
    for (int a = 0; a < g.k; ++a) {
      const int32_t j = g.nbr_row(i)[a];
      if (j < 0) break;
      double dot = 0;
      const float *xi = feature_row(i), *xj = feature_row(j);
      for (int64_t c = 0; c < x.cols; ++c) dot += double(xi[c]) * xj[c];
      const double listed = g.dist_row(i)[a];
      FC_CHECK(std::fabs(listed - (1 - dot)) <= kTolerance,
               "kNN cache " << plan.knn_cache << " does not belong to features " << plan.features << ": it lists row " << j
                            << " at distance " << listed << " from row " << i << ", the features put it at " << 1 - dot
                            << " (rebuild it with --reload)");
      FC_CHECK(a > 0 || listed <= kTolerance, "kNN cache " << plan.knn_cache << " does not belong to features "
                                                          << plan.features << ": row " << i << " is not first in its own list"
                                                          << " (rebuild it with --reload)");
    }
  }
}

}  // namespace

KnnGraph knn_graph_for(const RunPlan& plan, const Matrix& x, const DuplicateGroups* copies) {
  const KnnOptions& o = plan.knn;
  const int64_t distinct = copies ? static_cast<int64_t>(copies->kept.size()) : x.rows;
  std::error_code ec;
  if (!plan.knn_cache.empty() && fs::exists(plan.knn_cache, ec) && !plan.rebuild_knn) {
    StageTimer t("load kNN cache " + plan.knn_cache);
    // A cache holds every row (facecluster knn, the release) or, written by a run that merged
    // copies, the distinct rows only.
    KnnGraph g = read_knn_npz(plan.knn_cache, distinct != x.rows ? -1 : x.rows);
    FC_CHECK(g.n == x.rows || g.n == distinct, "kNN cache " << plan.knn_cache << " has " << g.n << " rows but features "
                                                            << plan.features << " have " << x.rows << " (" << distinct
                                                            << " distinct)");
    FC_CHECK(g.k >= std::min<int64_t>(o.k, g.n), "kNN cache " << plan.knn_cache << " has k = " << g.k << " but " << o.k
                                                               << " neighbours are configured (rebuild with --reload)");
    if (g.k > o.k) {  // keep the first k columns
      KnnGraph cut(g.n, o.k);
      for (int64_t i = 0; i < g.n; ++i) {
        std::copy(g.nbr_row(i), g.nbr_row(i) + o.k, cut.nbr_row(i));
        std::copy(g.dist_row(i), g.dist_row(i) + o.k, cut.dist_row(i));
      }
      g = std::move(cut);
    }
    if (plan.normalize) check_cache_matches(plan, x, g, g.n == x.rows ? nullptr : &copies->kept);
    if (copies && g.n != distinct) g = reduce_graph(g, *copies);
    return g;
  }
  KnnGraph g = copies ? build_knn(kept_rows(x, *copies), o) : build_knn(x, o);
  if (!plan.knn_cache.empty()) {
    const fs::path parent = fs::path(plan.knn_cache).parent_path();
    if (!parent.empty()) make_folders(parent.string(), "folder of the kNN cache (--knn)");
    StageTimer t("write kNN cache " + plan.knn_cache);
    write_knn_npz(plan.knn_cache, g);
  }
  return g;
}

namespace {

// The copies among the rows (identical rows first, then rows the graph finds within
// kDuplicateDistance) and the graph of the distinct rows.
KnnGraph distinct_graph(const RunPlan& plan, const Matrix& x, DuplicateGroups& copies) {
  copies = identical_rows(x);
  KnnGraph g = knn_graph_for(plan, x, copies.any() ? &copies : nullptr);
  DuplicateGroups merged = merge_near_duplicates(copies, g);
  if (merged.kept.size() != copies.kept.size()) {
    copies = std::move(merged);
    StageTimer t("kNN graph of the distinct faces");
    g = build_knn(kept_rows(x, copies), plan.knn);
  }
  return g;
}

DuplicateGroups all_distinct(int64_t n) {
  DuplicateGroups d;
  d.row_of.resize(static_cast<size_t>(n));
  std::iota(d.row_of.begin(), d.row_of.end(), 0);
  d.kept = d.row_of;
  return d;
}

}  // namespace

ClusterReport run_pipeline(const RunPlan& plan, const PipelineInput& in, const SimilarityStage& similarity) {
  FC_CHECK(in.features || in.graph, "the pipeline needs features or a kNN graph");
  DuplicateGroups copies;
  KnnGraph g;
  if (in.graph) {
    validate_graph(*in.graph, "kNN graph");
    copies = merge_near_duplicates(all_distinct(in.graph->n), *in.graph);
    g = copies.any() ? reduce_graph(*in.graph, copies) : *in.graph;
  } else {
    g = distinct_graph(plan, *in.features, copies);
  }
  if (similarity) {
    FC_CHECK(in.features, "the learned similarity needs the features, not only a kNN graph");
    g = copies.any() ? similarity(kept_rows(*in.features, copies), g) : similarity(*in.features, g);
  }
  ClusterReport r = cluster_graph(plan, std::move(g), in.labels, copies.any() ? &copies : nullptr);
  if (copies.any())
    r.decisions.push_back(std::to_string(copies.copies()) + " of " + std::to_string(copies.row_of.size()) +
                          " faces are copies of another (identical, or within " + copy_distance_text() +
                          "): each was clustered once and its copies share its label");
  if (in.labels) {
    StageTimer t("hard-cluster bins");
    r.true_sizes = class_sizes(*in.labels);
    r.size_bins = evaluate_by_size(r.labels, *in.labels, plan.bins);
    if (in.features) r.sparsity_bins = evaluate_by_sparsity(r.labels, *in.labels, *in.features, plan.bins);
  }
  return r;
}

ClusterReport run_pipeline(const RunPlan& plan, const PipelineInput& in) {
  return run_pipeline(plan, in, model_stage(plan, in.features ? in.features->cols : 0));
}

SplitData read_split(const RunPlan& plan) {
  FC_CHECK(!plan.features.empty(), "the plan names no feature file");
  SplitData s;
  {
    StageTimer t("read " + plan.features);
    s.x = read_features(plan.features, plan.feature_dim);
    prepare_features(plan, s.x);
  }
  s.labels = read_plan_labels(plan, s.x.rows);
  return s;
}

void prepare_features(const RunPlan& plan, Matrix& x, int64_t first_row) {
  if (plan.normalize) normalize_rows(x, plan.features, first_row);
  else check_finite_rows(x, plan.features, first_row);
}

Labels read_plan_labels(const RunPlan& plan, int64_t rows) {
  if (plan.labels.empty()) return {};
  Labels labels = read_labels(plan.labels);
  FC_CHECK(static_cast<int64_t>(labels.size()) == rows, "labels " << plan.labels << " have " << labels.size()
                                                                   << " rows but features " << plan.features << " have "
                                                                   << rows);
  return labels;
}

ClusterReport run_plan(const RunPlan& plan) {
  const SplitData split = read_split(plan);
  const Matrix& x = split.x;
  const Labels& gt = split.labels;
  PipelineInput in;
  in.features = &x;
  in.labels = gt.empty() ? nullptr : &gt;
  ClusterReport r = run_pipeline(plan, in);
  if (!plan.out_dir.empty()) {
    StageTimer t("write results to " + plan.out_dir);
    write_results(plan.out_dir, r, plan.create_out_parents);
  }
  if (!plan.state_dir.empty()) save_state(plan.state_dir, state_from_run(plan, x, r, in.labels), true);
  return r;
}

}  // namespace facecluster
