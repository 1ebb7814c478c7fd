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
  // ~sqrt(N) lists of ~sqrt(N) rows: the product per list stays large enough for GEMM to run
  // near peak, and the number of lists (and of candidate gathers) stays small.
  return std::max<int64_t>(1, std::min<int64_t>(std::llround(std::sqrt(double(n))), n / 32));
}

KnnGraph build_knn_blocked(const Matrix& x, const KnnOptions& o, int k, const StoreRow& store_row) {
  const int64_t n = x.rows, d = x.cols;
  const int64_t nlist = blocked_list_count(n, o.ivf_nlist);
  const int probe = static_cast<int>(std::min<int64_t>(std::max(1, o.blocked_probe), nlist));
  openblas_set_num_threads(o.threads > 0 ? o.threads : 1);

  // 1. Centroids, trained on a sample.
  faiss::IndexFlatIP quantizer(static_cast<int>(d));
  {
    StageTimer t("blocked: k-means (" + std::to_string(nlist) + " lists)");
    faiss::ClusteringParameters cp;
    cp.niter = 20;
    cp.max_points_per_centroid = 256;
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
  StageTimer t("blocked: products and top-k (" + std::to_string(nlist) + " lists, probe " + std::to_string(probe) + ")");
  Progress prog("knn blocked", nlist);
  std::vector<float> base, qx, sims;
  const int64_t qblock = 4096;
  for (int64_t l = 0; l < nlist; ++l) {
    check_interrupt();
    const int64_t m = start[l + 1] - start[l];
    const int64_t nq_all = qstart[l + 1] - qstart[l];
    if (m == 0 || nq_all == 0) continue;
    base.resize(static_cast<size_t>(m * d));
#pragma omp parallel for schedule(static) num_threads(nt) if (m > 256)
    for (int64_t c = 0; c < m; ++c) std::memcpy(base.data() + c * d, x.row(members[start[l] + c]), static_cast<size_t>(d) * 4);
    for (int64_t b0 = 0; b0 < nq_all; b0 += qblock) {
      const int64_t nq = std::min(qblock, nq_all - b0);
      const int64_t* qids = queries.data() + qstart[l] + b0;
      qx.resize(static_cast<size_t>(nq * d));
      sims.resize(static_cast<size_t>(nq * m));
#pragma omp parallel for schedule(static) num_threads(nt) if (nq > 256)
      for (int64_t q = 0; q < nq; ++q) std::memcpy(qx.data() + q * d, x.row(qids[q]), static_cast<size_t>(d) * 4);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq), static_cast<int>(m),
                  static_cast<int>(d), 1.f, qx.data(), static_cast<int>(d), base.data(), static_cast<int>(d), 0.f,
                  sims.data(), static_cast<int>(m));
      // A row probes a list once, so the rows of this block touch distinct heaps.
#pragma omp parallel for schedule(static) num_threads(nt)
      for (int64_t q = 0; q < nq; ++q) {
        float* hv = heap_val.data() + qids[q] * k;
        int64_t* hi = heap_id.data() + qids[q] * k;
        const float* row = sims.data() + q * m;
        const int64_t* ids = members.data() + start[l];
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
