#include "facecluster/duplicates.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "facecluster/error.h"

namespace facecluster {
namespace {

DuplicateGroups groups_from_roots(const std::vector<int64_t>& root) {
  DuplicateGroups d;
  d.row_of.resize(root.size());
  std::vector<int64_t> index_of(root.size(), -1);
  for (size_t i = 0; i < root.size(); ++i) {
    const size_t r = static_cast<size_t>(root[i]);
    if (index_of[r] < 0) {
      index_of[r] = static_cast<int64_t>(d.kept.size());
      d.kept.push_back(static_cast<int64_t>(i));
    }
    d.row_of[i] = index_of[r];
  }
  return d;
}

int64_t find_root(std::vector<int64_t>& parent, int64_t a) {
  while (parent[static_cast<size_t>(a)] != a) a = parent[static_cast<size_t>(a)] = parent[static_cast<size_t>(parent[static_cast<size_t>(a)])];
  return a;
}

}  // namespace

DuplicateGroups identical_rows(const Matrix& x) {
  const size_t bytes = static_cast<size_t>(x.cols) * sizeof(float);
  std::unordered_map<std::string_view, int64_t> first;
  first.reserve(static_cast<size_t>(x.rows));
  std::vector<int64_t> root(static_cast<size_t>(x.rows));
  for (int64_t i = 0; i < x.rows; ++i) {
    // Equal bytes are equal values (a -0.0 against a 0.0 is left to merge_near_duplicates).
    const std::string_view key(reinterpret_cast<const char*>(x.row(i)), bytes);
    root[static_cast<size_t>(i)] = first.emplace(key, i).first->second;
  }
  return groups_from_roots(root);
}

DuplicateGroups merge_near_duplicates(const DuplicateGroups& groups, const KnnGraph& g) {
  FC_CHECK(g.n == static_cast<int64_t>(groups.kept.size()),
           "internal: a graph of " << g.n << " rows for " << groups.kept.size() << " distinct rows");
  std::vector<int64_t> parent(static_cast<size_t>(g.n));
  std::iota(parent.begin(), parent.end(), 0);
  bool joined = false;
  for (int64_t i = 0; i < g.n; ++i)
    for (int a = 0; a < g.k; ++a) {
      if (!lists_a_copy(g, i, a, i)) continue;
      const int64_t ri = find_root(parent, i), rj = find_root(parent, g.nbr_row(i)[a]);
      if (ri != rj) parent[static_cast<size_t>(std::max(ri, rj))] = std::min(ri, rj), joined = true;
    }
  if (!joined) return groups;
  std::vector<int64_t> root(groups.row_of.size());
  for (size_t i = 0; i < root.size(); ++i)
    root[i] = groups.kept[static_cast<size_t>(find_root(parent, groups.row_of[i]))];
  return groups_from_roots(root);
}

std::string copy_distance_text() {
  char text[48];
  std::snprintf(text, sizeof text, "cosine distance <= %g", kDuplicateDistance);
  return text;
}

int64_t rows_with_a_copy(const KnnGraph& g, int64_t first_row) {
  int64_t rows = 0;
  for (int64_t i = 0; i < g.n; ++i)
    for (int a = 0; a < g.k; ++a)
      if (lists_a_copy(g, i, a, first_row + i)) {
        ++rows;
        break;
      }
  return rows;
}

Matrix kept_rows(const Matrix& x, const DuplicateGroups& groups) {
  Matrix out(static_cast<int64_t>(groups.kept.size()), x.cols);
  for (size_t r = 0; r < groups.kept.size(); ++r)
    std::memcpy(out.row(static_cast<int64_t>(r)), x.row(groups.kept[r]), static_cast<size_t>(x.cols) * sizeof(float));
  return out;
}

Labels kept_labels(const Labels& labels, const DuplicateGroups& groups) {
  Labels out(groups.kept.size());
  for (size_t r = 0; r < out.size(); ++r) out[r] = labels[static_cast<size_t>(groups.kept[r])];
  return out;
}

KnnGraph reduce_graph(const KnnGraph& g, const DuplicateGroups& groups) {
  FC_CHECK(g.n == static_cast<int64_t>(groups.row_of.size()),
           "internal: a graph of " << g.n << " rows for " << groups.row_of.size() << " rows");
  KnnGraph out(static_cast<int64_t>(groups.kept.size()), g.k);
  std::vector<uint8_t> seen(groups.kept.size(), 0);
  for (size_t r = 0; r < groups.kept.size(); ++r) {
    const int64_t i = groups.kept[r];
    int32_t* nb = out.nbr_row(static_cast<int64_t>(r));
    float* d = out.dist_row(static_cast<int64_t>(r));
    int filled = 0;
    for (int a = 0; a < g.k; ++a) {
      const int32_t j = g.nbr_row(i)[a];
      if (j < 0) break;
      const int64_t to = groups.row_of[static_cast<size_t>(j)];
      if (seen[static_cast<size_t>(to)]) continue;
      seen[static_cast<size_t>(to)] = 1;
      nb[filled] = static_cast<int32_t>(to);
      d[filled++] = to == static_cast<int64_t>(r) ? 0.f : g.dist_row(i)[a];
    }
    for (int a = 0; a < filled; ++a) seen[static_cast<size_t>(nb[a])] = 0;
    for (int a = filled; a < g.k; ++a) nb[a] = -1, d[a] = 0.f;
    // The row itself leads its list (a copy may have been listed before it, at distance 0).
    for (int a = 1; a < filled; ++a)
      if (nb[a] == static_cast<int32_t>(r)) {
        std::rotate(nb, nb + a, nb + a + 1);
        std::rotate(d, d + a, d + a + 1);
      }
  }
  return out;
}

}  // namespace facecluster
