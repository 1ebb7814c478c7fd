// Adding rows to a kNN graph (knn.h, extend_knn): the new rows multiplied with every row, block by
// block (bf16 products where the CPU has them, else fp32), give both the new rows' candidates and,
// for each old row, the new rows that may belong among its k nearest; every candidate within the
// products' error of a place is then scored with exact_inner_product and ranked by build_knn's
// rule, so the lists are those exact search gives the grown set.
#include <algorithm>
#include <cmath>
#include <limits>

#include "facecluster/error.h"
#include "facecluster/knn.h"
#include "facecluster/log.h"
#include "bf16.h"
#include "blas.h"
#include "rows.h"

namespace facecluster {
namespace {

// How far below an old row's k-th inner product an fp32 matrix product's value may fall and still
// be checked exactly: products and exact_inner_product differ by rounding (~1e-6 for unit rows).
// bf16 products add their error bound (bf16_product_error_bound).
constexpr float kCandidateMargin = 1e-4f;

// The best `keep` candidates of one new row seen so far by the products' values, and every
// candidate within `slack` of the keep-th (the products' error): what exact scoring ranks.
struct CandidatePool {
  std::vector<Scored> items;
  float floor = -std::numeric_limits<float>::infinity();  // values below cannot enter
  void offer(float ip, int64_t id, int keep, float slack) {
    if (ip < floor) return;
    items.push_back({ip, id});
    if (items.size() >= static_cast<size_t>(4 * keep)) trim(keep, slack);
  }
  void trim(int keep, float slack) {
    if (items.size() <= static_cast<size_t>(keep)) return;
    auto better = [](const Scored& a, const Scored& b) { return a.ip > b.ip || (a.ip == b.ip && a.id < b.id); };
    std::nth_element(items.begin(), items.begin() + (keep - 1), items.end(), better);
    floor = items[static_cast<size_t>(keep - 1)].ip - slack;
    items.erase(std::remove_if(items.begin() + keep, items.end(), [&](const Scored& c) { return c.ip < floor; }),
                items.end());
  }
};

struct OldCandidate {
  int64_t row, id;
};

// An old row's list with new candidates (exact inner products) merged in, where the row itself
// comes first and ahead of every candidate. A distance is a non-increasing function of the inner
// product (1 - ip), so ranking by (distance, then inner product, then id) is ranking by (inner
// product, id): the entries keep their distances, the candidates enter by theirs, and exact
// inner products are computed only for entries whose distance equals another's. Writes the k
// entries; false when the row does not start with itself ahead of the candidates (the caller
// ranks everything exactly then).
template <class ExactIp>
bool merge_candidates(int64_t i, const int32_t* nb, const float* dist, int k, const std::vector<Scored>& candidates,
                      ExactIp&& exact_ip, int32_t* out_nb, float* out_d) {
  if (nb[0] != i) return false;
  struct Entry {
    float d, ip;
    int64_t id;
  };
  std::vector<Entry> old, fresh;
  for (const Scored& c : candidates) {
    const float dc = std::max(0.f, 1.f - c.ip);
    if (!(dc > dist[0])) return false;
    fresh.push_back({dc, c.ip, c.id});
  }
  for (int a = 1; a < k && nb[a] >= 0; ++a) old.push_back({dist[a], std::numeric_limits<float>::quiet_NaN(), nb[a]});
  auto by_distance = [](const Entry& a, const Entry& b) { return a.d < b.d; };
  std::sort(fresh.begin(), fresh.end(), by_distance);
  // Inner products where a distance is shared (old entries sit sorted by distance already).
  for (size_t a = 0; a < old.size(); ++a) {
    const bool shared = (a > 0 && old[a - 1].d == old[a].d) || (a + 1 < old.size() && old[a + 1].d == old[a].d) ||
                        std::binary_search(fresh.begin(), fresh.end(), old[a], by_distance);
    if (shared) old[a].ip = exact_ip(old[a].id);
  }
  auto before = [](const Entry& a, const Entry& b) {
    if (a.d != b.d) return a.d < b.d;
    return a.ip > b.ip || (a.ip == b.ip && a.id < b.id);
  };
  std::sort(fresh.begin(), fresh.end(), before);
  std::stable_sort(old.begin(), old.end(), before);
  std::vector<Entry> merged(old.size() + fresh.size());
  std::merge(old.begin(), old.end(), fresh.begin(), fresh.end(), merged.begin(), before);
  out_nb[0] = nb[0];
  out_d[0] = dist[0];
  for (int a = 1; a < k; ++a) {
    const bool has = static_cast<size_t>(a - 1) < merged.size();
    out_nb[a] = has ? static_cast<int32_t>(merged[static_cast<size_t>(a - 1)].id) : -1;
    out_d[a] = has ? merged[static_cast<size_t>(a - 1)].d : std::numeric_limits<float>::infinity();
  }
  return true;
}

// The k best of pool (exact inner products) by build_knn's rule, as row i of a graph.
void store_best(int64_t i, std::vector<Scored>& pool, int k, int32_t* nb, float* d) {
  std::vector<float> ip(static_cast<size_t>(k));
  std::vector<int64_t> ids(static_cast<size_t>(k));
  keep_best_scored(pool, k, ip.data(), ids.data());
  store_row(i, ip.data(), ids.data(), k, nb, d);
}

// Rows of the products: new rows in chunks against blocks of the rows searched; fixed shapes for
// the bf16 kernels (each new shape compiles one).
constexpr int64_t kChunkRows = 64, kBlockRows = 4096;

}  // namespace

KnnExtension extend_knn(const KnnGraph& g, const Matrix& old_rows, const Matrix& new_rows) {
  FC_CHECK(g.n == old_rows.rows, "internal: a graph of " << g.n << " rows for " << old_rows.rows << " feature rows");
  FC_CHECK(new_rows.cols == old_rows.cols || old_rows.rows == 0,
           "new faces have " << new_rows.cols << " dimensions, the clustering's have " << old_rows.cols);
  FC_CHECK(g.n + new_rows.rows < (int64_t{1} << 31), "at most 2^31 - 1 rows are supported");
  const int64_t n0 = g.n, m = new_rows.rows, d = new_rows.cols;
  const int k = g.k;
  const int keep = k + kTieMargin;
  KnnExtension out;
  out.added = KnnGraph(m, k);
  if (m == 0) return out;
  const int64_t total = n0 + m;
  auto feature = [&](int64_t id) { return id < n0 ? old_rows.row(id) : new_rows.row(id - n0); };

  // bf16 products where the CPU has them (rows are unit: the error bound is absolute), else fp32.
  const bool bf16 = bf16_products_native();
  const float slack = bf16 ? static_cast<float>(2 * bf16_product_error_bound(d)) + kCandidateMargin : kCandidateMargin;
  std::vector<uint16_t> new_b, all_b;
  if (bf16) {
    const int64_t mp = (m + kChunkRows - 1) / kChunkRows * kChunkRows;
    new_b.assign(static_cast<size_t>(mp * d), 0);
    round_to_bf16(new_rows.row(0), m * d, new_b.data());
    all_b.assign(static_cast<size_t>((total + kBlockRows) * d), 0);  // a block past the end reads zeros
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < total; ++i) round_to_bf16(feature(i), d, all_b.data() + i * d);
  }

  // An old row takes in a new one only above its k-th inner product (a row with padding: any).
  std::vector<float> old_floor(static_cast<size_t>(n0));
  for (int64_t i = 0; i < n0; ++i) {
    const bool full = g.nbr_row(i)[k - 1] >= 0;
    old_floor[i] = full ? 1.f - g.dist_row(i)[k - 1] - slack : -std::numeric_limits<float>::infinity();
  }

  std::vector<CandidatePool> pools(static_cast<size_t>(m));
  std::vector<std::vector<OldCandidate>> old_found;
  const SingleThreadedBlas single_threaded_blas;
  Progress prog("knn of the added faces", total);
  for (int64_t s = 0, end = 0; s < total; s = end) {
    check_interrupt();
    // A block lies within the old rows or within the new ones.
    end = s < n0 ? std::min(n0, s + kBlockRows) : std::min(total, s + kBlockRows);
    const int64_t b = end - s;
    const bool old_block = s < n0;
#pragma omp parallel
    {
      std::vector<float> prod(static_cast<size_t>(kChunkRows * kBlockRows));
      std::vector<OldCandidate> found;
#pragma omp for schedule(dynamic, 1)
      for (int64_t j0 = 0; j0 < m; j0 += kChunkRows) {
        const int64_t rows = std::min(kChunkRows, m - j0);
        const int64_t width = bf16 ? kBlockRows : b;
        if (bf16)
          bf16_product(new_b.data() + j0 * d, kChunkRows, all_b.data() + s * d, kBlockRows, d, prod.data());
        else
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(b),
                      static_cast<int>(d), 1.f, new_rows.row(j0), static_cast<int>(d), feature(s), static_cast<int>(d),
                      0.f, prod.data(), static_cast<int>(width));
        for (int64_t r = 0; r < rows; ++r) {
          const float* row = prod.data() + r * width;
          CandidatePool& pool = pools[static_cast<size_t>(j0 + r)];
          for (int64_t c = 0; c < b; ++c) {
            pool.offer(row[c], s + c, keep, slack);
            if (old_block && row[c] >= old_floor[static_cast<size_t>(s + c)]) found.push_back({s + c, n0 + j0 + r});
          }
        }
      }
#pragma omp critical
      old_found.push_back(std::move(found));
    }
    prog.update(end);
  }

  // The new rows' lists, ranked by exact inner products as build_knn ranks them.
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t j = 0; j < m; ++j) {
    CandidatePool& pool = pools[static_cast<size_t>(j)];
    pool.trim(keep, slack);
    for (Scored& c : pool.items) c.ip = exact_inner_product(new_rows.row(j), feature(c.id), d);
    store_best(n0 + j, pool.items, k, out.added.nbr_row(j), out.added.dist_row(j));
    std::vector<Scored>().swap(pool.items);
  }

  // The old rows that may take in new ones: their lists and the candidates, ranked the same way.
  std::vector<OldCandidate> found;
  for (auto& f : old_found) found.insert(found.end(), f.begin(), f.end());
  std::sort(found.begin(), found.end(), [](const OldCandidate& a, const OldCandidate& c) {
    return a.row < c.row || (a.row == c.row && a.id < c.id);
  });
  std::vector<int64_t> starts;
  for (size_t e = 0; e < found.size(); ++e)
    if (e == 0 || found[e].row != found[e - 1].row) starts.push_back(static_cast<int64_t>(e));
  starts.push_back(static_cast<int64_t>(found.size()));
  const int64_t rows = static_cast<int64_t>(starts.size()) - 1;
  KnnGraph lists(rows, k);
  std::vector<char> differs(static_cast<size_t>(rows), 0);
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = found[static_cast<size_t>(starts[r])].row;
    std::vector<Scored> pool;
    pool.reserve(static_cast<size_t>(k) + static_cast<size_t>(starts[r + 1] - starts[r]));
    float best = -std::numeric_limits<float>::infinity();
    for (int64_t e = starts[r]; e < starts[r + 1]; ++e) {
      const int64_t id = found[static_cast<size_t>(e)].id;
      pool.push_back({exact_inner_product(old_rows.row(i), feature(id), d), id});
      best = std::max(best, pool.back().ip);
    }
    // No candidate reaches the k-th place (its distance 1 - ip holds ip to float rounding): the
    // list stays, without scoring its k entries again.
    if (g.nbr_row(i)[k - 1] >= 0 && best < 1.f - g.dist_row(i)[k - 1] - kCandidateMargin) continue;
    auto exact_ip = [&](int64_t j) { return exact_inner_product(old_rows.row(i), feature(j), d); };
    if (!merge_candidates(i, g.nbr_row(i), g.dist_row(i), k, pool, exact_ip, lists.nbr_row(r), lists.dist_row(r))) {
      for (int a = 0; a < k; ++a) {
        const int32_t j = g.nbr_row(i)[a];
        if (j >= 0) pool.push_back({exact_ip(j), j});
      }
      store_best(i, pool, k, lists.nbr_row(r), lists.dist_row(r));
    }
    differs[static_cast<size_t>(r)] = !std::equal(lists.nbr_row(r), lists.nbr_row(r) + k, g.nbr_row(i));
  }
  // Only the rows whose lists took in a new row are kept.
  int64_t kept = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (!differs[static_cast<size_t>(r)]) continue;
    out.changed.push_back(found[static_cast<size_t>(starts[r])].row);
    std::copy(lists.nbr_row(r), lists.nbr_row(r) + k, lists.nbr_row(kept));
    std::copy(lists.dist_row(r), lists.dist_row(r) + k, lists.dist_row(kept));
    ++kept;
  }
  lists.n = kept;
  lists.nbrs.resize(static_cast<size_t>(kept * k));
  lists.dists.resize(static_cast<size_t>(kept * k));
  out.changed_lists = std::move(lists);
  return out;
}

void apply_extension(KnnGraph& g, const KnnExtension& e) {
  FC_CHECK(e.added.k == g.k && e.changed_lists.k == g.k && e.changed_lists.n == static_cast<int64_t>(e.changed.size()),
           "internal: a kNN extension that does not fit its graph");
  for (size_t r = 0; r < e.changed.size(); ++r) {
    const int64_t i = e.changed[r];
    std::copy(e.changed_lists.nbr_row(static_cast<int64_t>(r)), e.changed_lists.nbr_row(static_cast<int64_t>(r)) + g.k,
              g.nbr_row(i));
    std::copy(e.changed_lists.dist_row(static_cast<int64_t>(r)), e.changed_lists.dist_row(static_cast<int64_t>(r)) + g.k,
              g.dist_row(i));
  }
  g.nbrs.insert(g.nbrs.end(), e.added.nbrs.begin(), e.added.nbrs.end());
  g.dists.insert(g.dists.end(), e.added.dists.begin(), e.added.dists.end());
  g.n += e.added.n;
}

}  // namespace facecluster
