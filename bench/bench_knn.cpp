// kNN build time and recall@80 against exact search, per index, on synthetic faces (D 256).
// Sizes from FC_BENCH_KNN_SIZES (default "100000"); e.g. FC_BENCH_KNN_SIZES=100000,584013.
// Ratio to the baseline of the same run: time_vs_flat = build time / exact (flat) build time at
// the same size (flat runs first; set FC_BENCH_FLAT_SECONDS to reuse a measured value).
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

void BM_Knn(benchmark::State& state, std::string index, int64_t n) {
  set_log_level(0);
  const Matrix& x = faces(n);
  KnnOptions o;
  o.k = 80;
  o.index = parse_knn_index(index);
  double seconds = 0;
  KnnGraph g;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    g = build_knn(x, o);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (index == "flat") flat_seconds()[n] = seconds;
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
    for (const char* index : {"flat", "ivf", "hnsw"}) {
      if (skip_flat && std::string(index) == "flat") continue;
      benchmark::RegisterBenchmark(("knn/" + std::string(index) + "/" + item).c_str(), BM_Knn, index, n)
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
