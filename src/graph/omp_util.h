// OpenMP helpers for the graph stage (private).
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

#include <exception>
#include <mutex>

namespace facecluster {

inline int resolve_threads(int threads) {
#ifdef _OPENMP
  return threads > 0 ? threads : omp_get_max_threads();
#else
  (void)threads;
  return 1;
#endif
}

inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Captures the first exception thrown inside a parallel region and rethrows it on the caller.
class ExceptionCapture {
 public:
  template <class F>
  void run(F&& f) {
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
  bool failed() const { return static_cast<bool>(error_); }
  void rethrow() {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr error_;
};

}  // namespace facecluster
