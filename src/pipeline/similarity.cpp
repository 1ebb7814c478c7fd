// The learned-similarity stage of the pipeline (libtorch behind model.h); without libtorch the
// plan refuses a model before any work, so this only has to say so defensively.
#include <memory>

#include "facecluster/error.h"
#include "facecluster/log.h"
#include "facecluster/pipeline.h"

namespace facecluster {

#ifdef FC_WITH_TORCH
namespace {

// Loads the plan's model and checks it against the features: a corrupt file, another
// architecture or another feature dimension is refused here, before any kNN work.
std::shared_ptr<const PairModel> load_plan_model(const RunPlan& plan, int64_t feature_dim) {
  const ModelSpec expected = ModelSpec::from_config(plan.model_args, feature_dim);
  auto m = std::make_shared<PairModel>(PairModel::load(plan.model, plan.check_model_arch ? &expected : nullptr));
  FC_CHECK(feature_dim <= 0 || m->spec().in_dim == feature_dim,
           "model " << plan.model << ": the model reads " << m->spec().in_dim << "-d features but these have "
                    << feature_dim << " dimensions");
  log_info("model " + plan.model + ": " + m->spec().describe() + ", trained " + std::to_string(m->epoch()) + " epoch(s)");
  return m;
}

}  // namespace
#endif

KnnGraph plan_learned_graph(const RunPlan& plan, const Matrix& x, const KnnGraph& g, int64_t anchors) {
#ifdef FC_WITH_TORCH
  return learned_graph(*load_plan_model(plan, x.cols), x, g, plan.inference, anchors);
#else
  (void)x, (void)g, (void)anchors;
  FC_FAIL("this build has no model support (built without libtorch); cannot use model " << plan.model);
#endif
}

SimilarityStage model_stage(const RunPlan& plan, int64_t feature_dim) {
  if (plan.model.empty()) return {};
#ifdef FC_WITH_TORCH
  std::shared_ptr<const PairModel> m = load_plan_model(plan, feature_dim);
  return [m, inference = plan.inference](const Matrix& x, const KnnGraph& g) { return learned_graph(*m, x, g, inference); };
#else
  (void)feature_dim;
  FC_FAIL("this build has no model support (built without libtorch); cannot use model " << plan.model);
#endif
}

}  // namespace facecluster
