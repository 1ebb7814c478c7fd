// Duplicate faces: the same photo imported twice, copies, a cache of near-identical burst shots.
// A copy is no evidence of its own, yet copies fill each other's neighbour lists, share their
// density and tie every TPDi, so a clustering of a library with copies is not the clustering of
// its distinct faces. They are clustered once: every group of copies is one row (its first),
// and each copy takes that row's label (docs/duplicates.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "facecluster/types.h"

namespace facecluster {

// Two faces this close (cosine distance) are the same photo: about a 1% change to one pixel
// row's worth of signal; two photos of one person sit at 0.1 and more in the face models we
// know (same-person cosines around 0.6 and 0.94).
constexpr double kDuplicateDistance = 1e-4;
// "cosine distance <= 0.0001", for messages.
std::string copy_distance_text();

// Whether entry a of graph row i, the face with id `self`, is a copy of it.
inline bool lists_a_copy(const KnnGraph& g, int64_t i, int a, int64_t self) {
  const int32_t j = g.nbr_row(i)[a];
  return j >= 0 && j != self && g.dist_row(i)[a] <= kDuplicateDistance;
}

// How many rows of g (the faces first_row, first_row + 1, ...) list a copy of themselves.
int64_t rows_with_a_copy(const KnnGraph& g, int64_t first_row = 0);

struct DuplicateGroups {
  std::vector<int64_t> row_of;  // for every input row, the index of its group's row among `kept`
  std::vector<int64_t> kept;    // the first row of each group, ascending
  int64_t copies() const { return static_cast<int64_t>(row_of.size() - kept.size()); }
  bool any() const { return copies() > 0; }
};

// Groups of rows whose values are identical (after normalisation).
DuplicateGroups identical_rows(const Matrix& x);

// Joins groups whose kept rows are neighbours at distance <= kDuplicateDistance in `g` (a graph
// over the kept rows of `groups`), transitively. Returns groups over the original rows.
DuplicateGroups merge_near_duplicates(const DuplicateGroups& groups, const KnnGraph& g);

// The kept rows of x, in order.
Matrix kept_rows(const Matrix& x, const DuplicateGroups& groups);
Labels kept_labels(const Labels& labels, const DuplicateGroups& groups);

// A graph over all rows reduced to the kept rows: each kept row's list without copies (the
// first entry of each group stays, renumbered), padded with -1 at the end.
KnnGraph reduce_graph(const KnnGraph& g, const DuplicateGroups& groups);

// Per-row values of the kept rows spread back over every row.
template <class T>
std::vector<T> spread_to_rows(const std::vector<T>& kept_values, const DuplicateGroups& groups) {
  std::vector<T> out(groups.row_of.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = kept_values[static_cast<size_t>(groups.row_of[i])];
  return out;
}

}  // namespace facecluster
