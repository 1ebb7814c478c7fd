// Model inference and training throughput (2 threads on the dev box), reported as anchors per
// second and as a ratio to a baseline measured in the same run: a plain fp32 matrix product with
// the model's multiply-add count per anchor (flop_efficiency = baseline time / model time).
// FC_BENCH_MODEL_BATCHES sets the batches timed per case (default 4).
#include <benchmark/benchmark.h>

#include "cpu_features.h"

#include <chrono>
#include <cstdlib>

#include "../src/model/batch.h"
#include "../src/model/net.h"
#include "../src/model/runtime.h"
#include "facecluster/model.h"

using namespace facecluster;

namespace {

// Multiply-adds of one anchor's forward pass (default architecture, k 80, D 256).
double macs_per_anchor(const ModelSpec& s) {
  const double k = s.k, d = s.d_model;
  const double per_layer = k * (3 * d * d + d * d + 2 * d * s.dim_feedforward) + 2 * k * k * d;
  return s.num_layers * per_layer + (s.in_dim != s.d_model ? k * s.in_dim * d : 0) + d * 256 + k * (d * 256 + 256 * 128 + 128);
}

torch::Tensor random_input(int64_t b, const ModelSpec& s) {
  torch::manual_seed(1);
  return torch::nn::functional::normalize(torch::randn({b, s.k, s.in_dim}),
                                          torch::nn::functional::NormalizeFuncOptions().dim(2));
}

double gemm_seconds_per_anchor(const ModelSpec& s, int threads) {
  model::TorchThreads t(threads);
  const int64_t m = 4096, n = 1024;
  const int64_t kk = static_cast<int64_t>(macs_per_anchor(s) * 64 / (m * n));  // 64 anchors' worth
  auto a = torch::randn({m, kk}), b = torch::randn({kk, n});
  auto c = torch::mm(a, b);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) c = torch::mm(a, b);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 3 / 64;
}

int batches() {
  const char* e = std::getenv("FC_BENCH_MODEL_BATCHES");
  return e ? std::atoi(e) : 4;
}

void BM_Inference(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const bool bf16 = state.range(1) != 0;
  if (bf16 && !model::bf16_is_fast()) {
    state.SkipWithError("bf16 skipped: this CPU lacks AVX-512, libtorch's bf16 products would fall back to a slow path");
    for (auto _ : state) {
    }
    return;
  }
  ModelSpec s;
  model::TorchThreads threads(2);
  model::reuse_freed_memory();  // as the product's batch loops do
  model::PairNet net(s);
  net->eval();
  auto x = random_input(batch, s);
  const double base = gemm_seconds_per_anchor(s, 2);
  double seconds = 0;
  int64_t anchors = 0;
  for (auto _ : state) {
    torch::NoGradGuard ng;
    model::AutocastScope p(bf16 ? Precision::Bf16 : Precision::Fp32);
    net->forward(x);  // warm-up (allocations, weight casts)
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < batches(); ++i) benchmark::DoNotOptimize(net->forward(x));
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    anchors += batch * batches();
  }
  state.counters["anchors_per_second"] = anchors / seconds;
  state.counters["flop_efficiency"] = base / (seconds / anchors);
  if (bf16) {  // accuracy: learned distances against fp32 on the same input
    torch::NoGradGuard ng;
    auto ref = torch::sigmoid(-net->forward(x));
    model::AutocastScope p(Precision::Bf16);
    auto low = torch::sigmoid(-net->forward(x).to(torch::kFloat32));
    state.counters["max_abs_diff_vs_fp32"] = (ref - low).abs().max().item<double>();
  }
  state.SetLabel(std::string(bf16 ? "bf16" : "fp32") + ", 2 threads");
}

void BM_TrainStep(benchmark::State& state) {
  const int64_t batch = state.range(0);
  ModelSpec s;
  model::TorchThreads threads(2);
  model::reuse_freed_memory();  // as the product's batch loops do
  model::PairNet net(s);
  net->train();
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-4).weight_decay(5e-4));
  auto x = random_input(batch, s);
  auto target = torch::randint(0, 2, {batch, s.k}).to(torch::kFloat32);
  const double base = gemm_seconds_per_anchor(s, 2);
  double seconds = 0;
  int64_t anchors = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < batches(); ++i) {
      auto loss = torch::nn::functional::binary_cross_entropy_with_logits(net->forward(x), target);
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    anchors += batch * batches();
  }
  state.counters["anchors_per_second"] = anchors / seconds;
  state.counters["seconds_per_100K_anchors"] = seconds / anchors * 1e5;
  // Training is ~3x the forward pass's work.
  state.counters["flop_efficiency"] = 3 * base / (seconds / anchors);
  state.SetLabel("fp32, 2 threads");
}

}  // namespace

BENCHMARK(BM_Inference)->Args({512, 0})->Args({512, 1})->Args({128, 0})->Args({128, 1})->Args({64, 1})->Args({32, 0})->Args({32, 1})->Args({16, 1})->Iterations(1)->Unit(benchmark::kSecond);
BENCHMARK(BM_TrainStep)->Arg(512)->Iterations(1)->Unit(benchmark::kSecond);
BENCHMARK_MAIN();
