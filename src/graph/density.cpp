#include <algorithm>
#include <cmath>

#include "facecluster/error.h"
#include "facecluster/graph.h"
#include "facecluster/log.h"
#include "omp_util.h"

namespace facecluster {
namespace {

// Incoming edges of the first k columns, grouped by target and ordered by source row, so that
// sums over sources run in a fixed order whatever the thread count.
struct Incoming {
  std::vector<int64_t> offset;  // n + 1
  std::vector<int32_t> src;
  std::vector<float> weight;
};

Incoming transpose(const KnnGraph& g, int k, const std::vector<float>& p, bool drop_self) {
  Incoming in;
  in.offset.assign(static_cast<size_t>(g.n) + 1, 0);
  for (int64_t i = 0; i < g.n; ++i) {
    const int32_t* nb = g.nbr_row(i);
    for (int j = 0; j < k; ++j)
      if (nb[j] >= 0 && !(drop_self && nb[j] == i)) ++in.offset[nb[j] + 1];
  }
  for (int64_t i = 0; i < g.n; ++i) in.offset[i + 1] += in.offset[i];
  in.src.resize(static_cast<size_t>(in.offset[g.n]));
  in.weight.resize(in.src.size());
  std::vector<int64_t> fill(in.offset.begin(), in.offset.end() - 1);
  for (int64_t i = 0; i < g.n; ++i) {
    const int32_t* nb = g.nbr_row(i);
    for (int j = 0; j < k; ++j) {
      if (nb[j] < 0 || (drop_self && nb[j] == i)) continue;
      const int64_t at = fill[nb[j]]++;
      in.src[at] = static_cast<int32_t>(i);
      in.weight[at] = p[i * k + j];
    }
  }
  return in;
}

int clamp_k(const KnnGraph& g, int k) {
  FC_CHECK(k >= 1, "NDDE k must be >= 1, got " << k);
  return std::min(k, g.k);
}

}  // namespace

std::vector<float> transition_probabilities(const KnnGraph& g, int k, double sigma, bool take_sqrt, int threads) {
  FC_CHECK(sigma > 0, "transition temperature sigma must be > 0, got " << sigma);
  k = std::min(k, g.k);
  std::vector<float> p(static_cast<size_t>(g.n * k), 0.f);
  const int nt = resolve_threads(threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (g.n > 2000)
  for (int64_t i = 0; i < g.n; ++i) {
    const int32_t* nb = g.nbr_row(i);
    const float* d = g.dist_row(i);
    float* out = p.data() + i * k;
    double sum = 0;
    for (int j = 0; j < k; ++j) {
      if (nb[j] < 0) continue;
      const double e = std::exp(-double(d[j]) / sigma);
      out[j] = static_cast<float>(e);
      sum += e;
    }
    const double inv = 1.0 / (sum + 1e-5);
    for (int j = 0; j < k; ++j) {
      const double v = double(out[j]) * inv;
      out[j] = static_cast<float>(take_sqrt ? std::sqrt(v) : v);
    }
  }
  return p;
}

std::vector<double> density_one_step(const KnnGraph& g, int k, double sigma, int threads) {
  k = clamp_k(g, k);
  const std::vector<float> p = transition_probabilities(g, k, sigma, false, threads);
  const Incoming in = transpose(g, k, p, false);
  std::vector<double> rho(static_cast<size_t>(g.n), 0.0);
  const int nt = resolve_threads(threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (g.n > 2000)
  for (int64_t j = 0; j < g.n; ++j) {
    double s = 0;
    for (int64_t e = in.offset[j]; e < in.offset[j + 1]; ++e) s += in.weight[e];
    rho[j] = s;
  }
  return rho;
}

std::vector<double> density_full(const KnnGraph& g, int k, double sigma, double d, double epsilon, int max_iter,
                                 int threads, int* iterations) {
  k = clamp_k(g, k);
  FC_CHECK(d >= 0 && d < 1, "full NDDE damping d must be in [0, 1), got " << d);
  FC_CHECK(epsilon > 0, "full NDDE epsilon must be > 0, got " << epsilon);
  FC_CHECK(max_iter >= 1, "full NDDE max_iter must be >= 1, got " << max_iter);
  // P is normalised with the diagonal in place, then the diagonal is zeroed (drop_self).
  const std::vector<float> p = transition_probabilities(g, k, sigma, false, threads);
  const Incoming in = transpose(g, k, p, true);
  std::vector<double> rho(static_cast<size_t>(g.n), 1.0 / double(g.n)), next(rho.size());
  const int nt = resolve_threads(threads);
  int it = 0;
  for (; it < max_iter; ++it) {
    check_interrupt();
    double change = 0;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(+ : change) if (g.n > 2000)
    for (int64_t j = 0; j < g.n; ++j) {
      double s = 0;
      for (int64_t e = in.offset[j]; e < in.offset[j + 1]; ++e) s += double(in.weight[e]) * rho[in.src[e]];
      next[j] = d * rho[j] + (1 - d) * s;
      change += std::fabs(next[j] - rho[j]);
    }
    rho.swap(next);
    if (change < epsilon) {
      ++it;
      break;
    }
  }
  if (iterations) *iterations = it;
  return rho;
}

std::vector<double> density_from_in_edges(std::vector<InEdge> edges, int64_t first_row, int64_t rows) {
  std::sort(edges.begin(), edges.end(),
            [](const InEdge& a, const InEdge& b) { return a.target < b.target || (a.target == b.target && a.source < b.source); });
  std::vector<double> rho(static_cast<size_t>(rows), 0.0);
  for (const InEdge& e : edges) {
    FC_CHECK(e.target >= first_row && e.target < first_row + rows,
             "internal: an in-edge to row " << e.target << " reached the holder of rows " << first_row << " to " << first_row + rows - 1);
    rho[static_cast<size_t>(e.target - first_row)] += e.weight;
  }
  return rho;
}

std::vector<double> compute_density(const KnnGraph& g, const GraphParams& p) {
  if (p.density == Density::OneStep) return density_one_step(g, p.ndde_k, p.ndde_sigma, p.threads);
  int iters = 0;
  auto rho = density_full(g, p.ndde_k, p.ndde_sigma, p.ndde_d, p.ndde_epsilon, p.ndde_max_iter, p.threads, &iters);
  if (iters >= p.ndde_max_iter) log_warn("full NDDE stopped at max_iter " + std::to_string(iters) + " before converging");
  return rho;
}

Density parse_density(const std::string& name) {
  if (name == "approximate_NDDe") return Density::OneStep;
  if (name == "NDDe") return Density::Full;
  FC_FAIL("unknown density " << quote_input(name) << "; expected approximate_NDDe or NDDe");
}

const char* density_name(Density d) { return d == Density::OneStep ? "approximate_NDDe" : "NDDe"; }

}  // namespace facecluster
