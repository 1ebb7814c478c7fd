#include "batch.h"

#include <algorithm>

#include "facecluster/error.h"

namespace facecluster::model {

void anchor_first_row(const KnnGraph& g, int64_t i, int k, int32_t* out) {
  const int32_t* row = g.nbr_row(i);
  out[0] = static_cast<int32_t>(i);
  int o = 1;
  for (int j = 0; j < g.k && o < k; ++j) {
    if (row[j] == i) continue;
    if (row[j] < 0) break;
    out[o++] = row[j];
  }
  for (; o < k; ++o) out[o] = -1;
}

Batch make_batch(const torch::Tensor& feats, const KnnGraph& g, const int64_t* anchors, int64_t count, int k,
                 const Labels* labels) {
  Batch b;
  b.ids = torch::empty({count, k}, torch::kInt64);
  auto* ids = b.ids.data_ptr<int64_t>();
  std::vector<int32_t> row(static_cast<size_t>(k));
  bool any_pad = false;
  for (int64_t r = 0; r < count; ++r) {
    anchor_first_row(g, anchors[r], k, row.data());
    for (int j = 0; j < k; ++j) {
      ids[r * k + j] = row[j];
      any_pad |= row[j] < 0;
    }
  }
  // The ids are gathered on the CPU; the batch lives where the features do.
  const torch::Device dev = feats.device();
  auto safe = b.ids.clamp_min(0).to(dev);
  b.x = feats.index_select(0, safe.flatten()).view({count, k, feats.size(1)});
  if (any_pad) {
    b.pad = b.ids.lt(0).to(dev);
    b.x = b.x.masked_fill(b.pad.unsqueeze(-1), 0.0);
  }
  if (labels) {
    b.target = torch::empty({count, k}, torch::kFloat32);
    auto* t = b.target.data_ptr<float>();
    for (int64_t r = 0; r < count; ++r) {
      const int64_t own = (*labels)[static_cast<size_t>(anchors[r])];
      for (int j = 0; j < k; ++j) {
        const int64_t id = ids[r * k + j];
        t[r * k + j] = id >= 0 && (*labels)[static_cast<size_t>(id)] == own ? 1.f : 0.f;
      }
    }
    b.target = b.target.to(dev);
  }
  return b;
}

torch::Tensor pair_loss(const torch::Tensor& logits, const Batch& b) {
  namespace F = torch::nn::functional;
  if (!b.pad.defined()) return F::binary_cross_entropy_with_logits(logits, b.target);
  auto per = F::binary_cross_entropy_with_logits(logits, b.target,
                                                 F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
  auto keep = b.pad.logical_not().to(per.dtype());
  return (per * keep).sum() / keep.sum().clamp_min(1.0);
}

PairCounts count_pairs(const torch::Tensor& logits, const Batch& b) {
  torch::NoGradGuard no_grad;
  const auto keep = b.pad.defined() ? b.pad.logical_not() : torch::ones_like(b.target, torch::kBool);
  const auto pred = logits.gt(0).logical_and(keep);
  const auto truth = b.target.gt(0.5).logical_and(keep);
  PairCounts c;
  c.pairs = keep.sum().item<int64_t>();
  c.correct = pred.eq(truth).logical_and(keep).sum().item<int64_t>();
  c.true_positive = pred.logical_and(truth).sum().item<int64_t>();
  c.predicted_positive = pred.sum().item<int64_t>();
  c.positive = truth.sum().item<int64_t>();
  return c;
}

void check_model_input(const ModelSpec& s, const Matrix& x, const KnnGraph& g, const std::string& what) {
  const std::string p = what.empty() ? "" : what + ": ";
  FC_CHECK(x.cols == s.in_dim, p << "the model reads " << s.in_dim << "-d features but these have " << x.cols
                                 << " dimensions");
  FC_CHECK(g.n == x.rows, p << "the kNN graph has " << g.n << " rows but the features have " << x.rows);
  FC_CHECK(g.k >= s.k || g.k >= g.n, p << "the model reads " << s.k << " neighbours per face but the kNN graph has k = "
                                       << g.k << " (build it with k >= " << s.k << ")");
}

torch::Tensor feature_tensor(const Matrix& x) {
  FC_CHECK(x.rows > 0 && x.cols > 0, "model: empty feature matrix");
  return torch::from_blob(const_cast<float*>(x.row(0)), {x.rows, x.cols}, torch::kFloat32);
}

}  // namespace facecluster::model
