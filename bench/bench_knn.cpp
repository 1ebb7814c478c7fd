// kNN build time and recall@80 against exact search, per index, on synthetic faces (D 256).
// Sizes from FC_BENCH_KNN_SIZES (default "100000"); e.g. FC_BENCH_KNN_SIZES=100000,584013.
// Ratio to the baseline of the same run: time_vs_flat = build time / exact (flat) build time at
// the same size (flat runs first; set FC_BENCH_FLAT_SECONDS to reuse a measured value). The
// blocked index runs with fp32 products and with bf16 products re-ranked in fp32 (where the CPU has
// AVX512-BF16 or AMX-BF16), both at probe 64: time_vs_fp32 = bf16 build time / fp32 build time;
// then with its defaults (blocked/auto: probes by the products).
#include <benchmark/benchmark.h>

#include "cpu_features.h"

#include <chrono>
#include <cstdlib>
#include <map>
#include <sstream>

#include "facecluster/knn.h"
#include "facecluster/log.h"
#include "facecluster/synth.h"

using namespace facecluster;

namespace {

const Matrix& faces(int64_t n) {
  static std::map<int64_t, Matrix> cache;
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  SynthOptions o;
  o.n = n;
  o.dim = 256;
  return cache[n] = make_synthetic(o).features;
}

std::map<int64_t, double>& flat_seconds() {
  static std::map<int64_t, double> m;
  return m;
}
std::map<int64_t, double>& blocked_fp32_seconds() {
  static std::map<int64_t, double> m;
  return m;
}

void BM_Knn(benchmark::State& state, std::string index, std::string precision, int64_t n) {
  set_log_level(0);
  KnnOptions o;
  o.k = 80;
  o.index = parse_knn_index(index);
  o.precision = parse_knn_precision(precision);
  if (o.precision == KnnPrecision::Bf16 && !knn_uses_bf16(o.precision)) {
    state.SkipWithError("no native bf16 products on this CPU (AVX512-BF16 or AMX-BF16) or build (oneDNN)");
    for (auto _ : state) {
    }
    return;
  }
  // fp32 vs bf16 at the same probes (the default probes differ by precision); "auto": the defaults.
  if (o.index == KnnIndex::Blocked && o.precision != KnnPrecision::Auto) o.blocked_probe = kBlockedProbeFp32;
  const Matrix& x = faces(n);
  double seconds = 0;
  KnnGraph g;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    g = build_knn(x, o);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (index == "flat") flat_seconds()[n] = seconds;
  if (index == "blocked" && o.precision == KnnPrecision::Fp32) blocked_fp32_seconds()[n] = seconds;
  if (index == "blocked" && o.precision == KnnPrecision::Bf16 && blocked_fp32_seconds().count(n))
    state.counters["time_vs_fp32"] = seconds / blocked_fp32_seconds()[n];
  if (const char* f = std::getenv("FC_BENCH_FLAT_SECONDS")) flat_seconds().emplace(n, std::atof(f));
  state.counters["rows"] = double(n);
  state.counters["build_s"] = seconds;
  state.counters["recall@80"] = index == "flat" ? 1.0 : knn_recall(x, g, 1000);
  if (flat_seconds().count(n)) state.counters["time_vs_flat"] = seconds / flat_seconds()[n];
}

int register_all() {
  const char* env = std::getenv("FC_BENCH_KNN_SIZES");
  std::stringstream ss(env ? env : "100000");
  std::string item;
  const bool skip_flat = std::getenv("FC_BENCH_FLAT_SECONDS") != nullptr;
  while (std::getline(ss, item, ',')) {
    const int64_t n = std::atoll(item.c_str());
    for (const char* c : {"flat", "ivf", "hnsw", "blocked/fp32", "blocked/bf16", "blocked/auto"}) {
      const std::string name = c, index = name.substr(0, name.find('/'));
      const std::string precision = name.find('/') == std::string::npos ? "fp32" : name.substr(name.find('/') + 1);
      if (skip_flat && index == "flat") continue;
      benchmark::RegisterBenchmark(("knn/" + name + "/" + item).c_str(), BM_Knn, index, precision, n)
          ->Iterations(1)
          ->Unit(benchmark::kSecond)
          ->UseRealTime();
    }
  }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
