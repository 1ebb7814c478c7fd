// The blocked kNN graph (KnnIndex::Blocked): every row is a query, so the queries can be
// grouped. Rows are assigned to coarse lists (k-means centroids), and each row probes its
// `probe` nearest lists, as in IVF search; but instead of scanning lists vector by vector
// (memory-bound), each list is multiplied, in one matrix product, by all the rows that probe it,
// and every row keeps a heap of its k best across the lists it probes.
#include "bf16.h"
#include "blas.h"
#include "blocked.h"
#include "rows.h"

#include <cstdint>  // before faiss: its 1.7.3 headers miss it (GCC 13)

#include <cblas.h>
#include <omp.h>
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>

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

// Past this many lists the two-level quantizer replaces the flat k-means and assignment, which
// grow with rows x lists (rows^2 / 256) while the products grow with rows. The flat one finds
// better lists, so it is kept until it costs about twice the products. Measured on 2 cores:
// 1.2M rows, 4,096 lists: quantizer 66 s, products 154 s; 5.21M rows, 20,352 lists: 1,360 s
// against 716 s (1.9x). The two-level lists cost recall (1.2M rows: 0.924 against 0.954) and, at
// 5.21M rows, labels (F_P / F_B 0.937 / 0.915 against 0.952 / 0.951), for 1,031 s less
// (docs/benchmarks.md).
constexpr int64_t kFlatQuantizerMaxLists = 20480;
// Two-level quantizer: the cells each row looks in for its home list, and the lists nearest
// the home list's centroid among which its `probe` nearest lists are sought (x probe).
constexpr int kCellsProbed = 8, kCandidatesPerProbe = 16;

// out (nq x nb) = rows ids[0..nq) of x, offset by first, times the nb rows of base (single-threaded BLAS).
void product_of_rows(const Matrix& x, int64_t first, const int32_t* ids, int64_t nq, const float* base, int64_t nb,
                     float* out) {
  const int64_t d = x.cols;
  thread_local std::vector<float> qx;
  qx.resize(static_cast<size_t>(nq * d));
  for (int64_t q = 0; q < nq; ++q) std::memcpy(qx.data() + q * d, x.row(first + ids[q]), static_cast<size_t>(d) * 4);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq), static_cast<int>(nb), static_cast<int>(d), 1.f,
              qx.data(), static_cast<int>(d), base, static_cast<int>(d), 0.f, out, static_cast<int>(nb));
}

// index.search over x's rows in chunks of 65,536 (progress, Ctrl-C): fn(first row, rows, ids) per
// chunk, ids rows x k.
template <class Fn>
void search_in_chunks(const faiss::Index& index, const Matrix& x, int k, const char* what, Fn&& fn) {
  const int64_t chunk = 65536;
  std::vector<float> sim(static_cast<size_t>(chunk * k));
  std::vector<faiss::Index::idx_t> ids(static_cast<size_t>(chunk * k));
  Progress prog(what, x.rows);
  for (int64_t s = 0; s < x.rows; s += chunk) {
    check_interrupt();
    const int64_t m = std::min<int64_t>(chunk, x.rows - s);
    index.search(m, x.row(s), k, sim.data(), ids.data());
    fn(s, m, ids.data());
    prog.update(s + m);
  }
}

// Inner-product search over the stored rows by bf16 products (the quantizer's k-means and its
// list assignment, where the lists need only be near, not exact): blocks of 256 queries, one
// product per block and chunk of stored rows, a heap per query.
struct Bf16InnerProductIndex : faiss::IndexFlatIP {
  using faiss::IndexFlatIP::IndexFlatIP;
  void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
              const faiss::SearchParameters* params = nullptr) const override {
    FC_CHECK(params == nullptr, "internal: search parameters are not supported here");
    using Heap = faiss::CMin<float, idx_t>;
    const int64_t nb = ntotal, dim = d, qblock = 256, bchunk = 4096;
    std::vector<uint16_t> base(static_cast<size_t>(bf16_padded_rows(nb) * dim), 0);  // zero rows past nb
    round_to_bf16(get_xb(), nb * dim, base.data());
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t q0 = 0; q0 < n; q0 += qblock) {
      const int64_t nq = std::min(qblock, n - q0);
      thread_local std::vector<uint16_t> qb;
      thread_local std::vector<float> prod;
      qb.assign(static_cast<size_t>(qblock * dim), 0);  // one shape: the last block padded with zero rows
      round_to_bf16(x + q0 * dim, nq * dim, qb.data());
      float* dis = distances + q0 * k;
      idx_t* lab = labels + q0 * k;
      for (int64_t q = 0; q < nq; ++q) faiss::heap_heapify<Heap>(static_cast<size_t>(k), dis + q * k, lab + q * k);
      for (int64_t b0 = 0; b0 < nb; b0 += bchunk) {
        const int64_t m = std::min(bchunk, nb - b0), mp = bf16_padded_rows(m);
        prod.resize(static_cast<size_t>(qblock * mp));
        bf16_product(qb.data(), qblock, base.data() + b0 * dim, mp, dim, prod.data());
        for (int64_t q = 0; q < nq; ++q) {
          float* hv = dis + q * k;
          idx_t* hi = lab + q * k;
          const float* row = prod.data() + q * mp;
          for (int64_t c = 0; c < m; ++c)
            if (row[c] > hv[0]) faiss::heap_replace_top<Heap>(static_cast<size_t>(k), hv, hi, row[c], b0 + c);
        }
      }
      for (int64_t q = 0; q < nq; ++q) faiss::heap_reorder<Heap>(static_cast<size_t>(k), dis + q * k, lab + q * k);
    }
  }
};

// The quantizer's search index: bf16 products or faiss's fp32 flat search.
std::unique_ptr<faiss::IndexFlatIP> quantizer_index(int64_t d, bool bf16) {
  if (bf16) return std::make_unique<Bf16InnerProductIndex>(d);
  return std::make_unique<faiss::IndexFlatIP>(d);
}

struct CoarseLists {
  int64_t count = 0;          // lists
  std::vector<int32_t> near;  // rows x probe: each row's nearest lists, nearest first (-1: none)
};

void train_spherical_kmeans(int64_t npts, const float* pts, int64_t d, int64_t ncent, int niter, int max_points,
                            uint64_t seed, faiss::IndexFlatIP& index, const char* progress) {
  faiss::ClusteringParameters cp;
  cp.max_points_per_centroid = max_points;
  cp.seed = static_cast<int>(seed);
  cp.spherical = true;
  // One iteration per call, for progress and Ctrl-C (minutes at 5M rows): a call that finds
  // centroids starts from them, on the same sample, so this is the same k-means.
  cp.niter = 1;
  faiss::Clustering km(static_cast<int>(d), static_cast<size_t>(ncent), cp);
  std::unique_ptr<Progress> prog(progress ? new Progress(progress, niter) : nullptr);
  for (int it = 0; it < niter; ++it) {
    check_interrupt();
    km.train(static_cast<faiss::Index::idx_t>(npts), pts, index);
    if (prog) prog->update(it + 1);
  }
}

// A rough k-means is enough: the refinement finds what coarser lists miss (584K: 10 iterations
// on 128 points per list took 37 s, 5 on 64 take 9 s; docs/benchmarks.md).
constexpr int kKmeansIterations = 5, kKmeansPointsPerList = 64;

CoarseLists flat_lists(const Matrix& x, int64_t nlist, int probe, uint64_t seed, bool bf16) {
  const int64_t n = x.rows, d = x.cols;
  const std::unique_ptr<faiss::IndexFlatIP> index = quantizer_index(d, bf16);
  faiss::IndexFlatIP& quantizer = *index;
  {
    StageTimer t("blocked: k-means (" + std::to_string(nlist) + " lists)");
    train_spherical_kmeans(n, x.row(0), d, nlist, kKmeansIterations, kKmeansPointsPerList, seed, quantizer,
                           "knn blocked k-means iterations");
  }
  // Row and list ids are held as int32 from here on (graph rows are int32 anyway): at 5.21M
  // faces the id arrays are ~half the builder's memory.
  CoarseLists c;
  c.count = nlist;
  c.near.resize(static_cast<size_t>(n * probe));
  StageTimer t("blocked: assign rows");
  search_in_chunks(quantizer, x, probe, "knn blocked assign rows", [&](int64_t s, int64_t m, const faiss::Index::idx_t* found) {
    std::transform(found, found + m * probe, c.near.begin() + s * probe, [](faiss::Index::idx_t l) { return static_cast<int32_t>(l); });
  });
  return c;
}

// The same lists from two levels: sqrt(nlist) cells by k-means on the sample, then each cell's
// sample points split into lists in proportion to their number. A row's home list is the nearest
// list of its kCellsProbed nearest cells (one product per cell against the rows that look in it);
// its `probe` nearest lists are sought among the kCandidatesPerProbe x probe lists nearest its
// home list's centroid (one product per home list). Work ~ rows x (cells + kCellsProbed x lists
// per cell + kCandidatesPerProbe x probe) instead of rows x lists.
CoarseLists two_level_lists(const Matrix& x, int64_t nlist, int probe, uint64_t seed, int nt, bool bf16) {
  const int64_t n = x.rows, d = x.cols;
  const int64_t cells = std::max<int64_t>(1, std::llround(std::ceil(std::sqrt(double(nlist)))));
  std::vector<float> lists;                  // list centroids, cell by cell
  std::vector<int64_t> cell_first(static_cast<size_t>(cells + 1), 0);
  const std::unique_ptr<faiss::IndexFlatIP> top_index = quantizer_index(d, bf16);
  faiss::IndexFlatIP& top = *top_index;
  {
    StageTimer t("blocked: two-level k-means (" + std::to_string(cells) + " cells, ~" + std::to_string(nlist) + " lists)");
    // The sample: kKmeansPointsPerList rows per list, drawn at random, kept in row order.
    const int64_t m = std::min<int64_t>(n, nlist * kKmeansPointsPerList);
    std::vector<int64_t> pick(static_cast<size_t>(n));
    std::iota(pick.begin(), pick.end(), 0);
    std::mt19937_64 rng(seed);
    for (int64_t i = 0; i < m; ++i) std::swap(pick[i], pick[i + static_cast<int64_t>(rng() % uint64_t(n - i))]);
    pick.resize(static_cast<size_t>(m));
    std::sort(pick.begin(), pick.end());
    std::vector<float> xs(static_cast<size_t>(m * d));
    for (int64_t i = 0; i < m; ++i) std::memcpy(xs.data() + i * d, x.row(pick[i]), static_cast<size_t>(d) * 4);
    std::vector<int64_t>().swap(pick);
    train_spherical_kmeans(m, xs.data(), d, cells, kKmeansIterations, static_cast<int>(m / cells + 1), seed, top,
                           nullptr);
    std::vector<float> score(static_cast<size_t>(m));
    std::vector<faiss::Index::idx_t> cell(static_cast<size_t>(m));
    top.search(m, xs.data(), 1, score.data(), cell.data());
    const ByList by_cell = group_by_list(m, cells, [&](int64_t i, auto emit) { emit(std::max<int64_t>(0, cell[i])); });
    Progress prog("knn blocked k-means per cell", cells);
    std::vector<float> pts;
    for (int64_t c = 0; c < cells; ++c) {
      const int64_t cnt = by_cell.start[c + 1] - by_cell.start[c];
      const int64_t want = cnt == 0 ? 0 : std::clamp<int64_t>(std::llround(double(nlist) * cnt / m), 1, cnt);
      pts.resize(static_cast<size_t>(cnt * d));
      for (int64_t j = 0; j < cnt; ++j)
        std::memcpy(pts.data() + j * d, xs.data() + by_cell.rows[by_cell.start[c] + j] * d, static_cast<size_t>(d) * 4);
      if (want == cnt) {
        lists.insert(lists.end(), pts.begin(), pts.end());
      } else if (want > 0) {
        const std::unique_ptr<faiss::IndexFlatIP> fine = quantizer_index(d, bf16);
        train_spherical_kmeans(cnt, pts.data(), d, want, kKmeansIterations, kKmeansPointsPerList, seed + c, *fine, nullptr);
        const float* cent = fine->get_xb();
        lists.insert(lists.end(), cent, cent + want * d);
      }
      cell_first[c + 1] = cell_first[c] + want;
      prog.update(c + 1);
    }
  }
  CoarseLists out;
  out.count = cell_first[cells];
  const int64_t nl = out.count;
  FC_CHECK(nl >= 1 && nl < (int64_t{1} << 31), "internal: " << nl << " coarse lists");
  // a. Each row's home list: the nearest list of its kCellsProbed nearest cells.
  std::vector<int32_t> home(static_cast<size_t>(n), 0);
  {
    StageTimer t("blocked: home lists (two-level)");
    const int look = static_cast<int>(std::min<int64_t>(kCellsProbed, cells));
    std::vector<float> best(65536);
    search_in_chunks(top, x, look, "knn blocked home lists", [&](int64_t s, int64_t m, const faiss::Index::idx_t* near_cells) {
      const SingleThreadedBlas single_threaded_blas;  // for the products below, not faiss's search
      const ByList by_cell = group_by_list(m, cells, [&](int64_t i, auto emit) {
        for (int p = 0; p < look; ++p)
          if (near_cells[i * look + p] >= 0) emit(near_cells[i * look + p]);
      });
      std::fill(best.begin(), best.begin() + m, -std::numeric_limits<float>::infinity());
      for (int64_t c = 0; c < cells; ++c) {  // a row looks in a cell once: no two blocks share a row
        const int64_t lc = cell_first[c + 1] - cell_first[c], nq_all = by_cell.start[c + 1] - by_cell.start[c];
        if (lc == 0 || nq_all == 0) continue;
        const int32_t* qids_all = by_cell.rows.data() + by_cell.start[c];
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (int64_t b0 = 0; b0 < nq_all; b0 += 256) {
          const int64_t nq = std::min<int64_t>(256, nq_all - b0);
          thread_local std::vector<float> prod;
          prod.resize(static_cast<size_t>(nq * lc));
          product_of_rows(x, s, qids_all + b0, nq, lists.data() + cell_first[c] * d, lc, prod.data());
          for (int64_t q = 0; q < nq; ++q) {
            const int64_t r = qids_all[b0 + q];
            for (int64_t j = 0; j < lc; ++j)
              if (prod[q * lc + j] > best[r]) {
                best[r] = prod[q * lc + j];
                home[s + r] = static_cast<int32_t>(cell_first[c] + j);
              }
          }
        }
      }
    });
  }
  // b. A row's nearest lists are among the lists nearest its home list's centroid: per home
  // list, one product of its rows against the kCandidatesPerProbe x probe lists nearest it.
  StageTimer t("blocked: nearest lists by the lists' own kNN");
  const int64_t cand = std::min<int64_t>(nl, int64_t{kCandidatesPerProbe} * probe);
  std::vector<faiss::Index::idx_t> cand_ids(static_cast<size_t>(nl * cand));
  {
    const std::unique_ptr<faiss::IndexFlatIP> centroids = quantizer_index(d, bf16);
    centroids->add(nl, lists.data());
    std::vector<float> sim(static_cast<size_t>(nl * cand));
    centroids->search(nl, lists.data(), cand, sim.data(), cand_ids.data());
  }
  const ByList by_home = group_by_list(n, nl, [&](int64_t i, auto emit) { emit(home[i]); });
  std::vector<int32_t>().swap(home);
  out.near.assign(static_cast<size_t>(n * probe), -1);
  Progress prog("knn blocked nearest lists", nl);
  int64_t done = 0;
  const SingleThreadedBlas single_threaded_blas;
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
  for (int64_t l = 0; l < nl; ++l) {  // each row has one home list: lists write disjoint rows
    const int64_t members = by_home.start[l + 1] - by_home.start[l];
    if (members == 0) continue;
    thread_local std::vector<float> base, prod, best_ip;
    thread_local std::vector<int64_t> best_id;
    thread_local std::vector<Scored> row;
    int64_t nc = 0;
    base.resize(static_cast<size_t>(cand * d));
    for (int64_t c = 0; c < cand; ++c) {
      const faiss::Index::idx_t j = cand_ids[l * cand + c];
      if (j < 0) continue;
      std::memcpy(base.data() + nc * d, lists.data() + j * d, static_cast<size_t>(d) * 4);
      ++nc;
    }
    const int32_t* rows_all = by_home.rows.data() + by_home.start[l];
    for (int64_t b0 = 0; b0 < members; b0 += 256) {
      const int64_t nq = std::min<int64_t>(256, members - b0);
      prod.resize(static_cast<size_t>(nq * nc));
      product_of_rows(x, 0, rows_all + b0, nq, base.data(), nc, prod.data());
      best_ip.resize(static_cast<size_t>(probe));
      best_id.resize(static_cast<size_t>(probe));
      for (int64_t q = 0; q < nq; ++q) {
        row.clear();
        for (int64_t c = 0, cc = 0; c < cand; ++c)
          if (cand_ids[l * cand + c] >= 0) row.push_back({prod[q * nc + cc++], cand_ids[l * cand + c]});
        keep_best_scored(row, probe, best_ip.data(), best_id.data());  // -1 past the candidates
        std::transform(best_id.begin(), best_id.end(), out.near.begin() + int64_t{rows_all[b0 + q]} * probe,
                       [](int64_t id) { return static_cast<int32_t>(id); });
      }
    }
    int64_t now;
#pragma omp atomic capture
    now = ++done;
    if (omp_get_thread_num() == 0) prog.update(now);
  }
  return out;
}

}  // namespace

// The refinement after the probes: kRefineRounds rounds, each voted by a row's kVoters nearest
// found neighbours (see step 2 below). Measured at 584K (docs/benchmarks.md): 8 voters and 2
// rounds 0.958, 4 rounds 0.960; 16 voters and 3 rounds 0.964; later rounds add fewer lists each.
constexpr int kRefineRounds = 3, kVoters = 16;

KnnGraph build_knn_blocked(const Matrix& x, const KnnOptions& o, int k) {
  const int64_t n = x.rows, d = x.cols;
  int64_t nlist = blocked_list_count(n, o.ivf_nlist);
  const int probe = static_cast<int>(std::min<int64_t>(blocked_probe_for(o), nlist));

  // 1-2. Coarse lists and each row's `probe` nearest of them.
  const int nt = o.threads > 0 ? o.threads : 1;
  const bool bf16 = knn_uses_bf16(o.precision);
  if (o.precision == KnnPrecision::Bf16 && !bf16)
    log_warn("knn precision bf16: this CPU or build has no native bf16 products (AVX512-BF16 or AMX-BF16, and oneDNN); using fp32");
  log_info(std::string("  blocked: ") + (bf16 ? "bf16 products (oneDNN), candidates re-ranked in fp32" : "fp32 products (OpenBLAS)"));
  CoarseLists coarse = nlist > kFlatQuantizerMaxLists ? two_level_lists(x, nlist, probe, o.seed, nt, bf16)
                                                      : flat_lists(x, nlist, probe, o.seed, bf16);
  nlist = coarse.count;
  std::vector<int32_t>& near = coarse.near;
  // A list's members are the rows whose nearest centroid (home list) it is; its queries are the
  // rows that probe it (about probe x its size). Every row meets its home list first (the
  // members against themselves), then its other probed lists: a row's heap then starts from the
  // best of its own list, and fewer candidates of later lists enter it (with bf16 products, each
  // one that might enter costs an fp32 product).
  std::vector<int32_t> home_of(static_cast<size_t>(n));  // compact: the refinement reads it at random
  for (int64_t i = 0; i < n; ++i) home_of[i] = near[i * probe];
  StageTimer grouping("blocked: rows grouped by list");
  const ByList members = group_by_list(n, nlist, [&](int64_t i, auto emit) { emit(home_of[i]); });
  ByList queries = group_by_list(n, nlist, [&](int64_t i, auto emit) {
    for (int p = 1; p < probe; ++p)
      if (near[i * probe + p] >= 0) emit(near[i * probe + p]);
  });
  grouping.stop();
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
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t i = 0; i < n; ++i) faiss::heap_heapify<Heap>(static_cast<size_t>(k), heap_val + i * k, heap_id + i * k);
  const SingleThreadedBlas single_threaded_blas;
  // bf16 products: the rows once in bf16, and their norms for the margin of the re-ranking.
  std::vector<uint16_t> xb(bf16 ? static_cast<size_t>(n * d) : 0);
  std::vector<float> norms(bf16 ? static_cast<size_t>(n) : 0);
  if (bf16) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) {
      round_to_bf16(x.row(i), d, xb.data() + i * d);
      norms[i] = std::sqrt(faiss::fvec_norm_L2sqr(x.row(i), static_cast<size_t>(d)));
    }
  }
  const float bf16_error = static_cast<float>(bf16_product_error_bound(d));
  // One pass of products: for every list, its members against the rows that meet it in this
  // pass (`by_list`), counted in row_list_products.
  int64_t row_list_products = 0;
  auto products = [&](const ByList& by_list, const std::string& what, bool bf16_pass) {
    const std::vector<int64_t>& qs = by_list.start;
    row_list_products += qs[nlist];
    StageTimer t("blocked: " + what + " (" + std::to_string(nlist) + " lists)");
    // The work as tasks: (list, first of up to qblock rows that meet it), list by list. Each
    // thread runs a single-threaded product per task and updates those rows' heaps while the
    // products are still in cache (OpenBLAS's own threads would compete with OpenMP's); it
    // gathers a list's members when it first meets the list. Tasks, not lists, are shared out:
    // a home list is one task, and a list-by-list loop left a thread idle at every list.
    const int64_t qblock = 256;
    struct Task {
      int32_t list;
      int64_t first;
    };
    std::vector<Task> tasks;
    for (int64_t l = 0; l < nlist; ++l)
      if (members.start[l + 1] > members.start[l])
        for (int64_t b0 = 0; b0 < qs[l + 1] - qs[l]; b0 += qblock) tasks.push_back({static_cast<int32_t>(l), b0});
    Progress prog("knn blocked " + what, static_cast<int64_t>(tasks.size()));
    const int64_t chunk = 512;  // tasks between checks for Ctrl-C
    for (int64_t t0 = 0; t0 < static_cast<int64_t>(tasks.size()); t0 += chunk) {
      check_interrupt();
      const int64_t t1 = std::min<int64_t>(t0 + chunk, static_cast<int64_t>(tasks.size()));
#pragma omp parallel num_threads(nt)
      {
        std::vector<float> base, base_norm, sims, sorted;
        std::vector<uint16_t> base_b, qb;
        int64_t cur = -1, m = 0, mp = 0;
        float max_norm = 0;
#pragma omp for schedule(dynamic, 1)
        for (int64_t ti = t0; ti < t1; ++ti) {
          const int64_t l = tasks[ti].list;
          const int32_t* ids = members.rows.data() + members.start[l];
          if (l != cur) {
            cur = l;
            m = members.start[l + 1] - members.start[l];
            mp = bf16_padded_rows(m);  // bf16: the members padded with zero rows (few shapes)
            base.resize(static_cast<size_t>(m * d));
            for (int64_t c = 0; c < m; ++c) std::memcpy(base.data() + c * d, x.row(ids[c]), static_cast<size_t>(d) * 4);
            if (bf16_pass) {
              base_b.assign(static_cast<size_t>(mp * d), 0);
              base_norm.resize(static_cast<size_t>(m));
              max_norm = 0;
              for (int64_t c = 0; c < m; ++c) {
                std::memcpy(base_b.data() + c * d, xb.data() + int64_t{ids[c]} * d, static_cast<size_t>(d) * 2);
                base_norm[c] = norms[ids[c]];
                max_norm = std::max(max_norm, base_norm[c]);
              }
            }
          }
          const int64_t nq = std::min(qblock, qs[l + 1] - qs[l] - tasks[ti].first);
          const int32_t* qids = by_list.rows.data() + qs[l] + tasks[ti].first;
          // A row meets a list at most once over all passes, so no two tasks touch the same heap
          // and no candidate is offered twice.
          if (!bf16_pass) {
            sims.resize(static_cast<size_t>(nq * m));
            product_of_rows(x, 0, qids, nq, base.data(), m, sims.data());
            for (int64_t q = 0; q < nq; ++q) {
              float* hv = heap_val + int64_t{qids[q]} * k;
              int32_t* hi = heap_id + int64_t{qids[q]} * k;
              const float* row = sims.data() + q * m;
              for (int64_t c = 0; c < m; ++c)
                if (row[c] > hv[0]) faiss::heap_replace_top<Heap>(static_cast<size_t>(k), hv, hi, row[c], ids[c]);
            }
          } else {
            qb.resize(static_cast<size_t>(qblock * d));
            for (int64_t q = 0; q < nq; ++q)
              std::memcpy(qb.data() + q * d, xb.data() + int64_t{qids[q]} * d, static_cast<size_t>(d) * 2);
            std::fill(qb.begin() + nq * d, qb.end(), uint16_t{0});
            sims.resize(static_cast<size_t>(qblock * mp));
            bf16_product(qb.data(), qblock, base_b.data(), mp, d, sims.data());
            // Re-ranking: a candidate whose bf16 product, plus the most the bf16 error can be for
            // its norms, is not above the row's k-th best so far cannot enter the row's k best;
            // the others get their fp32 product. A row whose heap is not full yet only needs the
            // candidates that can be among this list's own k best.
            for (int64_t q = 0; q < nq; ++q) {
              const int64_t i = qids[q];
              float* hv = heap_val + i * k;
              int32_t* hi = heap_id + i * k;
              const float* row = sims.data() + q * mp;
              const float* xq = x.row(i);
              const float slack = bf16_error * norms[i];
              float floor = -std::numeric_limits<float>::infinity();
              if (hv[0] == floor && m >= k) {
                sorted.assign(row, row + m);
                std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<>());
                floor = sorted[k - 1] - 2 * slack * max_norm;
              }
              for (int64_t c = next_candidate(row, base_norm.data(), slack, hv[0], 0, m); c < m;
                   c = next_candidate(row, base_norm.data(), slack, hv[0], c + 1, m)) {
                if (row[c] < floor) continue;
                const float ip = dot_f32(xq, base.data() + c * d, d);
                if (ip > hv[0]) faiss::heap_replace_top<Heap>(static_cast<size_t>(k), hv, hi, ip, ids[c]);
              }
            }
          }
        }
      }
      prog.update(t1);
    }
  };
  // The home lists in fp32 (1 / probe of the work): fp32 products fill the heaps directly.
  products(members, "products and top-k, home lists", false);
  products(queries, "products and top-k, probe " + std::to_string(probe), bf16);
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
    StageTimer voting("blocked: votes of the neighbours' neighbours, round " + std::to_string(round + 1));
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
    // What each row gives when it votes: the home lists of its found neighbours as (list, count)
    // pairs, built once per round (sizes, then the pairs), so that a row's voters cost their
    // distinct lists rather than voters x k random lookups (5.21M rows: ~60 s a round before).
    std::vector<int64_t> gives_start(static_cast<size_t>(n + 1), 0);
    std::vector<int32_t> gives_list, gives_count;
    auto homes_of_neighbours = [&](int64_t j, auto&& emit) {
      thread_local std::vector<int32_t> count, seen;
      if (count.size() != static_cast<size_t>(nlist)) count.assign(static_cast<size_t>(nlist), 0);
      for (int c = 0; c < k; ++c)
        if (const int32_t f = heap_id[j * k + c]; f >= 0) {
          const int32_t l = home_of[f];
          if (count[l]++ == 0) seen.push_back(l);
        }
      for (int32_t l : seen) {
        emit(l, count[l]);
        count[l] = 0;
      }
      seen.clear();
    };
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t j = 0; j < n; ++j) homes_of_neighbours(j, [&](int32_t, int32_t) { ++gives_start[j + 1]; });
    for (int64_t j = 0; j < n; ++j) gives_start[j + 1] += gives_start[j];
    gives_list.resize(static_cast<size_t>(gives_start[n]));
    gives_count.resize(static_cast<size_t>(gives_start[n]));
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t j = 0; j < n; ++j) {
      int64_t e = gives_start[j];
      homes_of_neighbours(j, [&](int32_t l, int32_t c) {
        gives_list[e] = l;
        gives_count[e++] = c;
      });
    }
#pragma omp parallel for schedule(dynamic, 256) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) {
      // Votes counted in a per-thread array over the lists (zero between rows); the lists the
      // row has met are marked far below zero so that no vote makes them count.
      thread_local std::vector<int32_t> votes, touched;
      thread_local std::vector<std::pair<int, int64_t>> tally;  // (votes, list), lists the row has not met
      constexpr int32_t kMet = std::numeric_limits<int32_t>::min() / 2;
      if (votes.size() != static_cast<size_t>(nlist)) votes.assign(static_cast<size_t>(nlist), 0);
      touched.clear();
      tally.clear();
      const int32_t* probed = near.data() + i * probe;
      std::vector<int32_t>& before = met[static_cast<size_t>(i)];  // lists earlier rounds added
      for (int p = 0; p < probe; ++p)
        if (probed[p] >= 0) votes[probed[p]] = kMet;
      for (int32_t l : before) votes[l] = kMet;
      for (int v = 0; v < voters; ++v) {
        const int64_t j = sorted_ids[i * voters + v];
        if (j < 0) continue;
        for (int64_t e = gives_start[j]; e < gives_start[j + 1]; ++e) {
          const int32_t l = gives_list[e];
          if (votes[l] == 0) touched.push_back(l);
          votes[l] += gives_count[e];
        }
      }
      for (int32_t l : touched) {
        if (votes[l] > 0) tally.emplace_back(votes[l], l);
        votes[l] = 0;
      }
      for (int p = 0; p < probe; ++p)
        if (probed[p] >= 0) votes[probed[p]] = 0;
      for (int32_t l : before) votes[l] = 0;
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
    voting.stop();
    log_info("  blocked: round " + std::to_string(round + 1) + ": " + std::to_string(extra.rows.size()) +
             " extra (row, list) products voted by the neighbours' neighbours (" +
             std::to_string(double(extra.rows.size()) / double(n)).substr(0, 4) + " per row)");
    products(extra, "neighbours' lists, round " + std::to_string(round + 1), bf16);
  }
  const double multiplied_pairs = double(row_list_products) * double(n) / double(nlist);
  log_info("  blocked: about " + std::to_string(100.0 * multiplied_pairs / (double(n) * double(n))).substr(0, 5) +
           "% of all pairs multiplied");
  StageTimer sorting("blocked: rows sorted");
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
