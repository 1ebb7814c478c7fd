// Debian's faiss 1.7.3 headers use int64_t without including <cstdint>; GCC 13 no longer
// pulls it in through other headers (issue 15), so it comes first.
#include <cstdint>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/utils/distances.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "facecluster/error.h"
#include "facecluster/knn.h"
#include "facecluster/log.h"
#include "bf16.h"
#include "blocked.h"
#include "rows.h"

namespace facecluster {
namespace {

// Restores the OpenMP thread count on scope exit.
class ThreadScope {
 public:
  explicit ThreadScope(int threads) {
#ifdef _OPENMP
    saved_ = omp_get_max_threads();
    if (threads > 0) omp_set_num_threads(threads);
#else
    (void)threads;
#endif
  }
  ~ThreadScope() {
#ifdef _OPENMP
    omp_set_num_threads(saved_);
#endif
  }

 private:
  int saved_ = 1;
};

// Lets faiss stop its own long loops (k-means training, HNSW insertion) on Ctrl-C or SIGTERM;
// faiss then throws, and build_knn turns that into Interrupted.
struct FaissInterrupt : faiss::InterruptCallback {
  bool want_interrupt() override { return interrupt_requested(); }
};

class FaissInterruptScope {
 public:
  FaissInterruptScope() {
    std::lock_guard<std::mutex> lock(faiss::InterruptCallback::lock);
    faiss::InterruptCallback::instance.reset(new FaissInterrupt);
  }
  ~FaissInterruptScope() { faiss::InterruptCallback::clear_instance(); }
};

std::unique_ptr<faiss::Index> make_index(const Matrix& x, const KnnOptions& opt, std::unique_ptr<faiss::Index>& quantizer) {
  const int d = static_cast<int>(x.cols);
  if (opt.index == KnnIndex::Flat) return std::make_unique<faiss::IndexFlatIP>(d);
  if (opt.index == KnnIndex::Hnsw) {
    FC_CHECK(opt.hnsw_m >= 2, "hnsw M must be >= 2, got " << opt.hnsw_m);
    auto idx = std::make_unique<faiss::IndexHNSWFlat>(d, opt.hnsw_m, faiss::METRIC_INNER_PRODUCT);
    idx->hnsw.efConstruction = std::max(opt.hnsw_ef_construction, opt.hnsw_m);
    idx->hnsw.efSearch = std::max(opt.hnsw_ef_search, opt.k);
    return idx;
  }
  if (opt.index == KnnIndex::Ivf) {
    int64_t nlist = opt.ivf_nlist;
    if (nlist <= 0) nlist = std::max<int64_t>(1, std::min<int64_t>(std::llround(4 * std::sqrt(double(x.rows))), x.rows / 39));
    FC_CHECK(nlist <= x.rows, "ivf nlist " << nlist << " exceeds the number of rows " << x.rows);
    quantizer = std::make_unique<faiss::IndexFlatIP>(d);
    auto idx = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), d, static_cast<size_t>(nlist), faiss::METRIC_INNER_PRODUCT);
    idx->nprobe = static_cast<size_t>(std::max(1, std::min<int>(opt.ivf_nprobe, static_cast<int>(nlist))));
    // Train on a seeded sample of at most 256 points per list.
    const int64_t nt = std::min<int64_t>(x.rows, nlist * 256);
    std::vector<int64_t> rows(static_cast<size_t>(x.rows));
    std::iota(rows.begin(), rows.end(), 0);
    std::mt19937_64 rng(opt.seed);
    std::shuffle(rows.begin(), rows.end(), rng);
    std::vector<float> train(static_cast<size_t>(nt * x.cols));
    for (int64_t t = 0; t < nt; ++t) std::copy(x.row(rows[t]), x.row(rows[t]) + x.cols, train.data() + t * x.cols);
    StageTimer timer("ivf train (nlist " + std::to_string(nlist) + ", " + std::to_string(nt) + " points)");
    idx->cp.seed = static_cast<int>(opt.seed);
    idx->train(nt, train.data());
    return idx;
  }
  FC_FAIL("internal: the " << knn_index_name(opt.index) << " index is not built through faiss");
}

}  // namespace

void store_row(int64_t i, const float* ip, const int64_t* ids, int k, int32_t* nb, float* d) {
  int self_at = -1;
  for (int j = 0; j < k; ++j) {
    nb[j] = ids[j] < 0 ? -1 : static_cast<int32_t>(ids[j]);
    d[j] = ids[j] < 0 ? std::numeric_limits<float>::infinity() : std::max(0.f, 1.f - ip[j]);
    if (nb[j] == i && self_at < 0) self_at = j;
  }
  if (self_at == 0) return;
  if (self_at < 0) self_at = k - 1;  // not found (approximate search): make room at the end
  for (int j = self_at; j > 0; --j) {
    nb[j] = nb[j - 1];
    d[j] = d[j - 1];
  }
  nb[0] = static_cast<int32_t>(i);
  d[0] = 0.f;
}

float exact_inner_product(const float* a, const float* b, int64_t dim) {
  return faiss::fvec_inner_product(a, b, static_cast<size_t>(dim));
}

void keep_best_scored(std::vector<Scored>& pool, int keep, float* ip, int64_t* ids) {
  const size_t m = std::min(pool.size(), static_cast<size_t>(keep));
  std::partial_sort(pool.begin(), pool.begin() + static_cast<std::ptrdiff_t>(m), pool.end(),
                    [](const Scored& a, const Scored& b) { return a.ip > b.ip || (a.ip == b.ip && a.id < b.id); });
  for (size_t j = 0; j < static_cast<size_t>(keep); ++j) {
    ip[j] = j < m ? pool[j].ip : -std::numeric_limits<float>::infinity();
    ids[j] = j < m ? pool[j].id : -1;
  }
}

KnnIndex parse_knn_index(const std::string& name) {
  if (name == "auto") return KnnIndex::Auto;
  if (name == "flat") return KnnIndex::Flat;
  if (name == "ivf") return KnnIndex::Ivf;
  if (name == "hnsw") return KnnIndex::Hnsw;
  if (name == "blocked") return KnnIndex::Blocked;
  FC_FAIL("unknown knn index " << quote_input(name) << "; expected auto, flat, ivf, hnsw, blocked");
}

const char* knn_index_name(KnnIndex i) {
  switch (i) {
    case KnnIndex::Auto: return "auto";
    case KnnIndex::Flat: return "flat";
    case KnnIndex::Ivf: return "ivf";
    case KnnIndex::Hnsw: return "hnsw";
    case KnnIndex::Blocked: return "blocked";
  }
  return "?";
}

KnnPrecision parse_knn_precision(const std::string& name) {
  if (name == "auto") return KnnPrecision::Auto;
  if (name == "fp32") return KnnPrecision::Fp32;
  if (name == "bf16") return KnnPrecision::Bf16;
  FC_FAIL("unknown knn precision " << quote_input(name) << "; expected auto, fp32, bf16");
}

const char* knn_precision_name(KnnPrecision p) {
  switch (p) {
    case KnnPrecision::Auto: return "auto";
    case KnnPrecision::Fp32: return "fp32";
    case KnnPrecision::Bf16: return "bf16";
  }
  return "?";
}

bool knn_uses_bf16(KnnPrecision p) { return p != KnnPrecision::Fp32 && bf16_products_native(); }

int blocked_probe_for(const KnnOptions& o) {
  if (o.blocked_probe > 0) return o.blocked_probe;
  return knn_uses_bf16(o.precision) ? kBlockedProbeBf16 : kBlockedProbeFp32;
}

KnnIndex resolve_knn_index(KnnIndex index, int64_t rows, int64_t dim, const std::string& device) {
  if (index != KnnIndex::Auto) return index;
  if (device != "cpu") return KnnIndex::Flat;
  return double(rows) * double(rows) * double(dim) <= kExactSearchMaxMultiplyAdds ? KnnIndex::Flat : KnnIndex::Blocked;
}

namespace {

KnnGraph build_knn_with_faiss(const Matrix& x, const KnnOptions& opt) {
  FC_CHECK(x.rows > 0 && x.cols > 0, "cannot build a kNN graph of an empty feature matrix");
  FC_CHECK(opt.k >= 1, "k must be >= 1, got " << opt.k);
  FC_CHECK(x.rows < (int64_t{1} << 31), "at most 2^31 - 1 rows are supported, got " << x.rows);
  int k = opt.k;
  if (k > x.rows) {
    log_warn("k = " + std::to_string(k) + " exceeds the " + std::to_string(x.rows) + " rows; using k = " +
             std::to_string(x.rows));
    k = static_cast<int>(x.rows);
  }
  KnnOptions o = opt;
  o.k = k;
  o.index = resolve_knn_index(opt.index, x.rows, x.cols, opt.device);
  if (opt.index == KnnIndex::Auto) {
    char why[200];
    std::snprintf(why, sizeof why, "knn: auto -> %s (exact search of %lld rows x %lld is %.2g multiply-adds, %s %.0e)",
                  knn_index_name(o.index), (long long)x.rows, (long long)x.cols,
                  double(x.rows) * double(x.rows) * double(x.cols), o.index == KnnIndex::Flat ? "within" : "above",
                  kExactSearchMaxMultiplyAdds);
    log_info(why);
  }
  ThreadScope threads(opt.threads);
  if (o.index == KnnIndex::Blocked) return build_knn_blocked(x, o, k);
  if (o.index == KnnIndex::Flat && o.device != "cpu") return torch_exact_knn(x, k, o.device);
  std::unique_ptr<faiss::Index> quantizer;
  std::unique_ptr<faiss::Index> index = make_index(x, o, quantizer);
  {
    StageTimer timer(std::string("knn add (") + knn_index_name(o.index) + ")");
    // HNSW inserts slowly (seconds per 65K rows): smaller chunks keep Ctrl-C responsive.
    const int64_t chunk = o.index == KnnIndex::Hnsw ? 8192 : 65536;
    Progress prog("knn add", x.rows);
    for (int64_t s = 0; s < x.rows; s += chunk) {
      check_interrupt();
      index->add(std::min(chunk, x.rows - s), x.row(s));
      prog.update(s);
    }
  }
  KnnGraph g(x.rows, k);
  {
    StageTimer timer(std::string("knn search (") + knn_index_name(o.index) + ", k " + std::to_string(k) + ")");
    // Chunks of ~2^28 distance computations keep progress and Ctrl-C responsive at any N.
    const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 28) / x.rows, 256, 8192);
    const bool exact = o.index == KnnIndex::Flat;
    const int kk = exact ? static_cast<int>(std::min<int64_t>(k + kTieMargin, x.rows)) : k;
    std::vector<float> ip(static_cast<size_t>(chunk * kk)), row_ip(static_cast<size_t>(k));
    std::vector<faiss::Index::idx_t> ids(static_cast<size_t>(chunk * kk)), row_ids(static_cast<size_t>(k));
    std::vector<Scored> pool;
    Progress prog("knn search", x.rows);
    for (int64_t s = 0; s < x.rows; s += chunk) {
      check_interrupt();
      const int64_t m = std::min(chunk, x.rows - s);
      index->search(m, x.row(s), kk, ip.data(), ids.data());
      for (int64_t r = 0; r < m; ++r) {
        const float* rip = ip.data() + r * kk;
        const faiss::Index::idx_t* rids = ids.data() + r * kk;
        if (exact) {
          pool.clear();
          for (int j = 0; j < kk; ++j)
            if (rids[j] >= 0) pool.push_back({exact_inner_product(x.row(s + r), x.row(rids[j]), x.cols), rids[j]});
          keep_best_scored(pool, k, row_ip.data(), row_ids.data());
          rip = row_ip.data();
          rids = row_ids.data();
        }
        store_row(s + r, rip, rids, k, g.nbr_row(s + r), g.dist_row(s + r));
      }
      prog.update(s + m);
    }
  }
  return g;
}

}  // namespace

KnnGraph build_knn(const Matrix& x, const KnnOptions& opt) {
  FaissInterruptScope interrupt_scope;
  try {
    return build_knn_with_faiss(x, opt);
  } catch (const faiss::FaissException& e) {
    // faiss's own interrupt check throws "computation interrupted".
    if (std::string(e.what()).find("interrupted") != std::string::npos) throw Interrupted();
    FC_FAIL("faiss failed: " << std::string(e.what()).substr(0, 300));
  }
}

ShardedKnn::ShardedKnn(const Matrix& queries, int64_t first_query, int k)
    : queries_(queries), first_query_(first_query), k_(k), keep_(k + kTieMargin),
      ip_(static_cast<size_t>(queries.rows * keep_), -std::numeric_limits<float>::infinity()),
      ids_(static_cast<size_t>(queries.rows * keep_), -1) {
  FC_CHECK(k >= 1, "k must be >= 1, got " << k);
}

void ShardedKnn::add_shard(const float* rows, int64_t count, int64_t first_row, int64_t dim) {
  FC_CHECK(dim == queries_.cols, "a shard of dimension " << dim << " for queries of dimension " << queries_.cols);
  if (count <= 0 || queries_.rows == 0) return;
  FaissInterruptScope interrupt_scope;
  const int ks = static_cast<int>(std::min<int64_t>(keep_, count));
  const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 28) / count, 256, 8192);
  std::vector<float> ip(static_cast<size_t>(chunk * ks));
  std::vector<faiss::Index::idx_t> ids(static_cast<size_t>(chunk * ks));
  std::vector<Scored> pool;
  pool.reserve(static_cast<size_t>(keep_ + ks));
  Progress prog("knn search (a shard of " + std::to_string(count) + " rows)", queries_.rows);
  try {
    for (int64_t s = 0; s < queries_.rows; s += chunk) {
      check_interrupt();
      const int64_t m = std::min(chunk, queries_.rows - s);
      // What faiss's flat index runs, on the shard where it lies (the index would copy it).
      faiss::knn_inner_product(queries_.row(s), rows, static_cast<size_t>(dim), static_cast<size_t>(m),
                               static_cast<size_t>(count), static_cast<size_t>(ks), ip.data(), ids.data());
      for (int64_t r = 0; r < m; ++r) {
        float* kept_ip = ip_.data() + (s + r) * keep_;
        int64_t* kept_ids = ids_.data() + (s + r) * keep_;
        pool.clear();
        for (int j = 0; j < keep_; ++j)
          if (kept_ids[j] >= 0) pool.push_back({kept_ip[j], kept_ids[j]});
        for (int j = 0; j < ks; ++j) {
          const faiss::Index::idx_t id = ids[static_cast<size_t>(r * ks + j)];
          if (id >= 0) pool.push_back({exact_inner_product(queries_.row(s + r), rows + id * dim, dim), first_row + id});
        }
        keep_best_scored(pool, keep_, kept_ip, kept_ids);
      }
      prog.update(s + m);
    }
  } catch (const faiss::FaissException& e) {
    if (std::string(e.what()).find("interrupted") != std::string::npos) throw Interrupted();
    FC_FAIL("faiss failed: " << std::string(e.what()).substr(0, 300));
  }
}

KnnGraph ShardedKnn::finish() const {
  KnnGraph g(queries_.rows, k_);
  for (int64_t r = 0; r < queries_.rows; ++r)
    store_row(first_query_ + r, ip_.data() + r * keep_, ids_.data() + r * keep_, k_, g.nbr_row(r), g.dist_row(r));
  return g;
}

#ifndef FC_WITH_TORCH
KnnGraph torch_exact_knn(const Matrix&, int, const std::string& device, bool) {
  FC_FAIL("exact kNN on " << quote_input(device) << " needs libtorch; this build has none (use the CPU)");
}
#endif

}  // namespace facecluster
