// Checkpoint files (internal): a libtorch archive holding a format tag, the architecture, the
// epoch, the config used, the weights and, for training checkpoints, the optimizer and the
// random state. Written to a temporary file and renamed.
#pragma once

#include <torch/torch.h>

#include "facecluster/model.h"
#include "net.h"

namespace facecluster::model {

struct CheckpointExtras {
  const torch::optim::Optimizer* optimizer = nullptr;  // training checkpoints only
  std::string config_yaml;
  bool with_rng = false;
};

void save_checkpoint(const std::string& path, PairNet net, int epoch, const CheckpointExtras& extras);

struct LoadedCheckpoint {
  PairNet net{nullptr};
  int epoch = 0;
  std::string config_yaml;
  bool has_optimizer = false;
  torch::serialize::InputArchive archive;  // to read the optimizer and the random state from
};

// Throws Error naming the file when it is missing, truncated, not a facecluster model, or (with
// `expected`) of another architecture.
LoadedCheckpoint load_checkpoint(const std::string& path, const ModelSpec* expected);
// The optimizer state, moved to `device` (where the parameters already are).
void restore_optimizer(LoadedCheckpoint& ck, torch::optim::Optimizer& opt, const std::string& path,
                       torch::Device device = torch::kCPU);
void restore_rng(LoadedCheckpoint& ck, const std::string& path);

}  // namespace facecluster::model
