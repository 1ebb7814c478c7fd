#include "runtime.h"

#include <omp.h>

#include "facecluster/error.h"
#include "facecluster/log.h"

namespace facecluster::model {

TorchThreads::TorchThreads(int threads) : previous_(torch::get_num_threads()) {
  torch::set_num_threads(threads > 0 ? threads : omp_get_max_threads());
}
TorchThreads::~TorchThreads() { torch::set_num_threads(previous_); }

bool bf16_is_fast() {
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

AutocastScope::AutocastScope(Precision precision) {
  if (precision == Precision::Bf16) {
    // libtorch's bf16 matrix products go through oneDNN only on AVX-512 CPUs; elsewhere its
    // fallback is ~30x slower than fp32 (measured on an AVX2 EPYC), so fp32 it is.
    if (!bf16_is_fast()) {
      static bool warned = false;
      if (!warned) log_warn("bf16 needs AVX-512 (bw, vl, dq) for fast matrix products; this CPU lacks it, using fp32");
      warned = true;
      return;
    }
    on_ = true;
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
}
AutocastScope::~AutocastScope() {
  if (!on_) return;
  at::autocast::set_cpu_enabled(false);
  at::autocast::clear_cache();
}

}  // namespace facecluster::model
