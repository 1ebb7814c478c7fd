// Exact kNN as libtorch matrix products (issue 15): the GPU build needs no faiss-gpu, and the
// same code runs on the CPU, where the tests hold it to faiss flat.
#include <torch/torch.h>

#include <algorithm>
#include <limits>

#include "facecluster/error.h"
#include "facecluster/knn.h"
#include "facecluster/log.h"
#include "facecluster/model.h"

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
  // (inner product, then smaller id) as build_knn's flat index keeps them (ShardedKnn, knn.cpp).
  const int margin = bf16 ? 48 : 16;
  const int kk = static_cast<int>(std::min<int64_t>(k + margin, x.rows));
  const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 28) / x.rows, 256, 16384);
  KnnGraph g(x.rows, k);
  StageTimer timer(std::string("knn search (exact, libtorch on ") + dev.str() + (bf16 ? ", bf16 candidates" : "") + ")");
  Progress prog("knn search", x.rows);
  std::vector<std::pair<float, int64_t>> pool;
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
      for (int j = 0; j < kk; ++j) pool.emplace_back(pip[r * kk + j], pid[r * kk + j]);
      std::partial_sort(pool.begin(), pool.begin() + k, pool.end(), [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      });
      const int64_t i = s + r;
      int32_t* nb = g.nbr_row(i);
      float* d = g.dist_row(i);
      int at = 1;  // the row itself first and then the k - 1 best others, as build_knn's rows are
      nb[0] = static_cast<int32_t>(i);
      d[0] = 0.f;
      for (int j = 0; j < k && at < k; ++j) {
        if (pool[static_cast<size_t>(j)].second == i) continue;
        nb[at] = static_cast<int32_t>(pool[static_cast<size_t>(j)].second);
        d[at++] = std::max(0.f, 1.f - pool[static_cast<size_t>(j)].first);
      }
    }
    prog.update(s + m);
  }
  return g;
}

}  // namespace facecluster
