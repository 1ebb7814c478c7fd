// The learned-similarity stage of the pipeline (libtorch behind model.h); without libtorch the
// plan refuses a model before any work, so this only has to say so defensively.
#include "facecluster/error.h"
#include "facecluster/log.h"
#include "facecluster/pipeline.h"

namespace facecluster {

SimilarityStage model_stage(const RunPlan& plan) {
  if (plan.model.empty()) return {};
#ifdef FC_WITH_TORCH
  return [plan](const Matrix& x, const KnnGraph& g) {
    const ModelSpec expected = ModelSpec::from_config(plan.model_args, x.cols);
    const PairModel m = PairModel::load(plan.model, plan.check_model_arch ? &expected : nullptr);
    log_info("model " + plan.model + ": " + m.spec().describe() + ", trained " + std::to_string(m.epoch()) + " epoch(s)");
    return learned_graph(m, x, g, plan.inference);
  };
#else
  FC_FAIL("this build has no model support (built without libtorch); cannot use model " << plan.model);
#endif
}

}  // namespace facecluster
