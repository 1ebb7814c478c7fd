// kNN + Infomap, the baseline face-clustering tools use (build a kNN graph, keep the pairs with
// cosine similarity above min_sim, weight each directed edge by its similarity, find the
// modules of the map equation). Infomap itself is igraph's (libigraph-dev); bench code only.
#pragma once

#include "facecluster/types.h"

namespace facecluster::bench {

// The documented default of kNN + Infomap face clustering: k 80, min_sim 0.58.
constexpr double kInfomapDefaultMinSim = 0.58;

// Labels 0..C-1; faces without a kept edge are clusters of their own. Deterministic (seeded).
Labels knn_infomap(const KnnGraph& g, double min_sim, int trials = 1);

}  // namespace facecluster::bench
