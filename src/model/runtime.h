// Inference settings shared by the model's batch loops (internal).
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "facecluster/model.h"

namespace facecluster::model {

// Thread count for torch's intra-op pool and for OpenBLAS, which runs libtorch's fp32 matrix
// products on Debian with its own threads (torch's count does not reach them: `--threads 1` ran
// inference on every core); 0 = all cores. Restores both counts on exit.
class TorchThreads {
 public:
  explicit TorchThreads(int threads);
  ~TorchThreads();

 private:
  int previous_, previous_blas_;
};

// Lets the model's batch loops reuse freed memory instead of mapping it afresh each batch (once
// per process; glibc only). libtorch's temporaries (batch x k x dim_feedforward floats: ~170 MB at
// batch 512) are above glibc's mmap threshold (at most 32 MB), so each was a new mapping whose
// pages were faulted in and cleared on every use: ~12% of fp32 inference in the kernel (perf),
// bench_model fp32 batch 512 426-447 -> 548-566 anchors/s. Blocks up to kHeapBlockMax now come
// from the heap, and freed heap memory is kept for the next batch; larger ones (the kNN and graph
// arrays at millions of rows) are still mapped and given back when freed.
constexpr size_t kHeapBlockMax = size_t{256} << 20;
void reuse_freed_memory();

// The torch device of a --device name (resolve_device's answer; cpu, cuda, cuda:N, auto).
torch::Device torch_device(const std::string& name);

// Whether this CPU runs libtorch's bf16 matrix products fast (oneDNN needs AVX-512).
bool bf16_is_fast();

// bf16 matrix products for the scope (CPU autocast) when precision is "bf16" and the CPU runs them fast
// (otherwise a one-time warning and fp32).
class AutocastScope {
 public:
  explicit AutocastScope(Precision precision, torch::Device device = torch::kCPU);
  ~AutocastScope();

 private:
  bool on_ = false, cuda_ = false;
};

}  // namespace facecluster::model
