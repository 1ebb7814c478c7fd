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

KnnGraph build_knn_blocked(const Matrix& x, const KnnOptions& o, int k, const StoreRow& store_row) {
  const int64_t n = x.rows, d = x.cols;
  const int64_t nlist = blocked_list_count(n, o.ivf_nlist);
  const int probe = static_cast<int>(std::min<int64_t>(std::max(1, o.blocked_probe), nlist));

  // 1. Centroids, trained on a sample.
  faiss::IndexFlatIP quantizer(static_cast<int>(d));
  {
    StageTimer t("blocked: k-means (" + std::to_string(nlist) + " lists)");
    faiss::ClusteringParameters cp;
    cp.niter = 10;
    cp.max_points_per_centroid = 128;
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
  StageTimer t("blocked: products and top-k (" + std::to_string(nlist) + " lists, probe " + std::to_string(probe) + ")");
  Progress prog("knn blocked", nlist);
  std::vector<float> base;
  const int64_t qblock = 256;
  for (int64_t l = 0; l < nlist; ++l) {
    check_interrupt();
    const int64_t m = start[l + 1] - start[l];
    const int64_t nq_all = qstart[l + 1] - qstart[l];
    if (m == 0 || nq_all == 0) continue;
    base.resize(static_cast<size_t>(m * d));
#pragma omp parallel for schedule(static) num_threads(nt) if (m > 256)
    for (int64_t c = 0; c < m; ++c) std::memcpy(base.data() + c * d, x.row(members[start[l] + c]), static_cast<size_t>(d) * 4);
    // One thread pool: OpenMP splits the rows that probe this list into blocks, and each thread
    // runs a single-threaded product for its block and updates those rows' heaps while the
    // similarities are still in cache. (OpenBLAS's own threads would compete with OpenMP's.)
    const int64_t* qids_all = queries.data() + qstart[l];
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
      // A row probes a list once, so no two blocks touch the same heap.
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
