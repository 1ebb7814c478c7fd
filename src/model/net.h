// The pair-similarity transformer as a libtorch module (internal; see facecluster/model.h).
#pragma once

#include <torch/torch.h>

#include "facecluster/model.h"

namespace facecluster::model {

// Sine/cosine code of the k rank positions (k x d), added to query and key only.
torch::Tensor position_code(int k, int d);

// One encoder layer. Attention runs within each anchor's neighbour list (batch-first input).
// The projection shapes are those of a standard multi-head attention (in_proj 3d x d).
struct EncoderLayerImpl : torch::nn::Module {
  EncoderLayerImpl(const ModelSpec& s);
  // x: (B, k, d); pos: (k, d); pad: (B, k) bool, true where there is no neighbour (or undefined).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& pos, const torch::Tensor& pad);
  // The same function for inference (eval mode, no autograd), with fewer passes over memory:
  // q, k and v from one product, the position code's share of it (pos W_qk^T, k x 2d) and the
  // 1/sqrt(head dim) scale folded into the weights, in-place additions and activations. x is
  // overwritten.
  torch::Tensor forward_inference(torch::Tensor x, const torch::Tensor& pos, const torch::Tensor& pad);

  int d, heads;
  double dropout;
  bool gelu, pre_norm;
  torch::Tensor in_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr}, linear1{nullptr}, linear2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};

 private:
  torch::Tensor attend(const torch::Tensor& x, const torch::Tensor& pos, const torch::Tensor& pad);
  torch::Tensor feed_forward(const torch::Tensor& x);
};
TORCH_MODULE(EncoderLayer);

struct PairNetImpl : torch::nn::Module {
  explicit PairNetImpl(const ModelSpec& s);
  // x: (B, k, in_dim), position 0 = the anchor; pad: (B, k) bool or undefined.
  // Returns (B, k) logits: same person as the anchor.
  // Without autograd in eval mode it takes the layers' inference path (same values to float
  // rounding; Model.InferencePathEqualsTheTrainingGraph).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& pad = {});

  ModelSpec spec;
  torch::nn::Linear input_proj{nullptr};  // only when in_dim != d_model
  torch::nn::ModuleList layers;
  torch::nn::Linear head1{nullptr}, head2{nullptr}, head3{nullptr};
  torch::Tensor pos;  // buffer (k, d)
};
TORCH_MODULE(PairNet);

}  // namespace facecluster::model

namespace facecluster {
struct PairModel::Impl {
  model::PairNet net{nullptr};
  int epoch = 0;
};
}  // namespace facecluster
