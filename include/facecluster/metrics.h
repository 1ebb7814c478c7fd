// Clustering scores with the field's common definitions (SPEC section 6). O(N) memory.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "facecluster/types.h"

namespace facecluster {

struct Scores {
  int64_t n = 0;
  int64_t true_clusters = 0, pred_clusters = 0;
  int64_t true_singletons = 0, pred_singletons = 0;
  double pairwise_p = 0, pairwise_r = 0, pairwise_f = 0;
  double bcubed_p = 0, bcubed_r = 0, bcubed_f = 0;
  double nmi = 0, ari = 0;
};

// The size of each class, in order of first appearance. Labels may be any int64 values.
std::vector<int64_t> class_sizes(const Labels& labels);

// pred and gt must have the same length (> 0). Labels may be any int64 values.
Scores evaluate(const Labels& pred, const Labels& gt);

// Hard-cluster view: true classes sorted by a key (size, or sparsity = 1 - mean pairwise
// cosine inside the class), split into `bins` groups of equal class count (the first bins take
// the remainder, like numpy.array_split), each group's rows scored on their own.
struct BinScores {
  std::string by;       // "size" or "sparsity"
  int bin = 0;          // 1-based
  int64_t classes = 0;  // true classes in the bin
  int64_t rows = 0;
  double key_min = 0, key_max = 0;  // range of the sort key inside the bin
  Scores scores;
};

// Bins by class size, ascending: bin 1 holds the smallest (hardest) identities.
std::vector<BinScores> evaluate_by_size(const Labels& pred, const Labels& gt, int bins = 5);
// Bins by class sparsity, ascending: the last bin holds the sparsest (hardest) identities.
// `features` must be L2-normalised rows aligned with the labels. Singleton classes have
// sparsity 0 (no spread can be measured).
std::vector<BinScores> evaluate_by_sparsity(const Labels& pred, const Labels& gt, const Matrix& features, int bins = 5);

// Per true class, in order of first appearance: its size and the mean cosine over its ordered
// pairs i != j, (|sum x|^2 - sum |x|^2) / (n (n - 1)), from unit rows (NaN for singletons).
struct ClassCosines {
  std::vector<int64_t> size;
  std::vector<double> mean_cosine;
  std::vector<int32_t> class_of_row;
};
ClassCosines class_mean_cosines(const Matrix& normalized, const Labels& labels);
// The same from the rows read block by block in order (read(first, count) gives rows first to
// first + count - 1): a file too large for memory, or a process that holds only a slice of it.
using RowBlocks = std::function<Matrix(int64_t first, int64_t count)>;
ClassCosines class_mean_cosines_by_blocks(const Labels& labels, int64_t cols, const RowBlocks& read);
// evaluate_by_sparsity with the class cosines already measured.
std::vector<BinScores> evaluate_by_sparsity(const Labels& pred, const Labels& gt, const ClassCosines& cc, int bins = 5);

// Human-readable table and JSON for one run.
std::string format_scores_table(const Scores& s);
std::string format_bins_table(const std::vector<BinScores>& bins);
std::string scores_to_json(const Scores& s);
std::string bins_to_json(const std::vector<BinScores>& bins);
// {"scores": {...}, "size_bins": [...], "sparsity_bins": [...]} (sparsity only when given):
// what `facecluster evaluate --json` prints and Python's evaluate() returns.
std::string evaluation_to_json(const Scores& s, const std::vector<BinScores>& size_bins,
                               const std::vector<BinScores>& sparsity_bins);

}  // namespace facecluster
