// Flags shared by the subcommands, all feeding one PlanRequest (private to the CLI). The plan
// (plan.h) decides what they mean; here they are only collected.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "facecluster/plan.h"

namespace facecluster::cli {

// The global --threads flag (0 = all cores), unset when not given.
std::optional<int64_t>& global_threads();

inline void add_knn_flags(CLI::App* cmd, PlanRequest& r) {
  cmd->add_option("-k,--k", r.k, "neighbours per row, the row itself included (default 80, model_topk; clamped to N)");
  cmd->add_option("--index", r.index,
                  "kNN index: auto (default: flat while rows^2 x dim <= 1e13, about 200,000 rows at 256-d; blocked "
                  "above), flat (exact, the release's), ivf, hnsw, blocked (coarse lists, one matrix product per list; "
                  "--nlist, --probe, --refine) (hnsw with more than one thread gives a different graph "
                  "each run; --threads 1 makes it reproducible)");
  cmd->add_option("--nlist", r.nlist, "ivf and blocked: coarse lists (default 0: ivf about 4 sqrt(N), blocked about N / 256)");
  cmd->add_option("--nprobe", r.nprobe, "IVF lists probed per query (default 32)");
  cmd->add_option("--hnsw-m", r.hnsw_m, "HNSW links per node (default 32)");
  cmd->add_option("--ef-construction", r.ef_construction, "HNSW build beam (default 80)");
  cmd->add_option("--ef-search", r.ef_search, "HNSW search beam, raised to k (default 128)");
  cmd->add_option("--probe", r.probe,
                  "blocked: lists each row is compared with, its nearest centroids (default 0: 128 with bf16 products, "
                  "64 with fp32, about the same time; lists: --nlist, 0 = ~N / 256)");
  cmd->add_option("--knn-precision", r.knn_precision,
                  "blocked: the matrix products' precision: auto (default: bf16, its candidates re-ranked in fp32, where "
                  "the CPU has AVX512-BF16 or AMX-BF16; fp32 elsewhere), fp32 or bf16");
  cmd->add_option("--refine", r.refine, "blocked: then up to this many more lists per row and round, those its neighbours' neighbours live in (default 64; 0: off)");
}

// Flags of a clustering run (cluster, and the clustering part of eval).
struct ClusterFlags {
  PlanRequest req;
  std::optional<double> tau;
  std::optional<std::string> tau_range;
  bool no_tpdi = false, reload = false;
};

inline void add_cluster_flags(CLI::App* cmd, ClusterFlags& f) {
  PlanRequest& r = f.req;
  cmd->add_option("--tau", f.tau, "linking threshold (default: automatic with --calibrate auto, else the release's 0.7)");
  cmd->add_option("--tau-range", f.tau_range, "sweep tau as START:END:COUNT (numpy.linspace)");
  cmd->add_option("--calibrate", r.calibrate,
                  "auto: derive the distance scale from the data (the default without a model); off: the release's fixed "
                  "constants (the default with a model)");
  cmd->add_option("--density", r.density, "approximate_NDDe (release, default) or NDDe (paper's full diffusion)");
  cmd->add_option("--select-by", r.select_by, "pairwise (default) or bcubed: the metric that picks the best tau");
  cmd->add_option("--bins", r.bins, "hard-cluster bins (default 5)");
  cmd->add_option("--precision", r.precision, "model inference: fp32 (default) or bf16");
  cmd->add_option("--batch-size", r.batch_size, "model inference: anchors per batch (default: test_batch_size, 512)");
  cmd->add_option("--device", r.device, "where the model runs: cpu, cuda, cuda:N or auto (default: a CUDA GPU when libtorch sees one)");
  cmd->add_option("--set", r.sets, "override any config key: --set density_args.tpdi_sigma=0.1");
}

// After parsing: the tau flags into the request (one of them at most).
inline void finish_cluster_flags(ClusterFlags& f) {
  if (f.tau && f.tau_range) throw Error("give --tau or --tau-range, not both");
  if (f.tau) f.req.taus = std::vector<double>{*f.tau};
  if (f.tau_range) f.req.taus = parse_tau_range(*f.tau_range);
  if (f.no_tpdi) f.req.tpdi = false;
  if (f.reload) f.req.rebuild_knn = true;
  if (global_threads()) f.req.threads = *global_threads();
}

}  // namespace facecluster::cli
