// Inference settings shared by the model's batch loops (internal).
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "facecluster/model.h"

namespace facecluster::model {

// Thread count for torch's intra-op pool (0 = all cores); restores the previous count on exit.
class TorchThreads {
 public:
  explicit TorchThreads(int threads);
  ~TorchThreads();

 private:
  int previous_;
};

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
