// Graph stage (transition probabilities + NDDE + TPDi + parents + components) and the
// self-calibration on an N x 80 graph shaped like a face kNN graph. Reported as ratios to baselines of the same run:
//   time_vs_scan = stage time / time of one summing pass over the graph arrays;
//   mem_vs_graph = extra peak memory of the stage / bytes of the graph (neighbours + distances).
// FC_BENCH_N sets N (default 584013, MS1M part1_test); FC_BENCH_KNN reads a real .npz graph;
// FC_BENCH_SHUFFLE=1 renumbers the rows at random (real data comes in no useful order).
// reorder_vs_input = stage time with rows renumbered for locality / the same stage without.
#include <benchmark/benchmark.h>

#include "cpu_features.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>
#include <string>
#include <cstdlib>
#include <random>

#include "facecluster/calibrate.h"
#include "facecluster/graph.h"
#include "facecluster/io.h"
#include "facecluster/log.h"

using namespace facecluster;

namespace {

// Identities of ~68 faces: each row's neighbours are its identity's members (closer) and then
// random rows (farther), distances sorted ascending, self first.
KnnGraph face_like_graph(int64_t n, int k, uint64_t seed) {
  KnnGraph g(n, k);
  const int64_t block = 68;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    std::mt19937_64 rng(seed * 1315423911u + static_cast<uint64_t>(i));
    std::uniform_real_distribution<float> u(0.f, 1.f);
    const int64_t b0 = (i / block) * block, b1 = std::min(n, b0 + block);
    int32_t* nb = g.nbr_row(i);
    float* d = g.dist_row(i);
    nb[0] = static_cast<int32_t>(i);
    d[0] = 0.f;
    int j = 1;
    for (int64_t m = b0; m < b1 && j < k; ++m)
      if (m != i) nb[j] = static_cast<int32_t>(m), d[j++] = 0.2f + 0.4f * u(rng);
    while (j < k) nb[j] = static_cast<int32_t>(rng() % n), d[j++] = 0.7f + 0.3f * u(rng);
    std::vector<std::pair<float, int32_t>> row;
    for (int t = 1; t < k; ++t) row.emplace_back(d[t], nb[t]);
    std::sort(row.begin(), row.end());
    for (int t = 1; t < k; ++t) d[t] = row[t - 1].first, nb[t] = row[t - 1].second;
  }
  return g;
}

// The same graph with its rows renumbered by a random permutation.
KnnGraph shuffled(const KnnGraph& g, uint64_t seed) {
  std::vector<int32_t> perm(static_cast<size_t>(g.n));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937_64(seed));
  KnnGraph out(g.n, g.k);
  for (int64_t i = 0; i < g.n; ++i)
    for (int a = 0; a < g.k; ++a) {
      const int32_t v = g.nbr_row(i)[a];
      out.nbr_row(perm[i])[a] = v < 0 ? -1 : perm[v];
      out.dist_row(perm[i])[a] = g.dist_row(i)[a];
    }
  return out;
}

const KnnGraph& graph() {
  static KnnGraph g = [] {
    KnnGraph base;
    if (const char* path = std::getenv("FC_BENCH_KNN")) base = read_knn_npz(path);
    else {
      const char* env = std::getenv("FC_BENCH_N");
      base = face_like_graph(env ? std::atoll(env) : 584013, 80, 1);
    }
    const char* sh = std::getenv("FC_BENCH_SHUFFLE");
    return sh && std::string(sh) == "1" ? shuffled(base, 5) : base;
  }();
  return g;
}

std::map<std::pair<int64_t, int64_t>, double>& input_order_seconds() {
  static std::map<std::pair<int64_t, int64_t>, double> m;
  return m;
}

double scan_seconds(const KnnGraph& g) {
  const auto t0 = std::chrono::steady_clock::now();
  double s = 0;
  int64_t t = 0;
  for (size_t e = 0; e < g.dists.size(); ++e) s += g.dists[e], t += g.nbrs[e];
  benchmark::DoNotOptimize(s);
  benchmark::DoNotOptimize(t);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void BM_GraphStage(benchmark::State& state) {
  const KnnGraph& g = graph();
  set_log_level(std::getenv("FC_BENCH_LOG") ? 1 : 0);  // FC_BENCH_LOG=1: the stage lines
  GraphParams p;
  p.threads = static_cast<int>(state.range(0));
  p.density = state.range(1) ? Density::Full : Density::OneStep;
  p.reorder_rows = state.range(2) != 0;
  const double graph_mib = double(g.nbrs.size() * 4 + g.dists.size() * 4) / (1 << 20);
  const double scan = scan_seconds(g);
  const double before = peak_memory_mib();
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    GraphResult r = run_graph_stage(g, p);
    Labels l = link_components(r.links, 0.7);
    benchmark::DoNotOptimize(l.data());
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  state.counters["rows"] = double(g.n);
  state.counters["stage_s"] = seconds;
  state.counters["scan_s"] = scan;
  state.counters["time_vs_scan"] = seconds / scan;
  state.counters["graph_MiB"] = graph_mib;
  state.counters["peak_MiB"] = peak_memory_mib();
  state.counters["mem_vs_graph"] = std::max(0.0, peak_memory_mib() - before) / graph_mib;
  const auto key = std::make_pair(state.range(0), state.range(1));
  if (!p.reorder_rows) input_order_seconds()[key] = seconds;
  else if (input_order_seconds().count(key)) state.counters["reorder_vs_input"] = seconds / input_order_seconds()[key];
}

// Self-calibration (calibrate.h): the two-view mixture fit (similarity and shared neighbours),
// then the rescaled copy of the graph. time_vs_scan as above.
void BM_Calibration(benchmark::State& state) {
  const KnnGraph& g = graph();
  set_log_level(0);
  const double scan = scan_seconds(g);
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const Calibration c = calibrate_graph(g, GraphParams{});
    KnnGraph out = apply_calibration(g, c);
    benchmark::DoNotOptimize(out.dists.data());
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  state.counters["rows"] = double(g.n);
  state.counters["calibrate_s"] = seconds;
  state.counters["time_vs_scan"] = seconds / scan;
}

// The automatic cut (cut_evidence: the middle part's reading and share, then likelihood_tau) on
// the calibrated graph's links, against the graph stage that produced them (cut_vs_graph_stage),
// both measured here.
void BM_LikelihoodTau(benchmark::State& state) {
  const KnnGraph& g = graph();
  set_log_level(0);
  const Calibration c = calibrate_graph(g, GraphParams{});
  const KnnGraph cal = apply_calibration(g, c);
  const auto t0 = std::chrono::steady_clock::now();
  const GraphResult gr = run_graph_stage(cal, GraphParams{});
  const double stage = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double seconds = 0, tau = 0;
  for (auto _ : state) {
    const auto t1 = std::chrono::steady_clock::now();
    tau = likelihood_tau(cut_evidence(gr.links, c, nullptr), nullptr);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  }
  state.counters["pairs"] = double(c.pairs.size());
  state.counters["tau"] = tau;
  state.counters["cut_s"] = seconds;
  state.counters["cut_vs_graph_stage"] = seconds / stage;
}

}  // namespace

// args: threads, full NDDE (0/1), rows renumbered for locality (0/1); each reordered case
// follows its input-order twin so reorder_vs_input compares them. Peak memory is process-wide,
// so run one case per process (--benchmark_filter) for a clean mem_vs_graph.
BENCHMARK(BM_GraphStage)
    ->Args({2, 0, 0})->Args({2, 0, 1})->Args({1, 0, 0})->Args({1, 0, 1})->Args({2, 1, 1})
    ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_Calibration)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_LikelihoodTau)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK_MAIN();
