// kNN graph construction on L2-normalised rows (inner product = cosine), with faiss.
#pragma once

#include <string>
#include <vector>

#include "facecluster/config.h"
#include "facecluster/types.h"

namespace facecluster {

// flat: exact (faiss IndexFlatIP, the release's choice); ivf: IVF-Flat; hnsw: HNSW-Flat;
// blocked: coarse lists, one matrix product per list against the lists its rows probe (an
// all-pairs graph is a batch of queries; src/knn/blocked.cpp); auto (the default): flat while
// exact search is affordable, blocked above (resolve_knn_index).
enum class KnnIndex { Auto, Flat, Ivf, Hnsw, Blocked };
KnnIndex parse_knn_index(const std::string& name);  // throws naming the accepted names
const char* knn_index_name(KnnIndex i);

// The multiply-adds (rows^2 x dim) up to which `auto` searches exactly: 1e13, about 100 s of
// fp32 GEMM on 2 AVX-512 cores (200,000 rows at 256-d, 280,000 at 128-d, 140,000 at 512-d).
// Exact search grows with the square of the rows; past this the blocked index finds >= 0.96 of
// the exact neighbours in a small share of the time (docs/benchmarks.md), and the rest of the
// pipeline is seconds. On a GPU (device not "cpu") exact search stays the choice at any size.
constexpr double kExactSearchMaxMultiplyAdds = 1e13;

// The index `index` means for `rows` x `dim` features on `device`: itself, except auto.
KnnIndex resolve_knn_index(KnnIndex index, int64_t rows, int64_t dim, const std::string& device);

// The blocked index's matrix products (and its quantizer's): bf16 where the CPU multiplies bf16
// natively (AVX512-BF16 or AMX-BF16) and the build has oneDNN, fp32 elsewhere (auto, the
// default). The candidates of bf16 products are re-ranked in fp32 with a margin that bounds the
// bf16 error, so a row's neighbours among the rows it is compared with are those of fp32
// products; only the coarse lists (which rows are compared) can differ. Exact search (flat)
// is fp32 always.
enum class KnnPrecision { Auto, Fp32, Bf16 };
KnnPrecision parse_knn_precision(const std::string& name);  // throws naming the accepted names
const char* knn_precision_name(KnnPrecision p);
// Whether `p` means bf16 products on this machine and build (bf16 asked of a CPU without native
// bf16 is fp32, with a warning when the kNN runs).
bool knn_uses_bf16(KnnPrecision p);

struct KnnOptions {
  int k = DatasetArgs{}.model_topk;  // neighbours per row, the row itself included; clamped to N
  KnnIndex index = KnnIndex::Auto;
  int ivf_nlist = 0;           // 0: about 4 sqrt(N), at most N / 39
  int ivf_nprobe = 32;
  int blocked_probe = 0;       // blocked: lists each row is compared with (0: blocked_probe_for; lists: ivf_nlist, 0 = ~N / 256)
  int blocked_refine = 64;     // blocked: at most this many extra lists per row and round, voted by its neighbours' neighbours (0: off)
  KnnPrecision precision = KnnPrecision::Auto;  // blocked: bf16 or fp32 products (see KnnPrecision)
  int hnsw_m = 32;
  int hnsw_ef_construction = 80;
  int hnsw_ef_search = 128;    // raised to at least k
  int threads = 0;             // 0: OpenMP default (faiss reads the OpenMP global; build_knn sets it for the call)
  uint64_t seed = 1234;        // IVF training sample
  std::string device = "cpu";  // flat on "cuda:N": exact search as libtorch matrix products on that GPU
};

// The blocked index's probes when not given (blocked_probe 0): as many as its products afford in
// the same time, bf16 products costing about half of fp32's. Measured at 584,013 x 256 on 2
// AVX-512 cores (docs/benchmarks.md): fp32 products, probe 64: recall@80 0.964, kNN ~84 s;
// bf16, probe 128: 0.974, ~85 s.
constexpr int kBlockedProbeFp32 = 64, kBlockedProbeBf16 = 128;
int blocked_probe_for(const KnnOptions& o);

// Builds the graph: each row's k nearest rows by cosine, sorted by distance 1 - ip ascending
// (flat: equal distances in row-id order, so a split into shards gives the same rows; see
// ShardedKnn).
// An approximate index may return fewer than k; missing entries are -1.
KnnGraph build_knn(const Matrix& normalized, const KnnOptions& opt);

// Exact kNN seen one shard (a block of consecutive rows) at a time, as a distributed run sees
// the data: every shard is searched with faiss flat as build_knn does, and the running best
// kept with build_knn's rule for ties (equal inner products: the smaller row id first). After all shards, finish() gives the queries' rows as
// build_knn with the flat index gives them (row ids global, the query itself first).
class ShardedKnn {
 public:
  // queries: normalised rows with global ids first_query...; k: already clamped to all rows.
  ShardedKnn(const Matrix& queries, int64_t first_query, int k);
  void add_shard(const float* rows, int64_t count, int64_t first_row, int64_t dim);
  KnnGraph finish() const;

 private:
  const Matrix& queries_;
  int64_t first_query_;
  int k_, keep_;              // keep_: k and a margin for ties (src/knn/knn.cpp)
  std::vector<float> ip_;     // queries x keep_, best first
  std::vector<int64_t> ids_;  // -1: none yet
};

// Rows added to a kNN graph as exact search (build_knn, flat) lists them in the grown set:
// `added` holds the new rows' lists (ids old_rows.rows, old_rows.rows + 1, ...; over old and new
// rows), `changed` the old rows whose lists take in new rows (ascending) and `changed_lists`
// their lists. An old row whose list came from an approximate index keeps its entries and takes
// in the new rows that rank among them. Costs (old + new rows) x new rows x dim multiply-adds.
struct KnnExtension {
  KnnGraph added;
  std::vector<int64_t> changed;
  KnnGraph changed_lists;
};
// g: the lists of old_rows (k = g.k, kept); all rows normalised.
KnnExtension extend_knn(const KnnGraph& g, const Matrix& old_rows, const Matrix& new_rows);
// g grows by the extension's rows and takes its changed lists.
void apply_extension(KnnGraph& g, const KnnExtension& e);

// Exact kNN as libtorch matrix products on `device` (cpu, cuda, cuda:N, auto): rows in chunks
// against all rows, top k + a margin per row, the k best by (inner product, smaller id) as
// build_knn keeps them; with bf16 the candidates come from bf16 products (a wider margin) and
// are re-ranked in fp32. Builds with libtorch only (else it throws saying so).
KnnGraph torch_exact_knn(const Matrix& normalized, int k, const std::string& device, bool bf16 = false);

// Exact search by brute force (no faiss); the test oracle and the recall reference.
KnnGraph brute_force_knn(const Matrix& normalized, int k, const std::vector<int64_t>& queries = {});

// recall@k of `g` against exact search on `sample` random rows (all rows when sample >= N).
double knn_recall(const Matrix& normalized, const KnnGraph& g, int64_t sample, uint64_t seed = 7);

}  // namespace facecluster
