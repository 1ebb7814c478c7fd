// The graph stage after rows were added and some lists changed (graph.h, update_graph_stage).
#include <algorithm>
#include <numeric>

#include "facecluster/error.h"
#include "facecluster/graph.h"
#include "facecluster/log.h"

namespace facecluster {
namespace {

// The share of rows to recompute above which the parents of all rows are recomputed in one pass
// (the values are the same): a part gathers its rows' lists without the locality order the whole
// pass uses, and measured at 200,000 rows it took 2.7-4.4 s for 99% of the rows against ~1 s.
constexpr double kWholePassShare = 0.25;

// The rows `ids` of g as a graph of their own (ids kept global): the per-row values computed
// from it (transition probabilities) are those of the whole graph.
KnnGraph rows_of(const KnnGraph& g, const std::vector<int64_t>& ids) {
  KnnGraph sub(static_cast<int64_t>(ids.size()), g.k);
#pragma omp parallel for schedule(static) if (ids.size() > 2000)
  for (size_t r = 0; r < ids.size(); ++r) {
    std::copy(g.nbr_row(ids[r]), g.nbr_row(ids[r]) + g.k, sub.nbr_row(static_cast<int64_t>(r)));
    std::copy(g.dist_row(ids[r]), g.dist_row(ids[r]) + g.k, sub.dist_row(static_cast<int64_t>(r)));
  }
  return sub;
}

}  // namespace

std::vector<int64_t> update_graph_stage(const KnnGraph& g, const std::vector<int64_t>& changed, const GraphParams& p,
                                        GraphResult& r) {
  const int64_t n = g.n, before = static_cast<int64_t>(r.density.size()), k = g.k;
  FC_CHECK(before <= n && static_cast<int64_t>(r.links.parent.size()) == before * r.links.max_conn &&
               r.links.max_conn == p.max_conn,
           "internal: graph-stage values of " << before << " rows for a graph of " << n);
  if (p.density == Density::Full) {  // every density moves with the diffusion: all of it again
    r = run_graph_stage(g, p);
    std::vector<int64_t> all(static_cast<size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    return all;
  }
  std::vector<double> density;
  {
    StageTimer t(std::string("density (") + density_name(p.density) + ")");
    density = compute_density(g, p);
  }
  StageTimer t(p.use_tpdi ? "TPDi + parents of the rows that can change" : "parents of the rows that can change");
  // A row's parents read its list and distances, its neighbours' density and (TPDi) their lists
  // and transition probabilities: they can change where the row or a neighbour changed.
  std::vector<char> moved(static_cast<size_t>(n), 0);
  for (int64_t i : changed) moved[static_cast<size_t>(i)] = 1;
  for (int64_t i = 0; i < n; ++i)
    if (i >= before || density[static_cast<size_t>(i)] != r.density[static_cast<size_t>(i)]) moved[static_cast<size_t>(i)] = 1;
  std::vector<int64_t> own;
  for (int64_t i = 0; i < n; ++i) {
    bool touched = moved[static_cast<size_t>(i)] != 0;
    for (int a = 0; a < k && !touched; ++a) {
      const int32_t j = g.nbr_row(i)[a];
      touched = j >= 0 && moved[static_cast<size_t>(j)];
    }
    if (touched) own.push_back(i);
  }
  // Most rows: the whole stage's pass (rows renumbered for locality) is faster than a part.
  if (static_cast<double>(own.size()) > kWholePassShare * static_cast<double>(n)) {
    r.links = select_parents(g, density, p);
    r.density = std::move(density);
    return own;
  }
  // The part: those rows, then the neighbours they name outside it.
  std::vector<int32_t> local(static_cast<size_t>(n), -1);
  GraphPart part;
  part.k = g.k;
  part.own = static_cast<int64_t>(own.size());
  part.global = own;
  for (size_t r2 = 0; r2 < own.size(); ++r2) local[static_cast<size_t>(own[r2])] = static_cast<int32_t>(r2);
  for (int64_t i : own)
    for (int a = 0; a < k; ++a) {
      const int32_t j = g.nbr_row(i)[a];
      if (j >= 0 && local[static_cast<size_t>(j)] < 0) {
        local[static_cast<size_t>(j)] = static_cast<int32_t>(part.global.size());
        part.global.push_back(j);
      }
    }
  const int64_t rows = part.rows();
  const KnnGraph sub = rows_of(g, part.global);
  part.nbrs.resize(static_cast<size_t>(rows * k));
  for (int64_t e = 0; e < rows * k; ++e) {
    const int32_t j = sub.nbrs[static_cast<size_t>(e)];
    const int32_t l = j < 0 ? -1 : local[static_cast<size_t>(j)];
    part.nbrs[static_cast<size_t>(e)] = l < 0 ? static_cast<int32_t>(rows) : l;
  }
  if (p.use_tpdi) part.sq = transition_probabilities(sub, g.k, p.tpdi_sigma, true, p.threads);
  part.dists.assign(sub.dists.begin(), sub.dists.begin() + part.own * k);
  part.density.resize(static_cast<size_t>(rows));
  for (int64_t l = 0; l < rows; ++l) part.density[static_cast<size_t>(l)] = density[static_cast<size_t>(part.global[l])];
  const Links fresh = select_parents_part(part, p);

  const int mc = p.max_conn;
  r.links.parent.resize(static_cast<size_t>(n * mc), -1);
  r.links.dist.resize(static_cast<size_t>(n * mc), 1.0f);
  for (size_t o = 0; o < own.size(); ++o) {
    std::copy(fresh.parent.begin() + static_cast<int64_t>(o) * mc, fresh.parent.begin() + static_cast<int64_t>(o + 1) * mc,
              r.links.parent.begin() + own[o] * mc);
    std::copy(fresh.dist.begin() + static_cast<int64_t>(o) * mc, fresh.dist.begin() + static_cast<int64_t>(o + 1) * mc,
              r.links.dist.begin() + own[o] * mc);
  }
  r.density = std::move(density);
  return own;
}

}  // namespace facecluster
