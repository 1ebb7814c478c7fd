// The learned-similarity stage of the pipeline (libtorch behind model.h); without libtorch the
// plan refuses a model before any work, so this only has to say so defensively.
#include "facecluster/error.h"
#include "facecluster/log.h"
#include "facecluster/pipeline.h"

namespace facecluster {

KnnGraph plan_learned_graph(const RunPlan& plan, const Matrix& x, const KnnGraph& g, int64_t anchors) {
#ifdef FC_WITH_TORCH
  const ModelSpec expected = ModelSpec::from_config(plan.model_args, x.cols);
  const PairModel m = PairModel::load(plan.model, plan.check_model_arch ? &expected : nullptr);
  log_info("model " + plan.model + ": " + m.spec().describe() + ", trained " + std::to_string(m.epoch()) + " epoch(s)");
  return learned_graph(m, x, g, plan.inference, anchors);
#else
  (void)x, (void)g, (void)anchors;
  FC_FAIL("this build has no model support (built without libtorch); cannot use model " << plan.model);
#endif
}

SimilarityStage model_stage(const RunPlan& plan) {
  if (plan.model.empty()) return {};
#ifndef FC_WITH_TORCH
  FC_FAIL("this build has no model support (built without libtorch); cannot use model " << plan.model);
#endif
  return [plan](const Matrix& x, const KnnGraph& g) { return plan_learned_graph(plan, x, g); };
}

}  // namespace facecluster
