#include <cstdio>

#include "commands.h"
#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/knn.h"
#include "facecluster/log.h"
#include "facecluster/plan.h"
#include "options.h"

namespace facecluster::cli {

std::function<void()> add_knn(CLI::App& app) {
  auto* cmd = app.add_subcommand("knn", "build the kNN graph of L2-normalised features and write the .npz cache");
  struct Args {
    std::string features, out;
    int64_t dim = 0;
    int64_t recall_sample = 0;
    bool no_norm = false, compress = false;
    PlanRequest req;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("-f,--features", a->features, "features (.bin needs --dim, or .npy)")->required();
  cmd->add_option("-d,--dim", a->dim, "feature dimension of a .bin file");
  cmd->add_option("-o,--out", a->out, "kNN cache to write (.npz, array 'data' of shape (N, 2, k))")->required();
  add_knn_flags(cmd, a->req);
  cmd->add_option("--device", a->req.device, "exact search (flat) on: cpu, cuda, cuda:N or auto (default: a CUDA GPU when libtorch sees one)");
  cmd->add_option("--recall-sample", a->recall_sample, "measure recall@k against exact search on this many random rows");
  cmd->add_flag("--no-norm", a->no_norm, "rows are already L2-normalised (is_norm_feat: False)");
  cmd->add_flag("--compress", a->compress, "deflate the archive (like numpy.savez_compressed)");
  return [a] {
    a->req.features = a->features;
    if (a->dim > 0) a->req.dim = a->dim;
    if (global_threads()) a->req.threads = *global_threads();
    FC_CHECK(a->recall_sample >= 0, "--recall-sample must be >= 0, got " << a->recall_sample);
    const RunPlan plan = resolve_plan(Job::Cluster, a->req);
    check_parent_dir(a->out);
    check_not_an_input(a->out, {{"features", plan.features}});
    Matrix x;
    {
      StageTimer t("read " + a->features);
      x = read_features(plan.features, plan.feature_dim);
      if (a->no_norm) check_finite_rows(x, a->features);
      else normalize_rows(x, a->features);
    }
    const KnnGraph g = build_knn(x, plan.knn);
    if (a->recall_sample > 0) {
      StageTimer t("recall on " + std::to_string(a->recall_sample) + " rows");
      const double r = knn_recall(x, g, a->recall_sample);
      std::printf("recall@%d on %lld sampled rows: %.4f\n", g.k, (long long)std::min<int64_t>(a->recall_sample, x.rows), r);
    }
    StageTimer t("write " + a->out);
    write_knn_npz(a->out, g, a->compress);
    std::printf("wrote %s (%lld rows, k %d)\n", a->out.c_str(), (long long)g.n, g.k);
  };
}

}  // namespace facecluster::cli
