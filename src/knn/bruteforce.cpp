#include <algorithm>
#include <numeric>
#include <random>
#include <unordered_set>

#include "facecluster/error.h"
#include "facecluster/knn.h"

namespace facecluster {

KnnGraph brute_force_knn(const Matrix& x, int k, const std::vector<int64_t>& queries) {
  FC_CHECK(k >= 1, "k must be >= 1, got " << k);
  k = static_cast<int>(std::min<int64_t>(k, x.rows));
  std::vector<int64_t> q = queries;
  if (q.empty()) {
    q.resize(static_cast<size_t>(x.rows));
    std::iota(q.begin(), q.end(), 0);
  }
  KnnGraph g(static_cast<int64_t>(q.size()), k);
#pragma omp parallel for schedule(dynamic, 16) if (q.size() > 64)
  for (int64_t t = 0; t < static_cast<int64_t>(q.size()); ++t) {
    const float* a = x.row(q[t]);
    std::vector<std::pair<double, int64_t>> all(static_cast<size_t>(x.rows));
    for (int64_t j = 0; j < x.rows; ++j) {
      double dot = 0;
      const float* b = x.row(j);
      for (int64_t c = 0; c < x.cols; ++c) dot += double(a[c]) * b[c];
      all[j] = {1.0 - dot, j};
    }
    std::partial_sort(all.begin(), all.begin() + k, all.end());
    for (int j = 0; j < k; ++j) {
      g.nbr_row(t)[j] = static_cast<int32_t>(all[j].second);
      g.dist_row(t)[j] = static_cast<float>(std::max(0.0, all[j].first));
    }
  }
  return g;
}

double knn_recall(const Matrix& x, const KnnGraph& g, int64_t sample, uint64_t seed) {
  FC_CHECK(g.n == x.rows, "recall: graph has " << g.n << " rows, features " << x.rows);
  std::vector<int64_t> q(static_cast<size_t>(x.rows));
  std::iota(q.begin(), q.end(), 0);
  if (sample < x.rows) {
    std::mt19937_64 rng(seed);
    std::shuffle(q.begin(), q.end(), rng);
    q.resize(static_cast<size_t>(std::max<int64_t>(1, sample)));
  }
  const KnnGraph exact = brute_force_knn(x, g.k, q);
  // Ties at the k-th distance make several answers exact: a found neighbour counts when its
  // true distance is within the exact k-th distance.
  int64_t hit = 0, total = 0;
  for (size_t t = 0; t < q.size(); ++t) {
    const float kth = exact.dist_row(static_cast<int64_t>(t))[exact.k - 1];
    std::unordered_set<int32_t> truth(exact.nbr_row(static_cast<int64_t>(t)), exact.nbr_row(static_cast<int64_t>(t)) + exact.k);
    const int32_t* found = g.nbr_row(q[t]);
    for (int j = 0; j < exact.k; ++j) {
      if (found[j] < 0) continue;
      if (truth.count(found[j])) {
        ++hit;
      } else {
        double dot = 0;
        for (int64_t c = 0; c < x.cols; ++c) dot += double(x.row(q[t])[c]) * x.row(found[j])[c];
        if (1.0 - dot <= double(kth) + 1e-6) ++hit;
      }
    }
    total += exact.k;
  }
  return total ? double(hit) / double(total) : 1.0;
}

}  // namespace facecluster
