// The blocked kNN graph (KnnIndex::Blocked): every row is a query, so the queries can be
// grouped. Rows are assigned to coarse lists (k-means centroids), and each row probes its
// `probe` nearest lists, as in IVF search; but instead of scanning lists vector by vector
// (memory-bound), each list is multiplied, in one matrix product, by all the rows that probe it,
// and every row keeps a heap of its k best across the lists it probes.
#include "blocked.h"
#include "rows.h"

#include <cstdint>  // before faiss: its 1.7.3 headers miss it (GCC 13)

#include <cblas.h>
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/utils/Heap.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "facecluster/error.h"
#include "facecluster/log.h"

namespace facecluster {

int64_t blocked_list_count(int64_t n, int requested) {
  if (requested > 0) return std::min<int64_t>(requested, n);
  // About 256 rows per list. Measured (docs/benchmarks.md): at the same share of pairs
  // multiplied, finer lists find more true neighbours (50K faces, 7% of pairs: 224 lists 0.961,
  // 448 lists 0.981), while a list's product stays large enough to run near GEMM speed.
  return std::max<int64_t>(1, std::llround(double(n) / 256.0));
}

namespace {

// Rows grouped by list (CSR): start[l] .. start[l + 1] of rows are the rows for which
// lists_of(i, emit) emits l, in row order. lists_of is called twice per row (count, then fill).
struct ByList {
  std::vector<int64_t> start;
  std::vector<int32_t> rows;
};
template <class ListsOf>
ByList group_by_list(int64_t n, int64_t nlist, const ListsOf& lists_of) {
  ByList g;
  g.start.assign(static_cast<size_t>(nlist + 1), 0);
  for (int64_t i = 0; i < n; ++i) lists_of(i, [&](int64_t l) { g.start[l + 1] += 1; });
  for (int64_t l = 0; l < nlist; ++l) g.start[l + 1] += g.start[l];
  g.rows.resize(static_cast<size_t>(g.start[nlist]));
  std::vector<int64_t> fill(g.start.begin(), g.start.end() - 1);
  for (int64_t i = 0; i < n; ++i) lists_of(i, [&](int64_t l) { g.rows[fill[l]++] = static_cast<int32_t>(i); });
  return g;
}

}  // namespace

// The refinement after the probes: kRefineRounds rounds, each voted by a row's kVoters nearest
// found neighbours (see step 2 below). Measured at 584K (docs/benchmarks.md): 8 voters and 2
// rounds 0.958, 4 rounds 0.960; 16 voters and 3 rounds 0.964; later rounds add fewer lists each.
constexpr int kRefineRounds = 3, kVoters = 16;

KnnGraph build_knn_blocked(const Matrix& x, const KnnOptions& o, int k) {
  const int64_t n = x.rows, d = x.cols;
  const int64_t nlist = blocked_list_count(n, o.ivf_nlist);
  const int probe = static_cast<int>(std::min<int64_t>(std::max(1, o.blocked_probe), nlist));

  // 1. Centroids, trained on a sample.
  faiss::IndexFlatIP quantizer(static_cast<int>(d));
  {
    StageTimer t("blocked: k-means (" + std::to_string(nlist) + " lists)");
    faiss::ClusteringParameters cp;
    // A rough k-means is enough: the refinement below finds what coarser lists miss (584K:
    // 10 iterations on 128 points per list took 37 s, 5 on 64 take 9 s; docs/benchmarks.md).
    cp.niter = 5;
    cp.max_points_per_centroid = 64;
    cp.seed = static_cast<int>(o.seed);
    cp.spherical = true;
    faiss::Clustering km(static_cast<int>(d), static_cast<size_t>(nlist), cp);
    km.train(static_cast<faiss::Index::idx_t>(n), x.row(0), quantizer);
  }
  // 2. Each row's `probe` nearest centroids: the lists it is compared with. Row and list ids
  // are held as int32 from here on (graph rows are int32 anyway): at 5.21M faces the id arrays
  // are ~half the builder's memory.
  std::vector<int32_t> near(static_cast<size_t>(n * probe));
  {
    StageTimer t("blocked: assign rows");
    const int64_t chunk = 65536;
    std::vector<float> sim(static_cast<size_t>(chunk * probe));
    std::vector<faiss::Index::idx_t> found(static_cast<size_t>(chunk * probe));
    for (int64_t s = 0; s < n; s += chunk) {
      check_interrupt();
      const int64_t m = std::min<int64_t>(chunk, n - s);
      quantizer.search(m, x.row(s), probe, sim.data(), found.data());
      std::transform(found.begin(), found.begin() + m * probe, near.begin() + s * probe,
                     [](faiss::Index::idx_t l) { return static_cast<int32_t>(l); });
    }
  }
  // A list's members are the rows whose nearest centroid (home list) it is; its queries are the
  // rows that probe it (about probe x its size).
  auto home = [&](int64_t i) { return static_cast<int64_t>(near[i * probe]); };
  const ByList members = group_by_list(n, nlist, [&](int64_t i, auto emit) { emit(home(i)); });
  ByList queries = group_by_list(n, nlist, [&](int64_t i, auto emit) {
    for (int p = 0; p < probe; ++p)
      if (near[i * probe + p] >= 0) emit(near[i * probe + p]);
  });
  // The refinement (step 4) reads each row's probed lists and home list from `near`.
  const int rounds = o.blocked_refine > 0 && probe < nlist ? kRefineRounds : 0;
  if (rounds == 0) std::vector<int32_t>().swap(near);

  // 3. Per list: its members in one block, the rows that probe it in another, one product,
  // and each of those rows keeps its k best so far (a heap per row across the lists).
  // The heaps live in the graph's own arrays (inner products in dists, ids in nbrs) and become
  // its rows at the end: no second n x k copy.
  using Heap = faiss::CMin<float, int32_t>;
  KnnGraph g(n, k);
  float* const heap_val = g.dists.data();
  int32_t* const heap_id = g.nbrs.data();
  const int nt = o.threads > 0 ? o.threads : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t i = 0; i < n; ++i) faiss::heap_heapify<Heap>(static_cast<size_t>(k), heap_val + i * k, heap_id + i * k);
  // The products run one per OpenMP thread (see below): OpenBLAS single-threaded meanwhile.
  struct BlasThreads {
    int saved = openblas_get_num_threads();
    BlasThreads() { openblas_set_num_threads(1); }
    ~BlasThreads() { openblas_set_num_threads(saved); }
  } single_threaded_blas;
  // One pass of products: for every list, its members against the rows that meet it in this
  // pass (`by_list`), counted in row_list_products.
  int64_t row_list_products = 0;
  auto products = [&](const ByList& by_list, const std::string& what) {
    const std::vector<int64_t>& qs = by_list.start;
    row_list_products += qs[nlist];
    StageTimer t("blocked: " + what + " (" + std::to_string(nlist) + " lists)");
    Progress prog("knn blocked " + what, nlist);
    std::vector<float> base;
    const int64_t qblock = 256;
    for (int64_t l = 0; l < nlist; ++l) {
      check_interrupt();
      const int64_t m = members.start[l + 1] - members.start[l];
      const int64_t nq_all = qs[l + 1] - qs[l];
      if (m == 0 || nq_all == 0) continue;
      base.resize(static_cast<size_t>(m * d));
#pragma omp parallel for schedule(static) num_threads(nt) if (m > 256)
      for (int64_t c = 0; c < m; ++c)
        std::memcpy(base.data() + c * d, x.row(members.rows[members.start[l] + c]), static_cast<size_t>(d) * 4);
      // One thread pool: OpenMP splits the rows that probe this list into blocks, and each thread
      // runs a single-threaded product for its block and updates those rows' heaps while the
      // similarities are still in cache. (OpenBLAS's own threads would compete with OpenMP's.)
      const int32_t* qids_all = by_list.rows.data() + qs[l];
      const int64_t nblocks = (nq_all + qblock - 1) / qblock;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
      for (int64_t bi = 0; bi < nblocks; ++bi) {
        const int64_t b0 = bi * qblock, nq = std::min(qblock, nq_all - b0);
        const int32_t* qids = qids_all + b0;
        thread_local std::vector<float> qx, sims;
        qx.resize(static_cast<size_t>(nq * d));
        sims.resize(static_cast<size_t>(nq * m));
        for (int64_t q = 0; q < nq; ++q) std::memcpy(qx.data() + q * d, x.row(qids[q]), static_cast<size_t>(d) * 4);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq), static_cast<int>(m),
                    static_cast<int>(d), 1.f, qx.data(), static_cast<int>(d), base.data(), static_cast<int>(d), 0.f,
                    sims.data(), static_cast<int>(m));
        // A row meets a list at most once over both passes, so no two blocks touch the same heap
        // and no candidate is offered twice.
        const int32_t* ids = members.rows.data() + members.start[l];
        for (int64_t q = 0; q < nq; ++q) {
          float* hv = heap_val + int64_t{qids[q]} * k;
          int32_t* hi = heap_id + int64_t{qids[q]} * k;
          const float* row = sims.data() + q * m;
          for (int64_t c = 0; c < m; ++c)
            if (row[c] > hv[0]) faiss::heap_replace_top<Heap>(static_cast<size_t>(k), hv, hi, row[c], ids[c]);
        }
      }
      prog.update(l + 1);
    }
  };
  products(queries, "products and top-k, probe " + std::to_string(probe));
  queries = ByList();

  // 4. The lists where the neighbours' neighbours live: a row's missed neighbours are near its
  // found ones, and those found ones met lists of their own. Each row's kVoters nearest found
  // neighbours vote with the home lists of their own found neighbours; up to o.blocked_refine
  // lists with the most votes that the row has not met are compared with it too (the same
  // products, a much smaller plan). kRefineRounds rounds, each on the lists the last improved.
  const int r = o.blocked_refine;
  std::vector<std::vector<int32_t>> met(rounds > 0 ? static_cast<size_t>(n) : 0);  // lists the rounds added, per row
  std::vector<int32_t> added_count(rounds > 0 ? static_cast<size_t>(n) : 0);      // of those, the current round's
  const int voters = std::min(kVoters, k);
  for (int round = 0; round < rounds; ++round) {
    // Each row's found neighbours, best first (a copy: the heaps keep their order for the pass).
    std::vector<int32_t> sorted_ids(static_cast<size_t>(n * voters));
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) {
      thread_local std::vector<std::pair<float, int32_t>> found;
      found.resize(static_cast<size_t>(k));
      for (int j = 0; j < k; ++j) found[j] = {heap_val[i * k + j], heap_id[i * k + j]};
      std::partial_sort(found.begin(), found.begin() + voters, found.end(), std::greater<>());
      for (int j = 0; j < voters; ++j) sorted_ids[i * voters + j] = found[j].second;
    }
#pragma omp parallel for schedule(dynamic, 256) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) {
      thread_local std::vector<int64_t> votes;
      thread_local std::vector<std::pair<int, int64_t>> tally;  // (votes, list), lists the row has not met
      votes.clear();
      tally.clear();
      const int32_t* probed = near.data() + i * probe;
      std::vector<int32_t>& before = met[static_cast<size_t>(i)];  // lists earlier rounds added
      auto compared = [&](int64_t l) {
        return std::find(probed, probed + probe, l) != probed + probe || std::find(before.begin(), before.end(), l) != before.end();
      };
      for (int v = 0; v < voters; ++v) {
        const int64_t j = sorted_ids[i * voters + v];
        if (j < 0) continue;
        for (int c = 0; c < k; ++c)
          if (const int64_t f = heap_id[j * k + c]; f >= 0) votes.push_back(home(f));
      }
      std::sort(votes.begin(), votes.end());
      for (size_t s0 = 0; s0 < votes.size();) {
        size_t s1 = s0;
        while (s1 < votes.size() && votes[s1] == votes[s0]) ++s1;
        if (!compared(votes[s0])) tally.emplace_back(static_cast<int>(s1 - s0), votes[s0]);
        s0 = s1;
      }
      const size_t take = std::min<size_t>(static_cast<size_t>(r), tally.size());
      std::partial_sort(tally.begin(), tally.begin() + take, tally.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
      });
      for (size_t e = 0; e < take; ++e) before.push_back(static_cast<int32_t>(tally[e].second));
      added_count[static_cast<size_t>(i)] = static_cast<int32_t>(take);
    }
    const ByList extra = group_by_list(n, nlist, [&](int64_t i, auto emit) {  // the lists this round gave each row
      const std::vector<int32_t>& v = met[static_cast<size_t>(i)];
      for (auto it = v.end() - added_count[static_cast<size_t>(i)]; it != v.end(); ++it) emit(*it);
    });
    log_info("  blocked: round " + std::to_string(round + 1) + ": " + std::to_string(extra.rows.size()) +
             " extra (row, list) products voted by the neighbours' neighbours (" +
             std::to_string(double(extra.rows.size()) / double(n)).substr(0, 4) + " per row)");
    products(extra, "neighbours' lists, round " + std::to_string(round + 1));
  }
  const double multiplied_pairs = double(row_list_products) * double(n) / double(nlist);
  log_info("  blocked: about " + std::to_string(100.0 * multiplied_pairs / (double(n) * double(n))).substr(0, 5) +
           "% of all pairs multiplied");
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t i = 0; i < n; ++i) {
    float* hv = heap_val + i * k;
    int32_t* hi = heap_id + i * k;
    faiss::heap_reorder<Heap>(static_cast<size_t>(k), hv, hi);
    thread_local std::vector<float> ip;
    thread_local std::vector<int64_t> ids;
    ip.assign(hv, hv + k);
    ids.assign(hi, hi + k);
    store_row(i, ip.data(), ids.data(), k, hi, hv);
  }
  return g;
}

}  // namespace facecluster
