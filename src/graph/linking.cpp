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

namespace {

// The linking loop over working rows 0..count-1 of lists nl (working ids; `pad` marks padding
// and entries outside the rows held), sqrt(q) sq and density dl, each row of k entries.
// out_row(r) is where row r's parents go in `links`; id_of(r, a) the reported id of row r's
// a-th entry. With use_tpdi off, dist_of(r) gives row r's graph distances instead.
template <class OutRow, class IdOf, class DistOf>
void link_rows(const int32_t* nl, const float* sq, const double* dl, int64_t pad, int64_t count, int64_t k,
               const GraphParams& p, Links& links, OutRow out_row, IdOf id_of, DistOf dist_of) {
  const int nt = resolve_threads(p.threads);
  ExceptionCapture errors;
#pragma omp parallel num_threads(nt) if (count > 2000)
  {
    // mark[x] = 1 + position of x in the current row (0: not a neighbour of it); one extra
    // entry for the padding id. w[1 + a] = sqrt(q) of the row's a-th entry.
    std::vector<uint16_t> mark(p.use_tpdi ? static_cast<size_t>(pad + 1) : 0, 0);
    std::vector<float> w(static_cast<size_t>(k + 1), 0.f);
    std::vector<Candidate> cand;
    cand.reserve(static_cast<size_t>(k));
    std::vector<int32_t> ids(static_cast<size_t>(k));
#pragma omp for schedule(dynamic, 256)
    for (int64_t r = 0; r < count; ++r) {
      if (errors.failed()) continue;
      errors.run([&] {
        if ((r & 4095) == 0 && thread_index() == 0) check_interrupt();
        const int32_t* li = nl + r * k;
        const double rho_i = dl[r];
        cand.clear();
        if (p.use_tpdi) {
          // w[0] = 0 for the padding id and for entries outside the row: the inner loop has no
          // branch (adding 0 * sqrt(q) leaves the double sum bit for bit the same).
          const float* sqi = sq + r * k;
          w[0] = 0.f;
          for (int64_t a = 0; a < k; ++a) {
            w[a + 1] = sqi[a];
            if (li[a] < pad) mark[li[a]] = static_cast<uint16_t>(a + 1);
          }
          for (int a = 0; a < k; ++a) {
            const int32_t j = li[a];
            if (j >= pad || j == r || dl[j] < rho_i) continue;
            const int32_t* nj = nl + static_cast<int64_t>(j) * k;
            const float* sqj = sq + static_cast<int64_t>(j) * k;
            double s = 0;
            for (int64_t b = 0; b < k; ++b) s += double(w[mark[nj[b]]]) * sqj[b];
            cand.push_back({static_cast<float>(1.0 - s), a});
          }
          for (int64_t a = 0; a < k; ++a)
            if (li[a] < pad) mark[li[a]] = 0;
        } else {
          const float* di = dist_of(r);
          for (int a = 0; a < k; ++a) {
            const int32_t j = li[a];
            if (j >= pad || j == r || dl[j] < rho_i) continue;
            cand.push_back({di[a], a});
            if (static_cast<int>(cand.size()) >= p.max_conn) break;  // rows are sorted by distance
          }
        }
        for (int64_t a = 0; a < k; ++a) ids[a] = id_of(r, a);
        const int64_t out = out_row(r);
        keep_best(cand, ids.data(), p.max_conn, links.parent.data() + out * p.max_conn, links.dist.data() + out * p.max_conn);
      });
    }
  }
  errors.rethrow();
}

Links empty_links(int64_t rows, int max_conn) {
  FC_CHECK(max_conn >= 1, "max_conn must be >= 1, got " << max_conn);
  Links links;
  links.max_conn = max_conn;
  links.parent.assign(static_cast<size_t>(rows * max_conn), -1);
  links.dist.assign(links.parent.size(), 1.0f);
  return links;
}

}  // namespace

Links select_parents(const KnnGraph& g, const std::vector<double>& density, const GraphParams& p) {
  FC_CHECK(static_cast<int64_t>(density.size()) == g.n, "density has " << density.size() << " values for " << g.n << " rows");
  FC_CHECK(g.k < 65535, "k = " << g.k << " is too large for the linking stage");
  Links links = empty_links(g.n, p.max_conn);
  const int nt = resolve_threads(p.threads);
  const int64_t k = g.k;
  const int64_t n = g.n;
  if (!p.use_tpdi) {
    std::vector<int32_t> nl(g.nbrs.size());
    for (size_t e = 0; e < nl.size(); ++e) nl[e] = g.nbrs[e] < 0 ? static_cast<int32_t>(n) : g.nbrs[e];
    link_rows(nl.data(), nullptr, density.data(), n, n, k, p, links, [](int64_t r) { return r; },
              [&](int64_t r, int64_t a) { return g.nbr_row(r)[a]; }, [&](int64_t r) { return g.dist_row(r); });
    return links;
  }
  // TPDi reads, for each row, the neighbour lists of its neighbours and looks each entry up in
  // a per-thread mark array: on a graph in input order both are random accesses over the whole
  // graph. The rows are renumbered in locality_order() first (or kept in input order when
  // reorder_rows is off), and ids, lists, sqrt(q) and density copied once in that order, so
  // both mostly hit cache. Every sum runs over the same terms in the same order whatever the
  // numbering, so the values are bit for bit those of the input order; parents are reported in
  // input ids. Padding (-1) becomes the id n, whose mark stays 0.
  std::vector<float> sq_in = transition_probabilities(g, g.k, p.tpdi_sigma, true, p.threads);
  std::vector<int32_t> order;
  {
    StageTimer t(p.reorder_rows ? "renumber rows for locality" : "copy rows in input order");
    if (p.reorder_rows) {
      order = locality_order(g);
    } else {
      order.resize(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
    }
  }
  std::vector<int32_t> local(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) local[order[r]] = static_cast<int32_t>(r);
  // Copied one array at a time, each input freed before the next copy (n x k floats less at the peak).
  std::vector<float> sq(sq_in.size());
#pragma omp parallel for schedule(static) num_threads(nt) if (n > 2000)
  for (int64_t r = 0; r < n; ++r)
    std::copy(sq_in.begin() + order[r] * k, sq_in.begin() + (order[r] + 1) * k, sq.begin() + r * k);
  std::vector<float>().swap(sq_in);
  std::vector<int32_t> nl(g.nbrs.size());
  std::vector<double> dl(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) num_threads(nt) if (n > 2000)
  for (int64_t r = 0; r < n; ++r) {
    const int64_t i = order[r];
    const int32_t* ni = g.nbr_row(i);
    for (int64_t a = 0; a < k; ++a) nl[r * k + a] = ni[a] < 0 ? static_cast<int32_t>(n) : local[ni[a]];
    dl[r] = density[i];
  }
  link_rows(nl.data(), sq.data(), dl.data(), n, n, k, p, links, [&](int64_t r) { return int64_t{order[r]}; },
            [&](int64_t r, int64_t a) { return g.nbr_row(order[r])[a]; }, [](int64_t) { return static_cast<const float*>(nullptr); });
  return links;
}

Links select_parents_part(const GraphPart& part, const GraphParams& p) {
  const int64_t rows = part.rows(), k = part.k;
  FC_CHECK(k >= 1 && k < 65535, "k = " << k << " is not valid for the linking stage");
  FC_CHECK(rows < (int64_t{1} << 31) - 1, "a graph part of " << rows << " rows is too large");
  FC_CHECK(part.own >= 0 && part.own <= rows && static_cast<int64_t>(part.nbrs.size()) == rows * k &&
               static_cast<int64_t>(part.density.size()) == rows &&
               (!p.use_tpdi || static_cast<int64_t>(part.sq.size()) == rows * k) &&
               (p.use_tpdi || static_cast<int64_t>(part.dists.size()) >= part.own * k),
           "internal: inconsistent graph part");
  Links links = empty_links(part.own, p.max_conn);
  link_rows(part.nbrs.data(), part.sq.data(), part.density.data(), rows, part.own, k, p, links, [](int64_t r) { return r; },
            [&](int64_t r, int64_t a) {
              const int32_t j = part.nbrs[static_cast<size_t>(r * k + a)];
              return j >= rows ? int32_t{-1} : static_cast<int32_t>(part.global[static_cast<size_t>(j)]);
            },
            [&](int64_t r) { return part.dists.data() + r * k; });
  return links;
}

std::vector<int64_t> halo_ids(const KnnGraph& own, int64_t first_row) {
  std::vector<int64_t> ids;
  for (int32_t j : own.nbrs)
    if (j >= 0 && (j < first_row || j >= first_row + own.n)) ids.push_back(j);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

GraphPart make_graph_part(const KnnGraph& own, int64_t first_row, const std::vector<float>& own_sq,
                          const std::vector<double>& own_density, const HaloRows& halo) {
  const int64_t k = own.k, n_own = own.n, n_halo = static_cast<int64_t>(halo.ids.size());
  FC_CHECK(static_cast<int64_t>(own_density.size()) == n_own && static_cast<int64_t>(halo.nbrs.size()) == n_halo * k &&
               static_cast<int64_t>(halo.density.size()) == n_halo &&
               (own_sq.empty() || static_cast<int64_t>(own_sq.size()) == n_own * k) &&
               (own_sq.empty() || static_cast<int64_t>(halo.sq.size()) == n_halo * k),
           "internal: inconsistent rows for a graph part");
  GraphPart part;
  part.own = n_own;
  part.k = own.k;
  const int64_t rows = n_own + n_halo;
  part.global.resize(static_cast<size_t>(rows));
  std::iota(part.global.begin(), part.global.begin() + n_own, first_row);
  std::copy(halo.ids.begin(), halo.ids.end(), part.global.begin() + n_own);
  auto local_id = [&](int32_t j) -> int32_t {  // rows: padding or outside the part
    if (j < 0) return static_cast<int32_t>(rows);
    if (j >= first_row && j < first_row + n_own) return static_cast<int32_t>(j - first_row);
    const auto it = std::lower_bound(halo.ids.begin(), halo.ids.end(), int64_t{j});
    if (it == halo.ids.end() || *it != j) return static_cast<int32_t>(rows);
    return static_cast<int32_t>(n_own + (it - halo.ids.begin()));
  };
  part.nbrs.resize(static_cast<size_t>(rows * k));
#pragma omp parallel for schedule(static) if (rows > 2000)
  for (int64_t e = 0; e < n_own * k; ++e) part.nbrs[static_cast<size_t>(e)] = local_id(own.nbrs[static_cast<size_t>(e)]);
#pragma omp parallel for schedule(static) if (rows > 2000)
  for (int64_t e = 0; e < n_halo * k; ++e)
    part.nbrs[static_cast<size_t>(n_own * k + e)] = local_id(halo.nbrs[static_cast<size_t>(e)]);
  if (!own_sq.empty()) {
    part.sq = own_sq;
    part.sq.insert(part.sq.end(), halo.sq.begin(), halo.sq.end());
  }
  part.dists = own.dists;
  part.density = own_density;
  part.density.insert(part.density.end(), halo.density.begin(), halo.density.end());
  return part;
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
