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

namespace {

// A visiting order in which a row's neighbours mostly sit close to it: breadth-first over the
// kNN graph, neighbours in rank order. Face graphs are made of tight identities, so each
// identity's rows end up next to each other whatever order the input came in.
std::vector<int32_t> locality_order(const KnnGraph& g) {
  std::vector<int32_t> order;
  order.reserve(static_cast<size_t>(g.n));
  std::vector<uint8_t> seen(static_cast<size_t>(g.n), 0);
  for (int64_t s = 0; s < g.n; ++s) {
    if (seen[s]) continue;
    seen[s] = 1;
    size_t head = order.size();
    order.push_back(static_cast<int32_t>(s));
    while (head < order.size()) {
      const int32_t* nb = g.nbr_row(order[head++]);
      for (int a = 0; a < g.k; ++a) {
        const int32_t v = nb[a];
        if (v >= 0 && !seen[v]) {
          seen[v] = 1;
          order.push_back(v);
        }
      }
    }
  }
  return order;
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
  const int nt = resolve_threads(p.threads);
  const int64_t k = g.k;

  // TPDi reads, for each row, the neighbour lists of its neighbours and looks each entry up in
  // a per-thread mark array: on a graph in input order both are random accesses over the whole
  // graph. The rows are renumbered in locality_order() first (or kept in input order when
  // reorder_rows is off), and ids, lists, sqrt(q) and density copied once in that order, so
  // both mostly hit cache. Every sum runs over the same terms in the same order whatever the
  // numbering, so the values are bit for bit those of the input order; parents are reported in
  // input ids. Padding (-1) becomes the id n, whose mark stays 0.
  std::vector<float> sq;    // sqrt(q), rows in working order
  std::vector<int32_t> nl;  // neighbour lists in working ids, rows in working order
  std::vector<double> dl;   // density in working order
  std::vector<int32_t> order;
  const int64_t n = g.n;
  if (p.use_tpdi) {
    const std::vector<float> sq_in = transition_probabilities(g, g.k, p.tpdi_sigma, true, p.threads);
    StageTimer t(p.reorder_rows ? "renumber rows for locality" : "copy rows in input order");
    if (p.reorder_rows) {
      order = locality_order(g);
    } else {
      order.resize(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
    }
    std::vector<int32_t> local(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) local[order[r]] = static_cast<int32_t>(r);
    sq.resize(sq_in.size());
    nl.resize(g.nbrs.size());
    dl.resize(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) num_threads(nt) if (n > 2000)
    for (int64_t r = 0; r < n; ++r) {
      const int64_t i = order[r];
      const int32_t* ni = g.nbr_row(i);
      std::copy(sq_in.begin() + i * k, sq_in.begin() + (i + 1) * k, sq.begin() + r * k);
      for (int64_t a = 0; a < k; ++a) nl[r * k + a] = ni[a] < 0 ? static_cast<int32_t>(n) : local[ni[a]];
      dl[r] = density[i];
    }
  }
  ExceptionCapture errors;
#pragma omp parallel num_threads(nt) if (n > 2000)
  {
    // mark[x] = 1 + position of x in the current row (0: not a neighbour of it); one extra
    // entry for the padding id n of the local lists. w[1 + a] = sqrt(q) of the row's a-th entry.
    std::vector<uint16_t> mark(p.use_tpdi ? static_cast<size_t>(g.n + 1) : 0, 0);
    std::vector<float> w(static_cast<size_t>(k + 1), 0.f);
    std::vector<Candidate> cand;
    cand.reserve(static_cast<size_t>(k));
#pragma omp for schedule(dynamic, 256)
    for (int64_t r = 0; r < g.n; ++r) {
      if (errors.failed()) continue;
      errors.run([&] {
        if ((r & 4095) == 0 && thread_index() == 0) check_interrupt();
        const int64_t i = p.use_tpdi ? order[r] : r;  // the row in input ids
        const int32_t* ni = g.nbr_row(i);
        cand.clear();
        if (p.use_tpdi) {
          // w[0] = 0 for the padding id n and for entries outside the row: the inner loop has no
          // branch (adding 0 * sqrt(q) leaves the double sum bit for bit the same).
          const int32_t* li = nl.data() + r * k;
          const float* sqi = sq.data() + r * k;
          const double rho_i = dl[r];
          w[0] = 0.f;
          for (int64_t a = 0; a < k; ++a) {
            w[a + 1] = sqi[a];
            if (li[a] < n) mark[li[a]] = static_cast<uint16_t>(a + 1);
          }
          for (int a = 0; a < k; ++a) {
            const int32_t j = li[a];
            if (j >= n || j == r || dl[j] < rho_i) continue;
            const int32_t* nj = nl.data() + static_cast<int64_t>(j) * k;
            const float* sqj = sq.data() + static_cast<int64_t>(j) * k;
            double s = 0;
            for (int64_t b = 0; b < k; ++b) s += double(w[mark[nj[b]]]) * sqj[b];
            cand.push_back({static_cast<float>(1.0 - s), a});
          }
          for (int64_t a = 0; a < k; ++a)
            if (li[a] < n) mark[li[a]] = 0;
        } else {
          const float* di = g.dist_row(i);
          const double rho_i = density[i];
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
