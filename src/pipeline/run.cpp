#include <algorithm>
#include <filesystem>

#include "facecluster/calibrate.h"
#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/log.h"
#include "facecluster/pipeline.h"

namespace facecluster {
namespace fs = std::filesystem;

ClusterReport cluster_graph(const RunPlan& plan, const KnnGraph& g, const Labels* gt) {
  return cluster_graph(plan, KnnGraph(g), gt);
}

ClusterReport cluster_graph(const RunPlan& plan, KnnGraph&& g, const Labels* gt) {
  FC_CHECK(!gt || static_cast<int64_t>(gt->size()) == g.n,
           "labels have " << (gt ? gt->size() : 0) << " rows but the graph has " << g.n);
  {
    StageTimer t("validate graph");
    validate_graph(g, "kNN graph");
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
    r.notes = cal.notes;
    for (const auto& line : r.notes) log_info("  auto: " + line);
  }
  GraphResult gr = run_graph_stage(g, r.params);
  r.density = std::move(gr.density);
  r.links = std::move(gr.links);
  if (plan.calibrate == CalibrateMode::Auto) g.dists = std::move(own_dists);
  r.graph = std::move(g);
  cut_and_score(plan, cal, gt, r);
  return r;
}

std::vector<double> taus_to_run(const RunPlan& plan, const Calibration& cal, ClusterReport& r) {
  if (!plan.tau_automatic) return plan.taus;
  FC_CHECK(plan.calibrate == CalibrateMode::Auto, "internal: automatic tau needs calibrated distances");
  std::string reading, note;
  StageTimer t("choose tau");
  const double tau = likelihood_tau(cut_evidence(r.links, cal, &reading), &note);
  for (const std::string& line : {reading, note}) {
    r.notes.push_back(line);
    log_info("  auto: " + line);
  }
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

void cut_and_score(const RunPlan& plan, const Calibration& cal, const Labels* gt, ClusterReport& r) {
  r.link_summary = summarize_links(r.links);
  const std::vector<double> taus = taus_to_run(plan, cal, r);
  StageTimer t("link + score " + std::to_string(taus.size()) + " tau value(s)");
  for (size_t i = 0; i < taus.size(); ++i) {
    check_interrupt();
    record_tau(plan, i, taus[i], link_components(r.links, taus[i]), gt, r);
  }
}

KnnGraph knn_graph_for(const RunPlan& plan, const Matrix& x) {
  const KnnOptions& o = plan.knn;
  std::error_code ec;
  if (!plan.knn_cache.empty() && fs::exists(plan.knn_cache, ec) && !plan.rebuild_knn) {
    StageTimer t("load kNN cache " + plan.knn_cache);
    KnnGraph g = read_knn_npz(plan.knn_cache, x.rows);
    FC_CHECK(g.k >= std::min<int64_t>(o.k, x.rows), "kNN cache " << plan.knn_cache << " has k = " << g.k << " but " << o.k
                                                                  << " neighbours are configured (rebuild with --reload)");
    if (g.k > o.k) {  // keep the first k columns
      KnnGraph cut(g.n, o.k);
      for (int64_t i = 0; i < g.n; ++i) {
        std::copy(g.nbr_row(i), g.nbr_row(i) + o.k, cut.nbr_row(i));
        std::copy(g.dist_row(i), g.dist_row(i) + o.k, cut.dist_row(i));
      }
      return cut;
    }
    return g;
  }
  KnnGraph g = build_knn(x, o);
  if (!plan.knn_cache.empty()) {
    const fs::path parent = fs::path(plan.knn_cache).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    StageTimer t("write kNN cache " + plan.knn_cache);
    write_knn_npz(plan.knn_cache, g);
  }
  return g;
}

ClusterReport run_pipeline(const RunPlan& plan, const PipelineInput& in, const SimilarityStage& similarity) {
  FC_CHECK(in.features || in.graph, "the pipeline needs features or a kNN graph");
  KnnGraph built;
  const KnnGraph* g = in.graph;
  if (!g) {
    built = knn_graph_for(plan, *in.features);
    g = &built;
  }
  if (similarity) {
    FC_CHECK(in.features, "the learned similarity needs the features, not only a kNN graph");
    built = similarity(*in.features, *g);
    g = &built;
  }
  ClusterReport r = cluster_graph(plan, g == &built ? std::move(built) : KnnGraph(*g), in.labels);
  if (in.labels) {
    StageTimer t("hard-cluster bins");
    r.true_sizes = class_sizes(*in.labels);
    r.size_bins = evaluate_by_size(r.labels, *in.labels, plan.bins);
    if (in.features) r.sparsity_bins = evaluate_by_sparsity(r.labels, *in.labels, *in.features, plan.bins);
  }
  return r;
}

ClusterReport run_pipeline(const RunPlan& plan, const PipelineInput& in) {
  return run_pipeline(plan, in, model_stage(plan));
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
  return r;
}

}  // namespace facecluster
