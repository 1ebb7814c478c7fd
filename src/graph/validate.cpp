#include <cmath>

#include "facecluster/error.h"
#include "facecluster/graph.h"

namespace facecluster {

void validate_graph(const KnnGraph& g, const std::string& source) {
  FC_CHECK(g.n > 0 && g.k > 0, source << ": empty kNN graph (N = " << g.n << ", k = " << g.k << ")");
  FC_CHECK(g.nbrs.size() == static_cast<size_t>(g.n * g.k) && g.dists.size() == g.nbrs.size(),
           source << ": kNN arrays hold " << g.nbrs.size() << " and " << g.dists.size() << " values, expected N x k = "
                  << g.n * g.k);
  for (int64_t i = 0; i < g.n; ++i) {
    const int32_t* nb = g.nbr_row(i);
    const float* d = g.dist_row(i);
    bool padding = false;
    for (int j = 0; j < g.k; ++j) {
      FC_CHECK(nb[j] >= -1 && nb[j] < g.n,
               source << ": row " << i << " neighbour " << j << " has index " << nb[j] << ", outside [0, " << g.n << ")");
      if (nb[j] < 0) {
        padding = true;
        continue;
      }
      FC_CHECK(!padding, source << ": row " << i << " has a neighbour after a -1 padding entry");
      // Cosine distances lie in [0, 2] (learned ones in [0, 1]); anything else is not a distance
      // this method can use, and infinities would break the histograms of the calibration.
      FC_CHECK(!std::isnan(d[j]), source << ": row " << i << " neighbour " << j << " has a NaN distance");
      FC_CHECK(d[j] >= 0, source << ": row " << i << " neighbour " << j << " has negative distance " << d[j]);
      FC_CHECK(std::isfinite(d[j]) && d[j] <= kMaxDistance,
               source << ": row " << i << " neighbour " << j << " has distance " << d[j]
                      << ", outside [0, 2] (distances are 1 - cosine similarity)");
      FC_CHECK(j == 0 || d[j] >= d[j - 1], source << ": row " << i << " is not sorted by distance (" << d[j - 1]
                                                  << " before " << d[j] << " at neighbour " << j << ")");
    }
  }
}

}  // namespace facecluster
