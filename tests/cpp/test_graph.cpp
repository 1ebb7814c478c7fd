#include <cmath>
#include <map>
#include <queue>
#include <set>

#include <cstring>

#include "facecluster/error.h"
#include "facecluster/graph.h"
#include "helpers.h"

using namespace facecluster;
using fctest::random_graph;

namespace {

// Dense N x N transition matrix over the first k entries of each row.
std::vector<std::vector<double>> dense_p(const KnnGraph& g, int k, double sigma) {
  std::vector<std::vector<double>> p(g.n, std::vector<double>(g.n, 0.0));
  for (int64_t i = 0; i < g.n; ++i) {
    double sum = 0;
    for (int j = 0; j < k; ++j) sum += std::exp(-g.dist_row(i)[j] / sigma);
    for (int j = 0; j < k; ++j) p[i][g.nbr_row(i)[j]] += std::exp(-g.dist_row(i)[j] / sigma) / (sum + 1e-5);
  }
  return p;
}

double ref_tpdi(const KnnGraph& g, double sigma, int64_t i, int64_t j) {
  auto q = [&](int64_t r) {
    std::map<int32_t, double> out;
    double sum = 0;
    for (int a = 0; a < g.k; ++a) sum += std::exp(-g.dist_row(r)[a] / sigma);
    for (int a = 0; a < g.k; ++a) out[g.nbr_row(r)[a]] = std::exp(-g.dist_row(r)[a] / sigma) / (sum + 1e-5);
    return out;
  };
  const auto qi = q(i), qj = q(j);
  double bc = 0;
  for (const auto& [l, v] : qi) {
    auto it = qj.find(l);
    if (it != qj.end()) bc += std::sqrt(v * it->second);
  }
  return 1 - bc;
}

// Components by breadth-first search over the kept edges, as sets of rows.
std::set<std::set<int64_t>> ref_components(int64_t n, const std::vector<std::pair<int64_t, int64_t>>& edges) {
  std::vector<std::vector<int64_t>> adj(n);
  for (auto [a, b] : edges) {
    adj[a].push_back(b);
    adj[b].push_back(a);
  }
  std::vector<bool> seen(n, false);
  std::set<std::set<int64_t>> out;
  for (int64_t s = 0; s < n; ++s) {
    if (seen[s]) continue;
    std::set<int64_t> comp;
    std::queue<int64_t> q;
    q.push(s);
    seen[s] = true;
    while (!q.empty()) {
      int64_t v = q.front();
      q.pop();
      comp.insert(v);
      for (int64_t w : adj[v])
        if (!seen[w]) seen[w] = true, q.push(w);
    }
    out.insert(comp);
  }
  return out;
}

std::set<std::set<int64_t>> as_sets(const Labels& labels) {
  std::map<int64_t, std::set<int64_t>> m;
  for (size_t i = 0; i < labels.size(); ++i) m[labels[i]].insert(static_cast<int64_t>(i));
  std::set<std::set<int64_t>> out;
  for (auto& [_, s] : m) out.insert(s);
  return out;
}

}  // namespace

TEST(Density, OneStepMatchesDenseReference) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const KnnGraph g = random_graph(40, 9, seed);
    const auto p = dense_p(g, 5, 0.5);
    const auto rho = density_one_step(g, 5, 0.5);
    for (int64_t j = 0; j < g.n; ++j) {
      double ref = 0;
      for (int64_t i = 0; i < g.n; ++i) ref += p[i][j];
      ASSERT_NEAR(rho[j], ref, 1e-6) << "seed " << seed << " row " << j;
    }
  }
}

TEST(Density, FullSparseIterationMatchesDenseIteration) {
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    const KnnGraph g = random_graph(30, 8, seed);
    auto p = dense_p(g, 8, 0.5);
    for (int64_t i = 0; i < g.n; ++i) p[i][i] = 0;  // zeroed after normalising
    std::vector<double> rho(g.n, 1.0 / g.n);
    int iters = 0;
    for (; iters < 1000;) {
      std::vector<double> next(g.n);
      double change = 0;
      for (int64_t j = 0; j < g.n; ++j) {
        double s = 0;
        for (int64_t i = 0; i < g.n; ++i) s += p[i][j] * rho[i];
        next[j] = 0.1 * rho[j] + 0.9 * s;
        change += std::fabs(next[j] - rho[j]);
      }
      rho = next;
      ++iters;
      if (change < 1e-4) break;
    }
    int sparse_iters = 0;
    const auto sparse = density_full(g, 8, 0.5, 0.1, 1e-4, 1000, 0, &sparse_iters);
    EXPECT_EQ(sparse_iters, iters);
    for (int64_t j = 0; j < g.n; ++j) ASSERT_NEAR(sparse[j], rho[j], 1e-7) << "seed " << seed;
  }
}

TEST(Tpdi, PairMatchesSetIntersection) {
  const KnnGraph g = random_graph(50, 10, 7);
  const auto sq = transition_probabilities(g, g.k, 0.3, true);
  for (int64_t i = 0; i < g.n; ++i)
    for (int a = 0; a < g.k; ++a) {
      const int64_t j = g.nbr_row(i)[a];
      ASSERT_NEAR(tpdi_pair(g, sq, i, j), ref_tpdi(g, 0.3, i, j), 1e-5);
    }
}

TEST(Parents, MatchReferenceWithTiesDuplicatesAndSelfNotFirst) {
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    const KnnGraph g = random_graph(60, 12, seed);
    for (bool use_tpdi : {true, false})
      for (int max_conn : {1, 3}) {
        GraphParams p;
        p.use_tpdi = use_tpdi;
        p.tpdi_sigma = 0.2;
        p.max_conn = max_conn;
        const auto rho = density_one_step(g, 5, 0.5);
        const Links links = select_parents(g, rho, p);
        for (int64_t i = 0; i < g.n; ++i) {
          std::vector<std::tuple<double, int, int32_t>> cand;  // (dist, rank, id)
          for (int a = 0; a < g.k; ++a) {
            const int32_t j = g.nbr_row(i)[a];
            if (j == i || rho[j] < rho[i]) continue;
            const double d = use_tpdi ? ref_tpdi(g, 0.2, i, j) : g.dist_row(i)[a];
            cand.emplace_back(static_cast<float>(d), a, j);
          }
          std::stable_sort(cand.begin(), cand.end());
          for (int c = 0; c < max_conn; ++c) {
            const int32_t got = links.parent[i * max_conn + c];
            if (c >= static_cast<int>(cand.size())) {
              ASSERT_EQ(got, -1);
              continue;
            }
            ASSERT_EQ(got, std::get<2>(cand[c])) << "seed " << seed << " row " << i << " tpdi " << use_tpdi;
            ASSERT_NEAR(links.dist[i * max_conn + c], std::get<0>(cand[c]), 1e-5);
          }
        }
      }
  }
}

TEST(Parents, DensityPeakHasNoParent) {
  const KnnGraph g = random_graph(40, 8, 3);
  std::vector<double> rho(40);
  for (int64_t i = 0; i < 40; ++i) rho[i] = 1.0 + 0.01 * double(i % 7);  // ties everywhere but the top
  const int64_t peak = 17;
  rho[peak] = 5.0;  // a unique maximum: no neighbour is at least as dense
  GraphParams p;
  p.max_conn = 2;
  const Links links = select_parents(g, rho, p);
  EXPECT_EQ(links.parent[peak * 2], -1);
  EXPECT_EQ(links.parent[peak * 2 + 1], -1);
  // Every other row has a parent that is at least as dense (each row has denser neighbours here
  // unless all its neighbours are less dense).
  int64_t with_parent = 0;
  for (int64_t i = 0; i < 40; ++i) {
    const int32_t par = links.parent[i * 2];
    if (par >= 0) {
      EXPECT_GE(rho[par], rho[i]);
      ++with_parent;
    }
  }
  EXPECT_GT(with_parent, 20);
}

TEST(Components, MatchBreadthFirstSearchAndRespectStrictTau) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const KnnGraph g = random_graph(80, 10, seed);
    GraphParams p;
    p.max_conn = 2;
    p.tpdi_sigma = 0.2;
    const auto rho = density_one_step(g, 5, 0.5);
    const Links links = select_parents(g, rho, p);
    for (double tau : {0.3, 0.6, 0.9, 1.0}) {
      std::vector<std::pair<int64_t, int64_t>> edges;
      for (int64_t e = 0; e < static_cast<int64_t>(links.parent.size()); ++e)
        if (links.parent[e] >= 0 && links.dist[e] < tau) edges.emplace_back(e / 2, links.parent[e]);
      const Labels labels = link_components(links, tau);
      ASSERT_EQ(as_sets(labels), ref_components(g.n, edges)) << "seed " << seed << " tau " << tau;
      EXPECT_EQ(labels[0], 0);  // labels numbered by first row
    }
  }
  Links l;
  l.parent = {1, -1, 1};
  l.dist = {0.25f, 1.f, 0.5f};
  EXPECT_EQ(link_components(l, 0.5), (Labels{0, 0, 1}));  // 0.5 < 0.5 is false
  EXPECT_THROW(link_components(l, 0.0), Error);
  EXPECT_THROW(link_components(l, 1.5), Error);
}

TEST(GraphStage, ResultsDoNotDependOnThreadCount) {
  const KnnGraph g = random_graph(3000, 20, 11, false);
  GraphParams p1, p2;
  p1.threads = 1;
  p2.threads = 2;
  const auto a = run_graph_stage(g, p1), b = run_graph_stage(g, p2);
  EXPECT_EQ(a.density, b.density);
  EXPECT_EQ(a.links.parent, b.links.parent);
  EXPECT_EQ(a.links.dist, b.links.dist);
  p1.density = p2.density = Density::Full;
  EXPECT_EQ(compute_density(g, p1), compute_density(g, p2));
}

TEST(GraphStage, RowsWhoseNeighboursAreAllFartherThanTauStayAlone) {
  KnnGraph g(3, 3);
  g.nbrs = {0, 1, 2, 1, 0, 2, 2, 0, 1};
  g.dists = {0.f, 1.5f, 1.6f, 0.f, 1.5f, 1.7f, 0.f, 1.6f, 1.7f};
  const auto r = run_graph_stage(g, GraphParams{});
  EXPECT_EQ(link_components(r.links, 0.7), (Labels{0, 1, 2}));
}

TEST(Validate, RejectsBadGraphs) {
  KnnGraph g(2, 2);
  g.nbrs = {0, 1, 1, 0};
  g.dists = {0.f, 0.2f, 0.f, 0.2f};
  EXPECT_NO_THROW(validate_graph(g, "g"));
  auto expect_msg = [](const KnnGraph& bad, const std::string& frag) {
    try {
      validate_graph(bad, "cache.npz");
      FAIL() << "accepted a bad graph, expected: " << frag;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(frag), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cache.npz"), std::string::npos);
    }
  };
  KnnGraph b = g;
  b.nbrs[1] = 2;
  expect_msg(b, "outside [0, 2)");
  b = g;
  b.dists[1] = std::nanf("");
  expect_msg(b, "NaN");
  b = g;
  b.dists[1] = -0.1f;
  expect_msg(b, "negative distance");
  b = g;
  b.dists[0] = 0.5f;
  expect_msg(b, "not sorted");
  b = g;
  b.nbrs = {-1, 1, 1, 0};
  expect_msg(b, "after a -1 padding");
  expect_msg(KnnGraph(), "empty");
}

TEST(Parents, RenumberedRowsGiveIdenticalLinks) {
  // The locality renumbering must not change a single bit: same parents, same TPDi values.
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    KnnGraph g = random_graph(3000, 24, seed, seed % 2 == 0);
    for (int64_t i = 0; i < g.n; i += 7) {  // some rows end in -1 padding (approximate kNN)
      g.nbr_row(i)[23] = -1;
      g.nbr_row(i)[22] = -1;
    }
    const auto rho = density_one_step(g, 10, 0.5);
    GraphParams input_order, renumbered;
    input_order.reorder_rows = false;
    input_order.max_conn = renumbered.max_conn = 1 + static_cast<int>(seed % 3);
    const Links a = select_parents(g, rho, input_order), b = select_parents(g, rho, renumbered);
    ASSERT_EQ(a.parent, b.parent) << "seed " << seed;
    ASSERT_EQ(0, std::memcmp(a.dist.data(), b.dist.data(), a.dist.size() * sizeof(float))) << "seed " << seed;
    // and both agree with the pairwise definition
    const auto sq = transition_probabilities(g, g.k, renumbered.tpdi_sigma, true);
    for (int64_t i = 0; i < g.n; i += 97)
      if (b.parent[i * b.max_conn] >= 0) {
        EXPECT_NEAR(b.dist[i * b.max_conn], tpdi_pair(g, sq, i, b.parent[i * b.max_conn]), 1e-6);
      }
  }
}

// A distributed run holds rows in parts; each part's in-edges, halo and links must give the
// whole graph's density and links bit for bit (ties, twins and self-not-first included).
TEST(GraphParts, PartsGiveTheWholeGraphsDensityAndLinks) {
  const KnnGraph g = fctest::random_graph(900, 12, 77);
  for (bool use_tpdi : {true, false}) {
    GraphParams p;
    p.use_tpdi = use_tpdi;
    p.max_conn = 2;
    p.ndde_k = 8;
    const std::vector<double> rho = density_one_step(g, p.ndde_k, p.ndde_sigma);
    const Links whole = select_parents(g, rho, p);
    const std::vector<float> sq = transition_probabilities(g, g.k, p.tpdi_sigma, true);
    for (int parts : {1, 2, 3, 7}) {
      for (int q = 0; q < parts; ++q) {
        const int64_t lo = g.n * q / parts, hi = g.n * (q + 1) / parts;
        KnnGraph own(hi - lo, g.k);
        std::copy(g.nbr_row(lo), g.nbr_row(hi), own.nbrs.begin());
        std::copy(g.dist_row(lo), g.dist_row(hi), own.dists.begin());
        // Density from the in-edges every part sends to the rows' holder.
        std::vector<InEdge> in;
        for (int r = 0; r < parts; ++r) {
          const int64_t a = g.n * r / parts, b = g.n * (r + 1) / parts;
          KnnGraph rows(b - a, g.k);
          std::copy(g.nbr_row(a), g.nbr_row(b), rows.nbrs.begin());
          std::copy(g.dist_row(a), g.dist_row(b), rows.dists.begin());
          const std::vector<float> pr = transition_probabilities(rows, p.ndde_k, p.ndde_sigma, false);
          for (int64_t i = 0; i < rows.n; ++i)
            for (int j = 0; j < p.ndde_k; ++j) {
              const int32_t t = rows.nbr_row(i)[j];
              if (t >= lo && t < hi) in.push_back({t, a + i, pr[static_cast<size_t>(i * p.ndde_k + j)]});
            }
        }
        std::reverse(in.begin(), in.end());  // arrival order must not matter
        const std::vector<double> own_rho = density_from_in_edges(in, lo, hi - lo);
        for (int64_t i = lo; i < hi; ++i) ASSERT_EQ(own_rho[static_cast<size_t>(i - lo)], rho[static_cast<size_t>(i)]) << i;
        HaloRows halo;
        halo.ids = halo_ids(own, lo);
        for (int64_t j : halo.ids) {
          ASSERT_TRUE(j < lo || j >= hi);
          halo.nbrs.insert(halo.nbrs.end(), g.nbr_row(j), g.nbr_row(j) + g.k);
          halo.sq.insert(halo.sq.end(), sq.begin() + j * g.k, sq.begin() + (j + 1) * g.k);
          halo.density.push_back(rho[static_cast<size_t>(j)]);
        }
        const std::vector<float> own_sq(sq.begin() + lo * g.k, sq.begin() + hi * g.k);
        const GraphPart part = make_graph_part(own, lo, use_tpdi ? own_sq : std::vector<float>{}, own_rho, halo);
        const Links got = select_parents_part(part, p);
        for (int64_t i = lo; i < hi; ++i)
          for (int c = 0; c < p.max_conn; ++c) {
            const size_t w = static_cast<size_t>(i * p.max_conn + c), o = static_cast<size_t>((i - lo) * p.max_conn + c);
            ASSERT_EQ(got.parent[o], whole.parent[w]) << "tpdi " << use_tpdi << " parts " << parts << " row " << i;
            ASSERT_EQ(got.dist[o], whole.dist[w]) << "tpdi " << use_tpdi << " parts " << parts << " row " << i;
          }
      }
    }
  }
}

// The graph stage of a grown graph (incremental.h): a few rows' lists replaced and rows added,
// the stage updated from the old one, against the whole stage of the new graph, bit for bit.
TEST(UpdateGraphStage, AGrownRandomGraphGetsTheWholeStagesValues) {
  for (const int changed_rows : {2, 300}) {  // a small part of the rows, then most of them
    const int64_t n0 = 2000, added = changed_rows == 2 ? 1 : 200;
    const int k = 4;
    const KnnGraph before = random_graph(n0, k, 71, true);
    KnnGraph after = random_graph(n0 + added, k, 72, true);
    std::vector<int64_t> changed;
    for (int64_t i = 0; i < n0; ++i) {
      if (i % (n0 / changed_rows) == 3) {
        changed.push_back(i);
        continue;
      }
      std::copy(before.nbr_row(i), before.nbr_row(i) + k, after.nbr_row(i));
      std::copy(before.dist_row(i), before.dist_row(i) + k, after.dist_row(i));
    }
    GraphParams p;
    p.ndde_k = k;
    p.max_conn = 2;
    GraphResult r = run_graph_stage(before, p);
    const std::vector<int64_t> recomputed = update_graph_stage(after, changed, p, r);
    const GraphResult whole = run_graph_stage(after, p);
    EXPECT_EQ(r.density, whole.density);
    EXPECT_EQ(r.links.parent, whole.links.parent);
    EXPECT_EQ(r.links.dist, whole.links.dist);
    if (changed_rows == 2) {
      EXPECT_LT(recomputed.size(), static_cast<size_t>(n0 / 4));
    }
  }
}
