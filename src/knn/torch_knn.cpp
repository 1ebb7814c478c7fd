// Exact kNN as libtorch matrix products (issue 15): the GPU build needs no faiss-gpu, and the
// same code runs on the CPU, where the tests hold it to faiss flat.
#include <torch/torch.h>

#include <algorithm>
#include <limits>

#include "facecluster/error.h"
#include "facecluster/knn.h"
#include "facecluster/log.h"
#include "facecluster/model.h"
#include "rows.h"

namespace facecluster {

KnnGraph torch_exact_knn(const Matrix& x, int k, const std::string& device, bool bf16) {
  FC_CHECK(x.rows > 0 && x.cols > 0, "cannot build a kNN graph of an empty feature matrix");
  FC_CHECK(k >= 1, "k must be >= 1, got " << k);
  FC_CHECK(x.rows < (int64_t{1} << 31), "at most 2^31 - 1 rows are supported, got " << x.rows);
  k = static_cast<int>(std::min<int64_t>(k, x.rows));
  const torch::Device dev(resolve_device(device));
  torch::NoGradGuard no_grad;
  const torch::Tensor all = torch::from_blob(const_cast<float*>(x.row(0)), {x.rows, x.cols}, torch::kFloat32).to(dev);
  const torch::Tensor all_bf16 = bf16 ? all.to(torch::kBFloat16) : torch::Tensor();
  // Candidates: k + margin by the (bf16 or fp32) product, re-scored in fp32, then the k best by
  // build_knn's tie rule (rows.h). bf16 products reorder near neighbours: a wider margin.
  const int margin = bf16 ? 3 * kTieMargin : kTieMargin;
  const int kk = static_cast<int>(std::min<int64_t>(k + margin, x.rows));
  const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 28) / x.rows, 256, 16384);
  KnnGraph g(x.rows, k);
  StageTimer timer(std::string("knn search (exact, libtorch on ") + dev.str() + (bf16 ? ", bf16 candidates" : "") + ")");
  Progress prog("knn search", x.rows);
  std::vector<Scored> pool;
  std::vector<float> row_ip(static_cast<size_t>(k));
  std::vector<int64_t> row_ids(static_cast<size_t>(k));
  for (int64_t s = 0; s < x.rows; s += chunk) {
    check_interrupt();
    const int64_t m = std::min(chunk, x.rows - s);
    const torch::Tensor q = all.narrow(0, s, m);
    torch::Tensor ids;
    if (bf16) {
      ids = std::get<1>(torch::topk(torch::matmul(all_bf16.narrow(0, s, m), all_bf16.t()), kk, 1));
    } else {
      ids = std::get<1>(torch::topk(torch::matmul(q, all.t()), kk, 1));
    }
    // fp32 inner products of the candidates, row by row: (m, kk, D) x (m, D, 1).
    const torch::Tensor ip = torch::bmm(all.index_select(0, ids.flatten()).view({m, kk, x.cols}), q.unsqueeze(2)).squeeze(2);
    const torch::Tensor ip_cpu = ip.to(torch::kCPU).contiguous(), ids_cpu = ids.to(torch::kCPU).contiguous();
    const float* pip = ip_cpu.data_ptr<float>();
    const int64_t* pid = ids_cpu.data_ptr<int64_t>();
    for (int64_t r = 0; r < m; ++r) {
      pool.clear();
      for (int j = 0; j < kk; ++j) pool.push_back({pip[r * kk + j], pid[r * kk + j]});
      keep_best_scored(pool, k, row_ip.data(), row_ids.data());
      store_row(s + r, row_ip.data(), row_ids.data(), k, g.nbr_row(s + r), g.dist_row(s + r));
    }
    prog.update(s + m);
  }
  return g;
}

}  // namespace facecluster
