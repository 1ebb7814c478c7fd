// The blocked kNN graph builder (private to src/knn; see blocked.cpp).
#pragma once

#include <cstdint>  // before faiss: its 1.7.3 headers miss it (GCC 13)

#include <faiss/Index.h>

#include <functional>

#include "facecluster/knn.h"

namespace facecluster {

// Writes one result row (inner products descending, ids; -1 = none) into the graph, self first.
using StoreRow = std::function<void(int64_t row, const float* ip, const faiss::Index::idx_t* ids, int k, int32_t* nbrs, float* dists)>;

int64_t blocked_list_count(int64_t n, int requested);
KnnGraph build_knn_blocked(const Matrix& normalized, const KnnOptions& o, int k, const StoreRow& store_row);

}  // namespace facecluster
