// The clustering pipeline, carried out as a RunPlan says (plan.h):
//   features -> kNN graph -> [learned similarity] -> [calibration] -> density, TPDi, parents
//   -> links -> labels at each tau -> scores and hard-cluster bins (with labels).
// The CLI and the Python module only read inputs, call these, and write or return the report.
#pragma once

#include <functional>

#include "facecluster/calibrate.h"
#include "facecluster/duplicates.h"
#include "facecluster/plan.h"
#include "facecluster/report.h"

namespace facecluster {

// The learned-similarity stage: re-scores a kNN graph (features normalised). The plan's model,
// when it names one, provides it; tools and tests may plug in their own.
using SimilarityStage = std::function<KnnGraph(const Matrix& normalized, const KnnGraph& g)>;
// Empty when the plan runs training-free; otherwise the model is loaded and checked against
// features of feature_dim columns (0: not known yet) now, before any kNN work.
SimilarityStage model_stage(const RunPlan& plan, int64_t feature_dim);
// The plan's model over the first `anchors` rows of g (all when < 0; see learned_graph).
KnnGraph plan_learned_graph(const RunPlan& plan, const Matrix& normalized, const KnnGraph& g, int64_t anchors = -1);

// What the caller already holds. features: L2-normalised rows (needed unless graph is given;
// also used for the sparsity bins). graph: a kNN graph to use instead of building one.
struct PipelineInput {
  const Matrix* features = nullptr;
  const KnnGraph* graph = nullptr;
  const Labels* labels = nullptr;
};

ClusterReport run_pipeline(const RunPlan& plan, const PipelineInput& in, const SimilarityStage& similarity);
ClusterReport run_pipeline(const RunPlan& plan, const PipelineInput& in);  // with model_stage(plan)

// The plan's features (normalised as it says) and labels (checked to match the rows).
struct SplitData {
  Matrix x;
  Labels labels;  // empty without a label file
};
SplitData read_split(const RunPlan& plan);
// Its two halves, for callers that read rows in slices (a distributed run): rows normalised as
// the plan says (else only checked for NaN/Inf and zero rows; first_row numbers them in
// messages), and the label file (empty without one) checked to have `rows` lines.
void prepare_features(const RunPlan& plan, Matrix& x, int64_t first_row = 0);
Labels read_plan_labels(const RunPlan& plan, int64_t rows);

// Reads the plan's files (features, labels, kNN cache), runs, and writes plan.out_dir.
ClusterReport run_plan(const RunPlan& plan);

// The plan's kNN graph of `normalized`: read from the cache when it exists (and is not to be
// rebuilt), else built and written to the cache. With `copies`, the graph of the distinct rows
// (copies.kept): built over them, or a cache of every row reduced to them (reduce_graph).
KnnGraph knn_graph_for(const RunPlan& plan, const Matrix& normalized, const DuplicateGroups* copies = nullptr);

// The graph stage and the cut on a graph whose distances are the ones to link by: calibration
// (plan.calibrate), density, TPDi, parents, then labels at each tau of the plan (or the stable
// tau), scored against gt when given.
// The report keeps the graph (report.graph); given by value, it is moved there, not copied.
ClusterReport cluster_graph(const RunPlan& plan, const KnnGraph& g, const Labels* gt = nullptr);
// With `copies`, g is the graph of the distinct rows (copies.kept) and gt, the labels, density
// and scores are over all rows: each copy takes its kept row's label.
ClusterReport cluster_graph(const RunPlan& plan, KnnGraph&& g, const Labels* gt = nullptr,
                            const DuplicateGroups* copies = nullptr);

// Its last step, on a report whose links are set: labels at each tau of the plan (or at the
// likelihood tau of the calibrated pairs), the sweep, and the labels returned (the best scored
// against gt when given, else the first).
void cut_and_score(const RunPlan& plan, const Calibration& cal, const Labels* gt, ClusterReport& r,
                   const DuplicateGroups* copies = nullptr);
// Its parts, for a run whose labels are made elsewhere (across processes): the taus to run (the
// plan's, or the likelihood tau over r.links, its note added to r.notes) ...
std::vector<double> taus_to_run(const RunPlan& plan, const Calibration& cal, ClusterReport& r);
// ... and one tau's labels added to r.sweep as entry `index`: clusters, scores against gt when
// given; r.labels keeps the best by plan.select_by (the first without gt).
void record_tau(const RunPlan& plan, size_t index, double tau, Labels&& labels, const Labels* gt, ClusterReport& r);

}  // namespace facecluster
