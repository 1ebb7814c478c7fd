// The data contract of facecluster, stated once:
// - features: row-major N x D float32 (any D >= 1), L2-normalised before any search;
// - a kNN graph: N rows of k neighbour ids (int32, -1 = no neighbour, only at the row's end)
//   and distances (float32, 1 - inner product for cosine, or a learned 1 - s), each row
//   sorted by distance ascending, the row itself normally first;
// - labels: one int64 per row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace facecluster {

struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> data;      // rows * cols, row-major (empty for a borrowed view)
  const float* view = nullptr;  // borrowed, read-only storage (e.g. a numpy array)

  Matrix() = default;
  Matrix(int64_t r, int64_t c) : rows(r), cols(c), data(static_cast<size_t>(r * c)) {}
  // A read-only view of memory owned by someone else; it must outlive the Matrix.
  static Matrix borrow(const float* p, int64_t r, int64_t c) {
    Matrix m;
    m.rows = r;
    m.cols = c;
    m.view = p;
    return m;
  }
  float* row(int64_t i) { return data.data() + i * cols; }  // owned storage only
  const float* row(int64_t i) const { return (view ? view : data.data()) + i * cols; }
};

struct KnnGraph {
  int64_t n = 0;
  int k = 0;
  std::vector<int32_t> nbrs;  // n * k
  std::vector<float> dists;   // n * k

  KnnGraph() = default;
  KnnGraph(int64_t n_, int k_)
      : n(n_), k(k_), nbrs(static_cast<size_t>(n_ * k_), -1), dists(static_cast<size_t>(n_ * k_), 0.f) {}
  const int32_t* nbr_row(int64_t i) const { return nbrs.data() + i * k; }
  const float* dist_row(int64_t i) const { return dists.data() + i * k; }
  int32_t* nbr_row(int64_t i) { return nbrs.data() + i * k; }
  float* dist_row(int64_t i) { return dists.data() + i * k; }
};

using Labels = std::vector<int64_t>;

// The largest distance a graph may hold: 1 - cosine similarity lies in [0, 2] (learned
// distances in [0, 1]); the margin absorbs float rounding.
constexpr float kMaxDistance = 2.001f;

}  // namespace facecluster
