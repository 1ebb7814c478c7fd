// Model inputs from a kNN graph: one anchor per sample, its neighbours in rank order with the
// anchor itself at position 0 (internal).
#pragma once

#include <torch/torch.h>

#include "facecluster/model.h"
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

// Counts over the non-padded pairs of a batch; a pair is predicted "same" when its logit > 0.
struct PairCounts {
  int64_t pairs = 0, correct = 0, true_positive = 0, predicted_positive = 0, positive = 0;
};
PairCounts count_pairs(const torch::Tensor& logits, const Batch& b);

// Throws unless the features and graph fit the model: D == in_dim, one graph row per feature
// row, and k neighbours per row (fewer only when the graph holds every row). `what` prefixes
// the message when not empty.
void check_model_input(const ModelSpec& spec, const Matrix& x, const KnnGraph& g, const std::string& what);

// A (N, D) tensor viewing the matrix's memory (no copy; the tensor must not be written).
torch::Tensor feature_tensor(const Matrix& x);

}  // namespace facecluster::model
