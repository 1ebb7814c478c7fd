// The blocked kNN graph (KnnIndex::Blocked): every row is a query, so the queries can be
// grouped. Rows are assigned to coarse lists (k-means centroids), and each row probes its
// `probe` nearest lists, as in IVF search; but instead of scanning lists vector by vector
// (memory-bound), each list is multiplied, in one matrix product, by all the rows that probe it,
// and every row keeps a heap of its k best across the lists it probes.
#include "blocked.h"

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

// The refinement after the probes: kRefineRounds rounds, each voted by a row's kVoters nearest
// found neighbours (see step 2 below). Measured at 584K (docs/benchmarks.md): 8 voters and 2
// rounds 0.958, 4 rounds 0.960; 16 voters and 3 rounds 0.964; later rounds add fewer lists each.
constexpr int kRefineRounds = 3, kVoters = 16;

KnnGraph build_knn_blocked(const Matrix& x, const KnnOptions& o, int k, const StoreRow& store_row) {
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
  // 2. Each row's `probe` nearest centroids: the lists it is compared with.
  std::vector<faiss::Index::idx_t> near(static_cast<size_t>(n * probe));
  {
    StageTimer t("blocked: assign rows");
    std::vector<float> sim(static_cast<size_t>(65536 * probe));
    for (int64_t s = 0; s < n; s += 65536) {
      check_interrupt();
      const int64_t m = std::min<int64_t>(65536, n - s);
      quantizer.search(m, x.row(s), probe, sim.data(), near.data() + s * probe);
    }
  }
  // A list's members are the rows whose nearest centroid it is; its queries are the rows that
  // probe it (about probe x its size).
  std::vector<int64_t> start(static_cast<size_t>(nlist + 1), 0), qstart(static_cast<size_t>(nlist + 1), 0);
  for (int64_t i = 0; i < n; ++i) {
    start[near[i * probe] + 1] += 1;
    for (int p = 0; p < probe; ++p)
      if (near[i * probe + p] >= 0) qstart[near[i * probe + p] + 1] += 1;
  }
  for (int64_t l = 0; l < nlist; ++l) start[l + 1] += start[l], qstart[l + 1] += qstart[l];
  std::vector<int64_t> members(static_cast<size_t>(n)), queries(static_cast<size_t>(qstart[nlist]));
  {
    std::vector<int64_t> fm(start.begin(), start.end() - 1), fq(qstart.begin(), qstart.end() - 1);
    for (int64_t i = 0; i < n; ++i) {
      members[fm[near[i * probe]]++] = i;
      for (int p = 0; p < probe; ++p)
        if (near[i * probe + p] >= 0) queries[fq[near[i * probe + p]]++] = i;
    }
  }
  // Each row's home list and the lists it probed, for the second pass below.
  std::vector<int32_t> home(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) home[i] = static_cast<int32_t>(near[i * probe]);
  std::vector<int64_t> probed_lists(near.begin(), near.end());
  std::vector<faiss::Index::idx_t>().swap(near);

  // 3. Per list: its members in one block, the rows that probe it in another, one product,
  // and each of those rows keeps its k best so far (a heap per row across the lists).
  KnnGraph g(n, k);
  std::vector<float> heap_val(static_cast<size_t>(n * k));
  std::vector<int64_t> heap_id(static_cast<size_t>(n * k));
  const int nt = o.threads > 0 ? o.threads : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t i = 0; i < n; ++i) faiss::minheap_heapify(static_cast<size_t>(k), heap_val.data() + i * k, heap_id.data() + i * k);
  // The products run one per OpenMP thread (see below): OpenBLAS single-threaded meanwhile.
  struct BlasThreads {
    int saved = openblas_get_num_threads();
    BlasThreads() { openblas_set_num_threads(1); }
    ~BlasThreads() { openblas_set_num_threads(saved); }
  } single_threaded_blas;
  // One pass of products: for every list, its members against the rows that probe it in this
  // pass (qs[l] .. qs[l + 1] of qids).
  auto products = [&](const std::vector<int64_t>& qs, const std::vector<int64_t>& qids_by_list, const std::string& what) {
    StageTimer t("blocked: " + what + " (" + std::to_string(nlist) + " lists)");
    Progress prog("knn blocked " + what, nlist);
    std::vector<float> base;
    const int64_t qblock = 256;
    for (int64_t l = 0; l < nlist; ++l) {
      check_interrupt();
      const int64_t m = start[l + 1] - start[l];
      const int64_t nq_all = qs[l + 1] - qs[l];
      if (m == 0 || nq_all == 0) continue;
      base.resize(static_cast<size_t>(m * d));
#pragma omp parallel for schedule(static) num_threads(nt) if (m > 256)
      for (int64_t c = 0; c < m; ++c) std::memcpy(base.data() + c * d, x.row(members[start[l] + c]), static_cast<size_t>(d) * 4);
      // One thread pool: OpenMP splits the rows that probe this list into blocks, and each thread
      // runs a single-threaded product for its block and updates those rows' heaps while the
      // similarities are still in cache. (OpenBLAS's own threads would compete with OpenMP's.)
      const int64_t* qids_all = qids_by_list.data() + qs[l];
      const int64_t nblocks = (nq_all + qblock - 1) / qblock;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
      for (int64_t bi = 0; bi < nblocks; ++bi) {
        const int64_t b0 = bi * qblock, nq = std::min(qblock, nq_all - b0);
        const int64_t* qids = qids_all + b0;
        thread_local std::vector<float> qx, sims;
        qx.resize(static_cast<size_t>(nq * d));
        sims.resize(static_cast<size_t>(nq * m));
        for (int64_t q = 0; q < nq; ++q) std::memcpy(qx.data() + q * d, x.row(qids[q]), static_cast<size_t>(d) * 4);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq), static_cast<int>(m),
                    static_cast<int>(d), 1.f, qx.data(), static_cast<int>(d), base.data(), static_cast<int>(d), 0.f,
                    sims.data(), static_cast<int>(m));
        // A row meets a list at most once over both passes, so no two blocks touch the same heap
        // and no candidate is offered twice.
        const int64_t* ids = members.data() + start[l];
        for (int64_t q = 0; q < nq; ++q) {
          float* hv = heap_val.data() + qids[q] * k;
          int64_t* hi = heap_id.data() + qids[q] * k;
          const float* row = sims.data() + q * m;
          for (int64_t c = 0; c < m; ++c)
            if (row[c] > hv[0]) faiss::minheap_replace_top(static_cast<size_t>(k), hv, hi, row[c], ids[c]);
        }
      }
      prog.update(l + 1);
    }
  };
  products(qstart, queries, "products and top-k, probe " + std::to_string(probe));

  // 2. The lists where the neighbours' neighbours live: a row's missed neighbours are near its
  // found ones, and those found ones met lists of their own. Each row's kVoters nearest found
  // neighbours vote with the home lists of their own found neighbours; up to o.blocked_refine
  // lists with the most votes that the row has not met are compared with it too (the same
  // products, a much smaller plan), and the round is repeated once on the improved lists.
  const int r = o.blocked_refine, rounds = o.blocked_refine > 0 && probe < nlist ? kRefineRounds : 0;
  std::vector<std::vector<int32_t>> met(rounds > 0 ? static_cast<size_t>(n) : 0);  // lists the rounds added, per row
  std::vector<int32_t> added_count(static_cast<size_t>(n));  // how many the current round added
  const int voters = std::min(kVoters, k);
  for (int round = 0; round < rounds; ++round) {
    // Each row's found neighbours, best first (a copy: the heaps keep their order for the pass).
    std::vector<int64_t> sorted_ids(static_cast<size_t>(n * voters));
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) {
      std::vector<std::pair<float, int64_t>> found(static_cast<size_t>(k));
      for (int j = 0; j < k; ++j) found[j] = {heap_val[i * k + j], heap_id[i * k + j]};
      std::partial_sort(found.begin(), found.begin() + voters, found.end(), std::greater<>());
      for (int j = 0; j < voters; ++j) sorted_ids[i * voters + j] = found[j].second;
    }
#pragma omp parallel for schedule(dynamic, 256) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) {
      thread_local std::vector<int32_t> votes;
      votes.clear();
      const int64_t* probed = probed_lists.data() + i * probe;
      std::vector<int32_t>& before = met[static_cast<size_t>(i)];  // lists earlier rounds added
      auto compared = [&](int32_t l) {
        return std::find(probed, probed + probe, l) != probed + probe || std::find(before.begin(), before.end(), l) != before.end();
      };
      for (int v = 0; v < voters; ++v) {
        const int64_t j = sorted_ids[i * voters + v];
        if (j < 0) continue;
        for (int c = 0; c < k; ++c) {
          const int64_t l = heap_id[j * k + c];
          if (l >= 0) votes.push_back(home[l]);
        }
      }
      std::sort(votes.begin(), votes.end());
      std::vector<std::pair<int, int32_t>> tally;  // (votes, list), lists the row has not met
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
      for (size_t e = 0; e < take; ++e) before.push_back(tally[e].second);
      added_count[static_cast<size_t>(i)] = static_cast<int32_t>(take);
    }
    auto this_round = [&](int64_t i) {  // the lists row i was given in this round
      const std::vector<int32_t>& v = met[static_cast<size_t>(i)];
      return std::make_pair(v.end() - added_count[static_cast<size_t>(i)], v.end());
    };
    std::vector<int64_t> qs2(static_cast<size_t>(nlist + 1), 0);
    for (int64_t i = 0; i < n; ++i)
      for (auto [it, end] = this_round(i); it != end; ++it) qs2[*it + 1] += 1;
    for (int64_t l = 0; l < nlist; ++l) qs2[l + 1] += qs2[l];
    std::vector<int64_t> q2(static_cast<size_t>(qs2[nlist])), fill(qs2.begin(), qs2.end() - 1);
    for (int64_t i = 0; i < n; ++i)
      for (auto [it, end] = this_round(i); it != end; ++it) q2[fill[*it]++] = i;
    log_info("  blocked: round " + std::to_string(round + 1) + ": " + std::to_string(q2.size()) +
             " extra (row, list) products voted by the neighbours' neighbours (" +
             std::to_string(double(q2.size()) / double(n)).substr(0, 4) + " per row)");
    products(qs2, q2, "neighbours' lists, round " + std::to_string(round + 1));
  }
  const double probed_pairs = double(qstart[nlist]) * double(n) / double(nlist);
  log_info("  blocked: about " + std::to_string(100.0 * probed_pairs / (double(n) * double(n))).substr(0, 5) +
           "% of all pairs multiplied");
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t i = 0; i < n; ++i) {
    float* hv = heap_val.data() + i * k;
    int64_t* hi = heap_id.data() + i * k;
    faiss::minheap_reorder(static_cast<size_t>(k), hv, hi);
    store_row(i, hv, hi, k, g);
  }
  return g;
}

}  // namespace facecluster
