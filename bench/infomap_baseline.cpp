#include "infomap_baseline.h"

#include <igraph/igraph.h>

#include <stdexcept>
#include <unordered_map>

namespace facecluster::bench {

Labels knn_infomap(const KnnGraph& g, double min_sim, int trials) {
  igraph_vector_int_t edges;
  igraph_vector_t weights;
  igraph_vector_int_init(&edges, 0);
  igraph_vector_init(&weights, 0);
  for (int64_t i = 0; i < g.n; ++i) {
    const int32_t* nb = g.nbr_row(i);
    const float* d = g.dist_row(i);
    for (int j = 0; j < g.k; ++j) {
      if (nb[j] < 0 || nb[j] == i || 1.0 - d[j] <= min_sim) continue;
      igraph_vector_int_push_back(&edges, i);
      igraph_vector_int_push_back(&edges, nb[j]);
      igraph_vector_push_back(&weights, 1.0 - d[j]);
    }
  }
  igraph_rng_seed(igraph_rng_default(), 42);
  igraph_t graph;
  igraph_vector_int_t membership;
  igraph_vector_int_init(&membership, 0);
  igraph_real_t codelength = 0;
  if (igraph_create(&graph, &edges, g.n, IGRAPH_DIRECTED) != IGRAPH_SUCCESS ||
      igraph_community_infomap(&graph, &weights, nullptr, trials, &membership, &codelength) != IGRAPH_SUCCESS)
    throw std::runtime_error("igraph infomap failed");
  Labels out(static_cast<size_t>(g.n));
  std::unordered_map<igraph_integer_t, int64_t> renumber;
  for (int64_t i = 0; i < g.n; ++i) {
    auto [it, fresh] = renumber.emplace(VECTOR(membership)[i], static_cast<int64_t>(renumber.size()));
    out[static_cast<size_t>(i)] = it->second;
  }
  igraph_destroy(&graph);
  igraph_vector_int_destroy(&membership);
  igraph_vector_int_destroy(&edges);
  igraph_vector_destroy(&weights);
  return out;
}

}  // namespace facecluster::bench
