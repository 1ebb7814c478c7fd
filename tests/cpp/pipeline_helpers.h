// Test helpers that run the pipeline (kept apart from helpers.h, which the core tests use
// without faiss).
#pragma once

#include "facecluster/pipeline.h"

namespace fctest {

// The pipeline on features held in memory, training-free (no model stage).
inline facecluster::ClusterReport run_features(const facecluster::RunPlan& plan, const facecluster::Matrix& x,
                                               const facecluster::Labels* gt = nullptr) {
  facecluster::PipelineInput in;
  in.features = &x;
  in.labels = gt;
  return facecluster::run_pipeline(plan, in, facecluster::SimilarityStage{});
}

}  // namespace fctest
