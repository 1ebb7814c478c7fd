// Result rows of the kNN searches (private to src/knn): a row of inner products and ids into a
// graph row, and the rule by which exact search breaks ties.
#pragma once

#include <cstdint>
#include <vector>

namespace facecluster {

// One result row of query i (inner products descending, ids; -1 = none) as a graph row: the
// query itself first, distances 1 - ip.
void store_row(int64_t i, const float* ip, const int64_t* ids, int k, int32_t* nb, float* d);

// Exact search breaks ties the same way however the rows are split (one index, shards on several
// processes, or libtorch's products): the search is asked for kTieMargin more than k, and the k
// kept are the best by (inner product, then smaller row id), listed in that order. faiss's own
// choice among values tied at its last place depends on the order it scanned the rows in; with
// the margin, a group of tied values at the k-th place is ordered by id unless it has more than
// kTieMargin members (exact duplicates of one embedding, 17 or more of them, at one query's
// k-th place).
constexpr int kTieMargin = 16;

// The inner product the k kept are ranked and stored by, recomputed for every candidate the
// search returns: a plain dot product whose rounding depends only on the two rows. The search's
// own values come from BLAS matrix products, and with some kernels (OpenBLAS's Haswell sgemm, the
// one an AVX2-only CPU gets) a product's last bit depends on where the two rows sit in the call,
// so a sharded search would not give the whole search's graph bit for bit.
float exact_inner_product(const float* a, const float* b, int64_t dim);

struct Scored {
  float ip;
  int64_t id;
};

// The best `keep` of pool (ids >= 0 only) by that rule, best first, into ip/ids (padded with -1).
void keep_best_scored(std::vector<Scored>& pool, int keep, float* ip, int64_t* ids);

}  // namespace facecluster
