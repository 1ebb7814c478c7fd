// The blocked kNN graph builder (private to src/knn; see blocked.cpp).
#pragma once

#include <cstdint>

#include "facecluster/knn.h"

namespace facecluster {

int64_t blocked_list_count(int64_t n, int requested);
KnnGraph build_knn_blocked(const Matrix& normalized, const KnnOptions& o, int k);

}  // namespace facecluster
