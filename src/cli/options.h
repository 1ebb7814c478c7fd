// Options shared by the knn, cluster and demo subcommands (private to the CLI).
#pragma once

#include <CLI/CLI.hpp>

#include "facecluster/knn.h"

namespace facecluster::cli {

inline void add_knn_options(CLI::App* cmd, KnnOptions& o) {
  cmd->add_option("--index", o.index, "kNN index: flat (exact), ivf, hnsw")->capture_default_str();
  cmd->add_option("--nlist", o.ivf_nlist, "IVF lists (0: ~4 sqrt(N))")->capture_default_str();
  cmd->add_option("--nprobe", o.ivf_nprobe, "IVF lists probed per query")->capture_default_str();
  cmd->add_option("--hnsw-m", o.hnsw_m, "HNSW links per node")->capture_default_str();
  cmd->add_option("--ef-construction", o.hnsw_ef_construction, "HNSW build beam")->capture_default_str();
  cmd->add_option("--ef-search", o.hnsw_ef_search, "HNSW search beam (>= k)")->capture_default_str();
}

}  // namespace facecluster::cli
