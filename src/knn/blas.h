// OpenBLAS for the kNN stage's own products (private to src/knn).
#pragma once

#include <cblas.h>

namespace facecluster {

// The kNN products run one per OpenMP thread: OpenBLAS single-threaded meanwhile (its own
// threads competing against OpenMP's made the blocked index's products 2.1x slower).
struct SingleThreadedBlas {
  int saved = openblas_get_num_threads();
  SingleThreadedBlas() { openblas_set_num_threads(1); }
  ~SingleThreadedBlas() { openblas_set_num_threads(saved); }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};

}  // namespace facecluster
