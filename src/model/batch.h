// Model inputs from a kNN graph: one anchor per sample, its neighbours in rank order with the
// anchor itself at position 0 (internal).
#pragma once

#include <torch/torch.h>

#include "facecluster/types.h"

namespace facecluster::model {

// The first k neighbour ids of row i with i moved (or inserted) to the front; -1 = no neighbour.
void anchor_first_row(const KnnGraph& g, int64_t i, int k, int32_t* out);

struct Batch {
  torch::Tensor ids;     // (B, k) int64, -1 where padded
  torch::Tensor x;       // (B, k, D) features (zeros where padded)
  torch::Tensor pad;     // (B, k) bool, true where padded; undefined when nothing is padded
  torch::Tensor target;  // (B, k) float, 1 = same label as the anchor (only with labels)
};

// feats: (N, D) float tensor of the normalised features.
Batch make_batch(const torch::Tensor& feats, const KnnGraph& g, const int64_t* anchors, int64_t count, int k,
                 const Labels* labels);

// Mean BCE-with-logits over the non-padded pairs.
torch::Tensor pair_loss(const torch::Tensor& logits, const Batch& b);

// A (N, D) tensor viewing the matrix's memory (no copy; the tensor must not be written).
torch::Tensor feature_tensor(const Matrix& x);

}  // namespace facecluster::model
