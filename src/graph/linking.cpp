#include <algorithm>
#include <numeric>

#include "facecluster/error.h"
#include "facecluster/graph.h"
#include "facecluster/log.h"
#include "omp_util.h"

namespace facecluster {

double tpdi_pair(const KnnGraph& g, const std::vector<float>& sq, int64_t i, int64_t j) {
  const int32_t* ni = g.nbr_row(i);
  const int32_t* nj = g.nbr_row(j);
  double s = 0;
  for (int a = 0; a < g.k; ++a) {
    if (ni[a] < 0) continue;
    for (int b = 0; b < g.k; ++b)
      if (nj[b] == ni[a]) s += double(sq[i * g.k + a]) * sq[j * g.k + b];
  }
  return 1.0 - s;
}

namespace {

struct Candidate {
  float dist;
  int pos;
};

// The max_conn best candidates (smallest dist, ties by rank position) into parent/dist slots.
void keep_best(std::vector<Candidate>& cand, const int32_t* nb, int max_conn, int32_t* parent, float* dist) {
  const size_t m = std::min<size_t>(cand.size(), static_cast<size_t>(max_conn));
  std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(m), cand.end(),
                    [](const Candidate& a, const Candidate& b) { return a.dist < b.dist || (a.dist == b.dist && a.pos < b.pos); });
  for (size_t c = 0; c < m; ++c) {
    parent[c] = nb[cand[c].pos];
    dist[c] = cand[c].dist;
  }
}

}  // namespace

Links select_parents(const KnnGraph& g, const std::vector<double>& density, const GraphParams& p) {
  FC_CHECK(static_cast<int64_t>(density.size()) == g.n, "density has " << density.size() << " values for " << g.n << " rows");
  FC_CHECK(p.max_conn >= 1, "max_conn must be >= 1, got " << p.max_conn);
  FC_CHECK(g.k < 65535, "k = " << g.k << " is too large for the linking stage");
  Links links;
  links.max_conn = p.max_conn;
  links.parent.assign(static_cast<size_t>(g.n * p.max_conn), -1);
  links.dist.assign(links.parent.size(), 1.0f);
  std::vector<float> sq;
  if (p.use_tpdi) sq = transition_probabilities(g, g.k, p.tpdi_sigma, true, p.threads);
  const int nt = resolve_threads(p.threads);
  const int64_t k = g.k;
  ExceptionCapture errors;
#pragma omp parallel num_threads(nt) if (g.n > 2000)
  {
    // mark[x] = 1 + position of x in the current row i (0: not a neighbour of i).
    std::vector<uint16_t> mark(p.use_tpdi ? static_cast<size_t>(g.n) : 0, 0);
    std::vector<Candidate> cand;
    cand.reserve(static_cast<size_t>(k));
#pragma omp for schedule(dynamic, 256)
    for (int64_t i = 0; i < g.n; ++i) {
      if (errors.failed()) continue;
      errors.run([&] {
        if ((i & 4095) == 0 && thread_index() == 0) check_interrupt();
        const int32_t* ni = g.nbr_row(i);
        const float* di = g.dist_row(i);
        const double rho_i = density[i];
        cand.clear();
        if (p.use_tpdi) {
          const float* sqi = sq.data() + i * k;
          for (int64_t a = 0; a < k; ++a)
            if (ni[a] >= 0) mark[ni[a]] = static_cast<uint16_t>(a + 1);
          for (int a = 0; a < k; ++a) {
            const int32_t j = ni[a];
            if (j < 0 || j == i || density[j] < rho_i) continue;
            const int32_t* nj = g.nbr_row(j);
            const float* sqj = sq.data() + static_cast<int64_t>(j) * k;
            double s = 0;
            for (int64_t b = 0; b < k; ++b) {
              const int32_t x = nj[b];
              if (x >= 0 && mark[x]) s += double(sqi[mark[x] - 1]) * sqj[b];
            }
            cand.push_back({static_cast<float>(1.0 - s), a});
          }
          for (int64_t a = 0; a < k; ++a)
            if (ni[a] >= 0) mark[ni[a]] = 0;
        } else {
          for (int a = 0; a < k; ++a) {
            const int32_t j = ni[a];
            if (j < 0 || j == i || density[j] < rho_i) continue;
            cand.push_back({di[a], a});
            if (static_cast<int>(cand.size()) >= p.max_conn) break;  // rows are sorted by distance
          }
        }
        keep_best(cand, ni, p.max_conn, links.parent.data() + i * p.max_conn, links.dist.data() + i * p.max_conn);
      });
    }
  }
  errors.rethrow();
  return links;
}

Labels link_components(const Links& links, double tau) {
  FC_CHECK(tau > 0 && tau <= 1, "tau must be in (0, 1], got " << tau);
  const int64_t n = static_cast<int64_t>(links.parent.size()) / links.max_conn;
  std::vector<int64_t> root(static_cast<size_t>(n));
  std::iota(root.begin(), root.end(), 0);
  auto find = [&](int64_t x) {
    while (root[x] != x) {
      root[x] = root[root[x]];
      x = root[x];
    }
    return x;
  };
  for (int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < links.max_conn; ++c) {
      const int64_t e = i * links.max_conn + c;
      const int32_t j = links.parent[e];
      if (j < 0 || !(links.dist[e] < tau)) continue;
      int64_t a = find(i), b = find(j);
      if (a == b) continue;
      if (a < b) std::swap(a, b);
      root[a] = b;  // the smaller index becomes the root
    }
  }
  Labels labels(static_cast<size_t>(n));
  std::vector<int64_t> id(static_cast<size_t>(n), -1);
  int64_t next = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = find(i);
    if (id[r] < 0) id[r] = next++;
    labels[i] = id[r];
  }
  return labels;
}

GraphResult run_graph_stage(const KnnGraph& g, const GraphParams& p) {
  GraphResult r;
  {
    StageTimer t(std::string("density (") + density_name(p.density) + ")");
    r.density = compute_density(g, p);
  }
  {
    StageTimer t(p.use_tpdi ? "TPDi + parents" : "parents");
    r.links = select_parents(g, r.density, p);
  }
  return r;
}

}  // namespace facecluster
