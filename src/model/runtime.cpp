#include "runtime.h"

#include <cblas.h>
#include <omp.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <torch/version.h>

#include "facecluster/error.h"
#include "facecluster/log.h"

namespace facecluster {

std::string resolve_device(const std::string& name) {
  const bool have_cuda = torch::cuda::is_available();
  const int64_t count = have_cuda ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  if (name == "auto") return have_cuda ? "cuda:0" : "cpu";
  if (name == "cpu") return "cpu";
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    int64_t index = 0;
    if (name != "cuda") {
      const std::string digits = name.substr(5);
      FC_CHECK(!digits.empty() && digits.size() < 4 && digits.find_first_not_of("0123456789") == std::string::npos,
               "unknown device " << quote_input(name) << "; expected cpu, cuda, cuda:N or auto");
      index = std::stoll(digits);
    }
    FC_CHECK(have_cuda, "device " << quote_input(name) << ": libtorch sees no CUDA GPU (this build's libtorch is CPU-only, "
                                                        "or no GPU is visible); use --device cpu or auto");
    FC_CHECK(index < count, "device " << quote_input(name) << ": only " << count << " CUDA GPU(s) are visible");
    return "cuda:" + std::to_string(index);
  }
  FC_FAIL("unknown device " << quote_input(name) << "; expected cpu, cuda, cuda:N or auto");
}

bool cuda_available() { return torch::cuda::is_available(); }

namespace model {

torch::Device torch_device(const std::string& name) { return torch::Device(resolve_device(name)); }

void reuse_freed_memory() {
#ifdef __GLIBC__
  static const bool set = [] {
    const bool ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(kHeapBlockMax)) == 1 &&
                    mallopt(M_TRIM_THRESHOLD, static_cast<int>(2 * kHeapBlockMax)) == 1;
    if (!ok) log_warn("could not raise the allocator's mmap threshold; inference runs slower");
    return ok;
  }();
  (void)set;
#endif
}

TorchThreads::TorchThreads(int threads) : previous_(torch::get_num_threads()), previous_blas_(openblas_get_num_threads()) {
  const int n = threads > 0 ? threads : omp_get_max_threads();
  torch::set_num_threads(n);
  openblas_set_num_threads(n);
}
TorchThreads::~TorchThreads() {
  torch::set_num_threads(previous_);
  openblas_set_num_threads(previous_blas_);
}

bool bf16_is_fast() {
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

namespace {

// libtorch 2.4 moved autocast to per-device calls and deprecated the CPU- and GPU-named ones.
void set_bf16_autocast(bool cuda, bool on) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  const auto type = cuda ? at::kCUDA : at::kCPU;
  if (on) at::autocast::set_autocast_dtype(type, at::kBFloat16);
  at::autocast::set_autocast_enabled(type, on);
#else
  if (cuda) {
    if (on) at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(on);
  } else {
    if (on) at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(on);
  }
#endif
}

}  // namespace

AutocastScope::AutocastScope(Precision precision, torch::Device device) {
  if (precision != Precision::Bf16) return;
  // Every CUDA GPU libtorch supports runs bf16 autocast. On the CPU, libtorch's bf16 matrix
  // products go through oneDNN only with AVX-512; elsewhere its fallback is ~30x slower than
  // fp32 (measured on an AVX2 EPYC), so fp32 it is.
  if (!device.is_cuda() && !bf16_is_fast()) {
    static bool warned = false;
    if (!warned) log_warn("bf16 needs AVX-512 (bw, vl, dq) for fast matrix products; this CPU lacks it, using fp32");
    warned = true;
    return;
  }
  on_ = true;
  cuda_ = device.is_cuda();
  set_bf16_autocast(cuda_, true);
}

AutocastScope::~AutocastScope() {
  if (!on_) return;
  set_bf16_autocast(cuda_, false);
  at::autocast::clear_cache();
}

}  // namespace model
}  // namespace facecluster
