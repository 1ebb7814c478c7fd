// Batched inference: the learned graph and pair statistics.
#include <algorithm>
#include <numeric>

#include "batch.h"
#include "facecluster/error.h"
#include "facecluster/log.h"
#include "net.h"
#include "runtime.h"

namespace facecluster {

namespace {

constexpr int64_t kCpuBf16Anchors = 32;

void check_inputs(const PairModel& model, const Matrix& x, const KnnGraph& g, const InferenceOptions& o) {
  FC_CHECK(model.impl(), "model: not loaded");
  model::check_model_input(model.spec(), x, g, "");
  FC_CHECK(o.batch_size >= 1, "batch size must be >= 1, got " << o.batch_size);
}

// Runs fn(first_anchor, count, logits) over all anchors in batches, in eval mode, no autograd.
// Anchors are rows 0..n-1 of g.
template <typename Fn>
void for_each_batch(const PairModel& model, const Matrix& x, const KnnGraph& g, int64_t n, const Labels* labels,
                    const InferenceOptions& o, const std::string& what, Fn&& fn) {
  model::TorchThreads threads(o.threads);
  model::reuse_freed_memory();
  torch::NoGradGuard no_grad;
  auto& net = model.impl()->net;
  const bool was_training = net->is_training();
  net->eval();
  const torch::Device dev = model::torch_device(o.device);
  net->to(dev);
  const auto feats = model::feature_tensor(x).to(dev);  // no copy on the CPU
  const int k = model.spec().k;
  std::vector<int64_t> anchors(static_cast<size_t>(std::max<int64_t>(1, std::min<int64_t>(o.batch_size, n))));
  Progress progress(what, n);
  {
    model::AutocastScope autocast(o.precision, dev);
    for (int64_t first = 0; first < n; first += o.batch_size) {
      check_interrupt();
      const int64_t count = std::min<int64_t>(o.batch_size, n - first);
      std::iota(anchors.begin(), anchors.begin() + count, first);
      model::Batch b = model::make_batch(feats, g, anchors.data(), count, k, labels);
      // bf16 on the CPU: the net runs 32 anchors at a time. Each anchor's output depends on its own
      // list only, and libtorch's bf16 products run ~1.4x faster on blocks this small (2 AVX512-BF16
      // cores, bench_model: 1,130-1,220 anchors/s at 32 or 16, 810-840 at 64, 650 at 512).
      const int64_t step = o.precision == Precision::Bf16 && dev.is_cpu() ? kCpuBf16Anchors : count;
      std::vector<torch::Tensor> parts;
      for (int64_t a = 0; a < count; a += step) {
        const int64_t m = std::min(step, count - a);
        parts.push_back(net->forward(b.x.slice(0, a, a + m), b.pad.defined() ? b.pad.slice(0, a, a + m) : torch::Tensor()));
      }
      torch::Tensor logits = (parts.size() == 1 ? parts[0] : torch::cat(parts)).to(torch::kFloat32).to(torch::kCPU).contiguous();
      if (b.pad.defined()) b.pad = b.pad.to(torch::kCPU);  // what fn reads stays on the CPU
      if (b.target.defined()) b.target = b.target.to(torch::kCPU);
      fn(first, count, b, logits);
      progress.update(first + count);
    }
  }
  if (was_training) net->train();
}

}  // namespace

KnnGraph learned_graph(const PairModel& model, const Matrix& x, const KnnGraph& g, const InferenceOptions& o,
                       int64_t anchors) {
  check_inputs(model, x, g, o);
  const int64_t n = anchors < 0 ? g.n : anchors;
  FC_CHECK(n <= g.n, "internal: " << n << " anchors of a graph of " << g.n << " rows");
  const int k = model.spec().k;
  KnnGraph out(n, k);
  StageTimer timer("model inference (" + std::to_string(n) + " anchors, " + precision_name(o.precision) + ")");
  for_each_batch(model, x, g, n, nullptr, o, "model inference",
                 [&](int64_t first, int64_t count, const model::Batch& b, const torch::Tensor& logits) {
                   const auto* ids = b.ids.data_ptr<int64_t>();
                   // d = 1 - sigmoid(z) = sigmoid(-z), exact for confident pairs too.
                   const torch::Tensor dist = torch::sigmoid(-logits);
                   const float* d = dist.data_ptr<float>();
                   std::vector<int> order(static_cast<size_t>(k));
                   for (int64_t r = 0; r < count; ++r) {
                     const int64_t* row_ids = ids + r * k;
                     const float* row_d = d + r * k;
                     int valid = 0;
                     while (valid < k && row_ids[valid] >= 0) ++valid;
                     std::iota(order.begin(), order.begin() + valid, 0);
                     std::stable_sort(order.begin(), order.begin() + valid,
                                      [&](int a, int c) { return row_d[a] < row_d[c]; });
                     int32_t* on = out.nbr_row(first + r);
                     float* od = out.dist_row(first + r);
                     for (int j = 0; j < valid; ++j) {
                       on[j] = static_cast<int32_t>(row_ids[order[j]]);
                       od[j] = row_d[order[j]];
                     }
                     for (int j = valid; j < k; ++j) {
                       on[j] = -1;
                       od[j] = 1.f;
                     }
                   }
                 });
  return out;
}

PairStats evaluate_pairs(const PairModel& model, const Matrix& x, const KnnGraph& g, const Labels& labels,
                         const InferenceOptions& o) {
  check_inputs(model, x, g, o);
  FC_CHECK(static_cast<int64_t>(labels.size()) == g.n, "labels have " << labels.size() << " rows but the graph has " << g.n);
  double loss_sum = 0;
  model::PairCounts total;
  for_each_batch(model, x, g, g.n, &labels, o, "pair evaluation",
                 [&](int64_t, int64_t, const model::Batch& b, const torch::Tensor& logits) {
                   const model::PairCounts c = model::count_pairs(logits, b);
                   loss_sum += model::pair_loss(logits, b).item<double>() * static_cast<double>(c.pairs);
                   total.pairs += c.pairs;
                   total.correct += c.correct;
                   total.true_positive += c.true_positive;
                   total.predicted_positive += c.predicted_positive;
                   total.positive += c.positive;
                 });
  auto ratio = [](int64_t a, int64_t b) { return b ? static_cast<double>(a) / static_cast<double>(b) : 0.0; };
  PairStats s;
  s.pairs = total.pairs;
  s.loss = total.pairs ? loss_sum / static_cast<double>(total.pairs) : 0;
  s.accuracy = ratio(total.correct, total.pairs);
  s.precision = ratio(total.true_positive, total.predicted_positive);
  s.recall = ratio(total.true_positive, total.positive);
  return s;
}

}  // namespace facecluster
