// `facecluster cluster` and `facecluster demo`: a plan from flags (and a config), run, report.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "facecluster/error.h"
#ifdef FC_WITH_MPI
#include "facecluster/distributed.h"
#endif
#include "facecluster/io.h"
#include "facecluster/log.h"
#include "facecluster/pipeline.h"
#include "facecluster/synth.h"
#include "options.h"

namespace facecluster::cli {
namespace fs = std::filesystem;

namespace {

void run_and_print(Job job, const PlanRequest& req) {
  const RunPlan plan = resolve_plan(job, req);
  for (const auto& w : plan.warnings) log_warn(w);
#ifdef FC_WITH_MPI
  // Under mpirun every process runs its share; process 0 holds the report and prints it.
  const bool distributed = mpi_active();
  FC_CHECK(!distributed || plan.state_dir.empty(), "--save-state runs in one process, not under mpirun");
  const ClusterReport r = distributed ? run_plan_distributed(plan) : run_plan(plan);
  if (distributed && mpi_rank() != 0) return;
#else
  const ClusterReport r = run_plan(plan);
#endif
  std::printf("%s", render_text(r).c_str());
  if (!plan.out_dir.empty()) std::printf("\nresults written to %s (report.html to look at)\n", plan.out_dir.c_str());
}

}  // namespace

std::function<void()> add_cluster(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "cluster", "cluster features: training-free (cosine distances, self-calibrated by default) or with a learned similarity (--model)");
  auto f = std::make_shared<ClusterFlags>();
  PlanRequest& r = f->req;
  cmd->add_option("-c,--config", r.config, "release-style YAML config (test_dataset_args, density_args, cluster_args)");
  cmd->add_option("-f,--features", r.features, "features (.bin needs --dim, or .npy)");
  cmd->add_option("-d,--dim", r.dim, "feature dimension of a .bin file");
  cmd->add_option("-l,--labels", r.labels, "true labels (.meta): score each tau and pick the best");
  cmd->add_option("--knn", r.knn_cache, "kNN cache (.npz): read if present, else built and written here");
  cmd->add_flag("--reload", f->reload, "rebuild the kNN cache even if it exists (is_reload)");
  cmd->add_option("-o,--out", r.out_dir, "results folder (default: work_dir/results with -c, else none)");
  cmd->add_option("--halo-mib", r.halo_mib,
                  "under mpirun: memory per process for the neighbour rows other processes hold (their lists for "
                  "linking, their features for --model), fetched in blocks of rows that fit it (default 2048)");
  cmd->add_flag("--no-tpdi", f->no_tpdi, "link by the graph distance instead of TPDi");
  cmd->add_option("--save-state", r.state_dir,
                  "keep what adding faces later needs in this folder (a new one): `facecluster add --state DIR` "
                  "(docs/incremental.md)");
  cmd->add_option("--model", r.model,
                  "learned similarity: a checkpoint or model file from `facecluster train`, or 'default' (the shipped model)");
  add_cluster_flags(cmd, *f);
  add_knn_flags(cmd, r);
  return [f] {
    finish_cluster_flags(*f);
    run_and_print(Job::Cluster, f->req);
  };
}

std::function<void()> add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "the built-in default: synthesise faces, build the kNN graph, cluster without a model, score");
  struct Args {
    int64_t n = 20000, dim = 256;
    uint64_t seed = 42;
    std::string out = "facecluster-demo";
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("-n,--n", a->n, "faces")->capture_default_str();
  cmd->add_option("-d,--dim", a->dim, "dimension")->capture_default_str();
  cmd->add_option("--seed", a->seed, "seed")->capture_default_str();
  cmd->add_option("-o,--out", a->out, "folder for the generated data and the results")->capture_default_str();
  return [a] {
    make_folders(a->out, "output folder (-o)");
    const std::string prefix = (fs::path(a->out) / "synth").string();
    SynthOptions so;
    so.n = a->n;
    so.dim = a->dim;
    so.seed = a->seed;
    {
      StageTimer t("synth " + std::to_string(a->n) + " faces");
      SynthData d = make_synthetic(so);
      write_features_bin(prefix + ".bin", d.features);
      write_labels(prefix + ".meta", d.labels);
      std::printf("%s\n", format_synth_stats(measure_synthetic(d.features, d.labels)).c_str());
    }
    PlanRequest req;
    req.features = prefix + ".bin";
    req.labels = prefix + ".meta";
    req.dim = a->dim;
    req.knn_cache = prefix + "_knn_k80.npz";
    req.rebuild_knn = true;
    req.out_dir = (fs::path(a->out) / "results").string();
    if (global_threads()) req.threads = *global_threads();
    run_and_print(Job::Cluster, req);
  };
}

}  // namespace facecluster::cli
